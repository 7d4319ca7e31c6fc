"""``smolchat --self-test``: the window answers one question about a picture, then closes.

It checks an installation end to end, the packaged app above all: Qt and its platform
plugin, llama.cpp with the backend ggml picks for this computer, the vision encoder, the
conversation store. The model is a tiny SmolVLM-shaped pair with random weights, written on
the spot (nothing is downloaded), so the answer is gibberish; that one arrives is the point.
Conversations and settings go to a throwaway folder; the speed measurements are this
computer's own and are kept. Prints one JSON report; exits 0 when an answer arrived.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from smolchat import __version__

QUESTION = "What is in this picture?"
MODEL_NAME = "SmolChat self-test"
TIME_LIMIT_S = 600  # the first start on a computer measures its vision speed (about 25 s)


def seconds_since_process_start() -> float | None:
    """How long ago this process started, from the kernel's record; None off Linux."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


def python_files_in_use() -> list[str]:
    """The Python runtime files this process has loaded (libpython, extension modules)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    files = {fields[5] for fields in (line.split(None, 5) for line in maps.splitlines()) if len(fields) == 6}
    return sorted(f for f in files if "python" in Path(f).name.lower())


class SelfTest:
    """Sets up a throwaway home before the window exists, then drives the window."""

    def __init__(self) -> None:
        # Process start, on the clock the rest of the report uses.
        self.started = time.monotonic() - (seconds_since_process_start() or 0.0)
        self.report: dict = {
            "version": __version__,
            "packaged": bool(getattr(sys, "frozen", False)),
            "executable": sys.executable,
        }
        self.ok = False
        self._folder = tempfile.TemporaryDirectory(prefix="smolchat-self-test-")
        self.home = Path(self._folder.name)
        # Conversations and settings go to the throwaway folder; the cache folder, where the
        # measurements are, stays where it is.
        os.environ["SMOLCHAT_DATA_DIR"] = str(self.home / "data")
        os.environ["SMOLCHAT_CONFIG_DIR"] = str(self.home / "config")

    def _mark(self, name: str) -> None:
        self.report[name] = round(time.monotonic() - self.started, 3)

    def window_shown(self) -> None:
        self._mark("window_shown_s")

    def begin(self, app) -> None:
        from PIL import Image

        from smolchat.engine.synthetic import TINY, write_pair
        from smolchat.models.library import InstalledModel
        from smolchat.settings import ModelSettings

        self.app = app
        text, mmproj = write_pair(self.home / "model", TINY)
        self.picture = self.home / "picture.png"
        Image.radial_gradient("L").convert("RGB").resize((320, 240)).save(self.picture)
        model = InstalledModel(MODEL_NAME, text, mmproj, None, text.stat().st_size + mmproj.stat().st_size)

        app.settings.set_model_settings(MODEL_NAME, ModelSettings(max_tokens=32))
        app.worker.load_failed.connect(lambda _request, message: self._fail(message))
        app.turns.model_ready.connect(self._ask)
        app.turns.answered.connect(self._answered)
        QTimer.singleShot(TIME_LIMIT_S * 1000, lambda: self._fail(f"no answer within {TIME_LIMIT_S} s"))
        app.conversations.start()
        app.turns.load_model(model)

    def _ask(self) -> None:
        self._mark("model_loaded_s")
        composer = self.app.window.composer
        composer.images_changed.connect(self._send)  # the picture is checked off the UI thread, then attached
        composer.add_files([self.picture])

    def _send(self) -> None:
        composer = self.app.window.composer
        composer.images_changed.disconnect(self._send)
        composer.set_text(QUESTION)
        composer.send_button.click()

    def _answered(self) -> None:
        from smolchat.engine.backends import build_info
        from smolchat.store import COMPLETE

        self._mark("answered_s")
        question, answer = self.app.store.messages(self.app.conversations.conversation_id)[-2:]
        self.report.update(
            question=question.text,
            images=len(question.images),
            answer=answer.text,
            status=answer.status,
            stats=answer.stats,
        )
        self.ok = answer.status == COMPLETE and bool(answer.text) and len(question.images) == 1
        plan = self.app.turns.model_info.vision_plan if self.app.turns.model_info else None
        self.report["vision"] = plan.describe() if plan else "llama.cpp"
        self.report["llama_cpp"] = build_info().as_dict()
        self._finish()

    def _fail(self, message: str) -> None:
        self.report["error"] = message
        self.ok = False
        self._finish()

    def _finish(self) -> None:
        self.report["python_files"] = python_files_in_use()
        self.report["ok"] = self.ok
        self.app.window.close()  # saves and stops the engine thread like any close
        QApplication.instance().exit(0 if self.ok else 1)

    def print_report(self) -> None:
        print(json.dumps(self.report, indent=2, default=str), flush=True)
        self._folder.cleanup()
