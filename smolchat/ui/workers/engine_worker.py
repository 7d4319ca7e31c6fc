"""The one thread that owns the engine: loading, turns, prefill, unloading.

Requests arrive as queued signals, so they run in this thread one after another; results go
back as signals. Streamed text is gathered and sent at most every 40 ms, so the window
repaints at a steady pace without costing decode speed. Cancelling is the only call made
from the UI thread directly: it only sets an event.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from smolchat.engine import (
    Engine,
    EngineSettings,
    Message,
    SamplingParams,
    TextDelta,
    TurnResult,
)
from smolchat.errors import SmolChatError

log = logging.getLogger(__name__)

DELTA_EVERY_S = 0.04


@dataclass(frozen=True)
class LoadRequest:
    name: str
    text: Path
    mmproj: Path | None
    settings: EngineSettings


@dataclass(frozen=True)
class TurnRequest:
    messages: tuple[Message, ...]
    sampling: SamplingParams
    cancel: threading.Event


@dataclass(frozen=True)
class PrefillRequest:
    messages: tuple[Message, ...]
    cancel: threading.Event


class EngineWorker(QObject):
    loading = Signal(str)  # model name
    loaded = Signal(object)  # the Engine (read-only use in the UI thread: its info and speed)
    load_failed = Signal(str)
    unloaded = Signal()
    delta = Signal(str)
    turn_finished = Signal(object)  # TurnResult
    turn_failed = Signal(str)
    prefill_finished = Signal(object)  # PrefillResult, or None when it failed or was cancelled

    _load = Signal(object)
    _turn = Signal(object)
    _prefill = Signal(object)
    _unload = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.engine: Engine | None = None
        self._thread = QThread()
        self._thread.setObjectName("engine")
        self.moveToThread(self._thread)
        self._load.connect(self._do_load)
        self._turn.connect(self._do_turn)
        self._prefill.connect(self._do_prefill)
        self._unload.connect(self._do_unload)
        self._thread.start()

    # -- from the UI thread ----------------------------------------------------------------

    def load(self, request: LoadRequest) -> None:
        self._load.emit(request)

    def run_turn(self, request: TurnRequest) -> None:
        self._turn.emit(request)

    def prefill(self, request: PrefillRequest) -> None:
        self._prefill.emit(request)

    def unload(self) -> None:
        self._unload.emit()

    def stop(self) -> None:
        """Unload and end the thread (when the window closes)."""
        self._unload.emit()
        self._thread.quit()
        self._thread.wait()

    # -- in the engine's thread ------------------------------------------------------------

    @Slot(object)
    def _do_load(self, request: LoadRequest) -> None:
        self._do_unload()
        self.loading.emit(request.name)
        try:
            self.engine = Engine(request.text, request.mmproj, request.settings)
        except SmolChatError as e:
            self.load_failed.emit(str(e))
            return
        except Exception as e:  # a bug or a llama.cpp failure: say so rather than load forever
            log.exception("loading %s failed", request.name)
            self.load_failed.emit(f"{request.name} could not be loaded ({type(e).__name__}: {e}).")
            return
        self.loaded.emit(self.engine)

    @Slot()
    def _do_unload(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
            self.unloaded.emit()

    @Slot(object)
    def _do_turn(self, request: TurnRequest) -> None:
        if self.engine is None:
            self.turn_failed.emit("No model is loaded yet.")
            return
        pending, last_sent = "", time.monotonic()
        try:
            for event in self.engine.run_turn(list(request.messages), request.sampling, cancel=request.cancel):
                if isinstance(event, TextDelta):
                    pending += event.text
                    now = time.monotonic()
                    if now - last_sent >= DELTA_EVERY_S:
                        self.delta.emit(pending)
                        pending, last_sent = "", now
                elif isinstance(event, TurnResult):
                    if pending:
                        self.delta.emit(pending)
                    self.turn_finished.emit(event)
        except SmolChatError as e:
            self.turn_failed.emit(str(e))
        except Exception as e:  # the answer ends with a message instead of never ending
            log.exception("the turn failed")
            self.turn_failed.emit(f"The answer failed ({type(e).__name__}: {e}).")

    @Slot(object)
    def _do_prefill(self, request: PrefillRequest) -> None:
        if self.engine is None or request.cancel.is_set():
            self.prefill_finished.emit(None)
            return
        try:
            result = self.engine.prefill(list(request.messages), cancel=request.cancel)
        except Exception:  # noqa: BLE001 (the turn itself will say what is wrong)
            log.debug("reading ahead failed", exc_info=True)
            result = None
        self.prefill_finished.emit(None if result is None or result.cancelled else result)
