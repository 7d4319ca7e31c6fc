"""The one thread that owns the engine: loading, turns, prefill, unloading.

Requests arrive as queued signals, so they run in this thread one after another; results go
back as signals tagged with the id of the request they answer, and carry plain snapshots
(``ModelInfo``, ``Speed``, results), never the Engine: nothing outside this thread calls into
llama.cpp. A load that a newer load has replaced is skipped, and the window drops results of
requests it no longer waits for. Streamed text is gathered and sent at most every 40 ms, so
the window repaints at a steady pace without costing decode speed. Cancelling is the only
call made from the UI thread directly: it only sets an event.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from smolchat.calibrate import open_engine
from smolchat.engine import (
    EngineSettings,
    Message,
    ModelInfo,
    SamplingParams,
    TextDelta,
    TurnResult,
)
from smolchat.engine.engine import Engine
from smolchat.errors import SmolChatError

log = logging.getLogger(__name__)

DELTA_EVERY_S = 0.04
_ids = itertools.count(1)


def next_request_id() -> int:
    return next(_ids)


@dataclass(frozen=True)
class LoadRequest:
    name: str
    text: Path
    mmproj: Path | None
    settings: EngineSettings
    id: int = 0  # set by EngineWorker.load


@dataclass(frozen=True)
class LoadedModel:
    request_id: int
    name: str
    info: ModelInfo


@dataclass(frozen=True)
class TurnRequest:
    messages: tuple[Message, ...]
    sampling: SamplingParams
    cancel: threading.Event
    id: int


@dataclass(frozen=True)
class PrefillRequest:
    messages: tuple[Message, ...]
    cancel: threading.Event
    id: int


class EngineWorker(QObject):
    loading = Signal(int, str)  # request id, model name
    loaded = Signal(object)  # LoadedModel
    load_failed = Signal(int, str)  # request id, message
    delta = Signal(int, str)  # turn id, text
    turn_finished = Signal(int, object)  # turn id, TurnResult
    turn_failed = Signal(int, str)  # turn id, message
    prefill_finished = Signal(int, object)  # prefill id, PrefillResult, or None when it failed or was cancelled
    speed_changed = Signal(object)  # Speed: the engine measured itself again

    _load = Signal(object)
    _turn = Signal(object)
    _prefill = Signal(object)
    _unload = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._engine: Engine | None = None  # touched in the engine's thread only
        self._wanted_load = 0  # the newest load asked for (written by the UI thread)
        self._thread = QThread()
        self._thread.setObjectName("engine")
        self.moveToThread(self._thread)
        self._load.connect(self._do_load)
        self._turn.connect(self._do_turn)
        self._prefill.connect(self._do_prefill)
        self._unload.connect(self._do_unload)
        self._thread.start()

    # -- from the UI thread ----------------------------------------------------------------

    def load(self, request: LoadRequest) -> int:
        """Load a model (after unloading the one before); returns the request's id."""
        request_id = next_request_id()
        self._wanted_load = request_id
        self._load.emit(LoadRequest(request.name, request.text, request.mmproj, request.settings, request_id))
        return request_id

    def run_turn(self, request: TurnRequest) -> None:
        self._turn.emit(request)

    def prefill(self, request: PrefillRequest) -> None:
        self._prefill.emit(request)

    def unload(self) -> None:
        self._wanted_load = next_request_id()  # a load still queued is no longer wanted
        self._unload.emit()

    def stop(self) -> None:
        """Unload and end the thread (when the window closes)."""
        self.unload()
        self._thread.quit()
        self._thread.wait()

    # -- in the engine's thread ------------------------------------------------------------

    @Slot(object)
    def _do_load(self, request: LoadRequest) -> None:
        if request.id != self._wanted_load:
            return  # another model was asked for since: do not spend seconds loading this one
        self._do_unload()
        self.loading.emit(request.id, request.name)
        try:
            self._engine = open_engine(request.text, request.mmproj, request.settings)
        except SmolChatError as e:
            self.load_failed.emit(request.id, str(e))
            return
        except Exception as e:  # a bug or a llama.cpp failure: say so rather than load forever
            log.exception("loading %s failed", request.name)
            self.load_failed.emit(request.id, f"{request.name} could not be loaded ({type(e).__name__}: {e}).")
            return
        self.loaded.emit(LoadedModel(request.id, request.name, self._engine.info()))

    @Slot()
    def _do_unload(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    @Slot(object)
    def _do_turn(self, request: TurnRequest) -> None:
        if self._engine is None:
            self.turn_failed.emit(request.id, "No model is loaded yet.")
            return
        pending, last_sent = "", time.monotonic()
        try:
            for event in self._engine.run_turn(list(request.messages), request.sampling, cancel=request.cancel):
                if isinstance(event, TextDelta):
                    pending += event.text
                    now = time.monotonic()
                    if now - last_sent >= DELTA_EVERY_S:
                        self.delta.emit(request.id, pending)
                        pending, last_sent = "", now
                elif isinstance(event, TurnResult):
                    if pending:
                        self.delta.emit(request.id, pending)
                    self.turn_finished.emit(request.id, event)
        except SmolChatError as e:
            self.turn_failed.emit(request.id, str(e))
        except Exception as e:  # the answer ends with a message instead of never ending
            log.exception("the turn failed")
            self.turn_failed.emit(request.id, f"The answer failed ({type(e).__name__}: {e}).")
        self.speed_changed.emit(self._engine.speed)

    @Slot(object)
    def _do_prefill(self, request: PrefillRequest) -> None:
        if self._engine is None or request.cancel.is_set():
            self.prefill_finished.emit(request.id, None)
            return
        try:
            result = self._engine.prefill(list(request.messages), cancel=request.cancel)
        except Exception:  # noqa: BLE001 (the turn itself will say what is wrong)
            log.debug("reading ahead failed", exc_info=True)
            result = None
        self.prefill_finished.emit(request.id, None if result is None or result.cancelled else result)
        self.speed_changed.emit(self._engine.speed)
