"""The window's door to the engine service: requests go in, events come back as signals.

The model lives in the service's thread (``smolchat.service``); this object lives in the UI
thread. The service hands each event to a queued signal, so every public signal below is
emitted on the UI thread, tagged with the id of the request it answers, and carries plain
snapshots (``ModelInfo``, ``Speed``, results), never the Engine. A load that a newer load
has replaced is never loaded, and the window drops results of requests it no longer waits
for. The window cancels a turn or a prefill by setting the request's ``cancel`` event.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject, Qt, Signal, Slot

from smolchat.service import (
    DELTA_EVERY_S,
    Cancelled,
    Delta,
    EngineService,
    Event,
    Failed,
    Loaded,
    Loading,
    LoadRequest,
    PrefillFinished,
    PrefillRequest,
    Priority,
    Progress,
    SpeedChanged,
    TurnFinished,
    TurnRequest,
    UnloadRequest,
    next_request_id,
)

LoadedModel = Loaded  # what ``loaded`` carries: request_id, name, info

__all__ = [
    "DELTA_EVERY_S",
    "EngineWorker",
    "LoadRequest",
    "LoadedModel",
    "PrefillRequest",
    "TurnRequest",
    "next_request_id",
]

_LOAD, _TURN, _PREFILL = "load", "turn", "prefill"


class EngineWorker(QObject):
    loading = Signal(int, str)  # request id, model name
    loaded = Signal(object)  # LoadedModel
    load_failed = Signal(int, str)  # request id, message
    delta = Signal(int, str)  # turn id, text
    turn_finished = Signal(int, object)  # turn id, TurnResult
    turn_failed = Signal(int, str)  # turn id, message
    prefill_finished = Signal(int, object)  # prefill id, PrefillResult, or None when it failed or was cancelled
    speed_changed = Signal(object)  # Speed: the engine measured itself again
    progress = Signal(int, str, float, float)  # request id, stage, done, total (-1: not known)

    _event = Signal(object)  # an event of the service, from its thread

    def __init__(self) -> None:
        super().__init__()
        self._asked: dict[int, str] = {}  # what each request waiting for its end was
        self._event.connect(self._handle, Qt.ConnectionType.QueuedConnection)
        self.service = EngineService(self._from_service)

    def _from_service(self, event: Event) -> None:
        """On the service's thread: only the window's own requests reach the window (the
        local API's turns run on the same service)."""
        if event.request_id in self._asked or isinstance(event, SpeedChanged):
            self._event.emit(event)

    def load(self, request: LoadRequest) -> int:
        """Load a model (after unloading the one before); returns the request's id."""
        request_id = next_request_id()
        self._asked[request_id] = _LOAD
        self.service.submit(replace(request, id=request_id), priority=Priority.INTERACTIVE)
        return request_id

    def run_turn(self, request: TurnRequest) -> None:
        self._asked[request.id] = _TURN
        self.service.submit(request, priority=Priority.INTERACTIVE)

    def prefill(self, request: PrefillRequest) -> None:
        self._asked[request.id] = _PREFILL
        self.service.submit(request, priority=Priority.INTERACTIVE)

    def unload(self) -> None:
        self.service.submit(UnloadRequest(), priority=Priority.INTERACTIVE)  # a load still queued is dropped

    def stop(self) -> None:
        """Stop what runs, unload and end the service's thread (when the window closes)."""
        self.service.close()

    @Slot(object)
    def _handle(self, event: Event) -> None:
        request_id = event.request_id
        asked = self._asked.pop(request_id, None) if event.final else self._asked.get(request_id)
        if isinstance(event, Loading):
            self.loading.emit(request_id, event.name)
        elif isinstance(event, Loaded):
            self.loaded.emit(event)
        elif isinstance(event, Delta):
            self.delta.emit(request_id, event.text)
        elif isinstance(event, TurnFinished):
            self.turn_finished.emit(request_id, event.result)
        elif isinstance(event, PrefillFinished):
            self.prefill_finished.emit(request_id, None if event.result.cancelled else event.result)
        elif isinstance(event, Progress):
            self.progress.emit(request_id, event.stage, event.done, -1.0 if event.total is None else event.total)
        elif isinstance(event, SpeedChanged):
            self.speed_changed.emit(event.speed)
        elif isinstance(event, Failed):
            self._ended_without_result(asked, request_id, event.message)
        elif isinstance(event, Cancelled) and asked != _LOAD:  # a replaced load is dropped without a word
            self._ended_without_result(asked, request_id, "The answer was stopped before it started.")

    def _ended_without_result(self, asked: str | None, request_id: int, message: str) -> None:
        if asked == _LOAD:
            self.load_failed.emit(request_id, message)
        elif asked == _TURN:
            self.turn_failed.emit(request_id, message)
        elif asked == _PREFILL:
            self.prefill_finished.emit(request_id, None)
