"""Drive the real window on a SmolVLM-256M-shaped pair and measure what a user waits for.

- time from process start to the window shown (the model loads afterwards, in the background)
- Send to first token for a 1024x768 photo, with and without reading the image while the
  question is typed
- decode speed inside the window (streaming to the chat view) against ``smolchat bench``

Run it under a real X server, e.g. ``xvfb-run -s "-screen 0 1400x900x24" uv run python
benchmarks/gui_session.py``. The weights are random, so the answers are noise. (The screenshots
in docs/ come from ``docs/screenshots.py``.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def time_to_window(runs: int = 3, command: list[str] | None = None, before_each=None) -> list[float]:
    """Seconds from starting ``smolchat`` (or ``command``) to its window on screen (xdotool
    watches for it); ``before_each`` runs before every start."""
    times = []
    for _ in range(runs):
        if before_each:
            before_each()
        started = time.perf_counter()
        app = subprocess.Popen(
            command or [sys.executable, "-m", "smolchat"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # Polled every 50 ms: xdotool's own --sync looks only every half second, and polling
        # much faster makes Xvfb turn away the app's own connection now and then.
        while (
            subprocess.run(
                ["xdotool", "search", "--onlyvisible", "--name", "^SmolChat$"], capture_output=True
            ).returncode
            != 0
        ):
            if time.perf_counter() - started > 60:
                raise TimeoutError("no SmolChat window within 60 s")
            time.sleep(0.05)
        times.append(round(time.perf_counter() - started, 2))
        app.terminate()
        app.wait()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.smolvlm_256m_shaped import ensure_pair, window_home

    text, mmproj, photo = ensure_pair(Path("benchmarks/.models"))
    home = Path(tempfile.mkdtemp(prefix="smolchat-gui-"))
    hub = window_home(home, text, mmproj)  # the picker lists the pair as the Hub would

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from smolchat.models.library import Library
    from smolchat.settings import ModelSettings, Settings, save
    from smolchat.ui.app import App

    Library().import_pair(text, mmproj, name="SmolVLM-256M-shaped")
    save(
        Settings("SmolVLM-256M-shaped").with_model_settings(
            "SmolVLM-256M-shaped", ModelSettings(max_tokens=args.max_tokens, temperature=0.0)
        )
    )
    shown_s = time_to_window()
    qt = QApplication(sys.argv)  # noqa: F841 (kept alive for the session)
    app = App()
    app.window.resize(1280, 820)
    app.window.show()
    app.start()

    def wait(signal, timeout_s: float = 300) -> list:
        loop, got = QEventLoop(), []
        signal.connect(lambda *a: (got.extend(a), loop.quit()))
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()
        return got

    loaded_at = time.perf_counter()
    if app.turns.model_info is None:
        wait(app.turns.model_ready)
    load_s = time.perf_counter() - loaded_at

    def ask(question: str, read_ahead: bool) -> dict:
        turns, composer = app.turns, app.window.composer
        app.conversations.new_conversation()
        turns.read_while_typing = read_ahead
        composer.add_files([photo])
        wait(composer.images_changed)  # checked off the UI thread, then attached
        if read_ahead:
            wait(app.worker.prefill_finished)
            time.sleep(1.0)  # the user is still typing
        composer.edit.setPlainText(question)
        sent = time.perf_counter()
        first = []
        app.worker.delta.connect(lambda *_: first.append(time.perf_counter()) if not first else None)
        composer.send_requested.emit(question, composer.images)
        wait(app.turns.answered)
        stats = app.store.messages(app.conversations.conversation_id)[-1].stats
        return {
            "send_to_first_token_s": round(first[0] - sent, 2),
            "decode_tok_s": round(stats["decode_tok_s"], 1),
            "tiles_read_after_send": stats["image_tiles_encoded"],
        }

    def decode_speed(runs: int = 3) -> list[float]:
        """Text-only answers streamed into the view: the engine's own decode figure."""
        speeds = []
        for n in range(runs):
            app.conversations.new_conversation()
            app.window.composer.send_requested.emit(f"Tell me story number {n}.", [])
            wait(app.turns.answered)
            speeds.append(round(app.store.messages(app.conversations.conversation_id)[-1].stats["decode_tok_s"], 1))
        return speeds

    gui_speeds = decode_speed()
    without = ask("What is in this picture?", read_ahead=False)
    with_read_ahead = ask("Describe this picture in detail.", read_ahead=True)
    app.close()
    hub.stop()

    cli_speeds = []
    for n in range(3):  # the same text-only question through smolchat bench, one process each
        bench = subprocess.run(
            [
                sys.executable,
                "-m",
                "smolchat",
                "bench",
                "--model",
                str(text),
                "--mmproj",
                str(mmproj),
                "--prompt",
                f"Tell me story number {n}.",
                "--max-tokens",
                str(args.max_tokens),
                "--runs",
                "1",
                "--turns",
                "1",
                "--json",
            ],
            capture_output=True,
            text=True,
            env={**os.environ},
        )
        if bench.returncode == 0:
            cli_speeds.append(round(json.loads(bench.stdout)["turns"][0]["decode_tok_s"], 1))
    print(
        json.dumps(
            {
                "start_to_window_s": shown_s,
                "model_load_s": round(load_s, 2),
                "without_reading_ahead": without,
                "reading_while_typing": with_read_ahead,
                "window_decode_tok_s": gui_speeds,
                "cli_bench_decode_tok_s": cli_speeds,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
