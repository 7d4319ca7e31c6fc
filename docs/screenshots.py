"""The screenshots in docs/, taken from the real window under a real X server:

    xvfb-run -s "-screen 0 1600x1000x24" uv run python docs/screenshots.py

The model is the SmolVLM-256M-shaped pair of benchmarks/ (real architecture, random weights),
served by a local stand-in for the Hub, so the picker lists it as the Hub would. Its answers
would be noise, so the conversation shown is a sample one written into the store; what the
window works out itself (the attachments' costs and reading, the meter, the fit, the sidebar's
days) is live.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NAME = "SmolVLM-256M-shaped"

ANSWER = """It is a mountain lake at sunset:

- **Sky**: a warm gradient from orange near the horizon to deep blue above.
- **Sun**: low and just above the ridge, so the light is coming from behind the peaks.
- **Water**: calm, reflecting the sky; there are no boats or people.

| Part | Colour |
|---|---|
| Sky | orange to blue |
| Mountains | dark violet |
| Lake | teal |
"""

CODE_ANSWER = """Here is one way, with Pillow and NumPy:

```python
from PIL import Image
import numpy as np

pixels = np.asarray(Image.open("lake.jpg").convert("L"))
y, x = np.unravel_index(pixels.argmax(), pixels.shape)
print(f"brightest at ({x}, {y}): {pixels[y, x]}")
```

It reads the photo in grey levels and prints where the brightest pixel is: here, inside the sun.
"""


def landscape(path: Path) -> Path:
    """A drawn mountain lake at sunset: something a photo could show."""
    w, h = 1280, 853
    y = np.linspace(0, 1, h // 2)[:, None]
    sky = np.stack([255 - 200 * y, 150 - 60 * y, 80 + 120 * y], axis=-1) * np.ones((1, w, 1))
    water = sky[::-1] * np.array([0.55, 0.8, 0.85])
    image = Image.fromarray(np.concatenate([sky, water]).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((760, 250, 880, 370), fill=(255, 236, 170))
    draw.polygon(
        [(0, 430), (220, 220), (420, 400), (640, 180), (900, 426), (1100, 260), (1280, 420), (1280, 430)],
        fill=(70, 45, 95),
    )
    draw.polygon([(0, 430), (1280, 430), (1280, 436), (0, 436)], fill=(50, 35, 70))
    image.save(path, quality=92)
    return path


def document(path: Path) -> Path:
    """A three-page PDF: a report with a heading and bars on each page."""
    pages = []
    for n in range(3):
        page = Image.new("RGB", (850, 1100), "white")
        draw = ImageDraw.Draw(page)
        draw.rectangle((70, 70, 780, 130), fill=(30, 60, 120))
        for i in range(12):
            draw.rectangle((70, 180 + 60 * i, 70 + 40 * ((i * 7 + n * 3) % 15 + 2), 210 + 60 * i), fill=(90, 140, 200))
        pages.append(page)
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from benchmarks.smolvlm_256m_shaped import ensure_pair, window_home

    text, mmproj, _ = ensure_pair(ROOT / "benchmarks" / ".models")
    work = Path(tempfile.mkdtemp(prefix="smolchat-shots-"))
    hub = window_home(work / "home", text, mmproj, formats=("Q8_0", "F16"))

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from smolchat.ui import theme
    from smolchat.ui.app import App, app_icon

    qt = QApplication(sys.argv)
    qt.setApplicationName("SmolChat")
    qt.setWindowIcon(app_icon())

    def wait(signal, timeout_s: float = 300) -> None:
        loop = QEventLoop()
        signal.connect(lambda *_: loop.quit())
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()

    def settle(seconds: float = 0.5) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            qt.processEvents()
            time.sleep(0.02)

    # -- the first run: nothing installed yet -----------------------------------------------------
    app = App()
    app.window.resize(1280, 800)
    app.window.show()
    app.start()
    wait(app.models.default_shown)
    settle()
    app.window.grab().save(str(DOCS / "first-run.png"))
    app.close()

    # -- a conversation, light and dark --------------------------------------------------------
    from smolchat.models.library import Library
    from smolchat.settings import ModelSettings, Settings, save

    Library().import_pair(text, mmproj, name=NAME)
    save(Settings(NAME).with_model_settings(NAME, ModelSettings(max_tokens=64)))
    photo = landscape(work / "lake.jpg")
    pdf = document(work / "quarterly-report.pdf")

    app = App()
    store = app.store
    for empty in store.conversations():  # the one the first run opened
        store.delete(empty.id)
    now = time.time()
    day = 86400
    for title, age in (
        ("Receipt totals for March", 2 * day),
        ("Alt text for the holiday album", 5 * day),
        ("What does this error dialog mean?", 12 * day),
        ("Plant identification", 45 * day),
    ):
        c = store.create_conversation(title, NAME)
        store.add_message(c.id, "user", title)
        store.add_message(c.id, "assistant", "…")
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now - age, c.id))
    yesterday = store.create_conversation("Screenshot of the settings page", NAME)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now - day, yesterday.id))
    c = store.create_conversation("Mountain lake at sunset", NAME)
    kept = store.keep_image(photo)
    store.add_message(c.id, "user", "What is in this photo?", images=[kept])
    store.add_message(c.id, "assistant", ANSWER)
    store.add_message(c.id, "user", "Write a Python snippet that finds the brightest pixel.")
    store.add_message(c.id, "assistant", CODE_ANSWER)

    app.window.resize(1280, 860)
    app.window.show()
    app.start()
    wait(app.turns.model_ready)
    composer = app.window.composer
    composer.add_files([photo])
    wait(composer.images_changed)
    wait(app.worker.prefill_finished)
    composer.edit.setPlainText("And is the water frozen?")
    app.turns.update_meter()
    settle(1.0)
    app.window.chat.scroll_to_end()
    settle()
    app.window.grab().save(str(DOCS / "main-window.png"))

    app.window.theme_chosen.emit("dark")
    composer.clear()
    composer.images_changed.emit([])
    composer.add_files([pdf])
    wait(composer.images_changed)
    wait(app.worker.prefill_finished)
    composer.edit.setPlainText("Summarise the three pages in one sentence each.")
    app.turns.update_meter()
    settle(1.0)
    app.window.grab().save(str(DOCS / "main-window-dark.png"))
    composer.grab().save(str(DOCS / "pdf-attachment.png"))

    app.window.theme_chosen.emit("light")
    picker = app.models.open("ggml-org/SmolVLM-256M-Instruct-GGUF")
    picker.resize(980, 640)
    wait(app.models.listing_shown)
    settle()
    picker.grab().save(str(DOCS / "model-picker.png"))
    app.close()
    hub.stop()
    theme.apply(theme.LIGHT)
    print("\n".join(str(p) for p in sorted(DOCS.glob("*.png"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
