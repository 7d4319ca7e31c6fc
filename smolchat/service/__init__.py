"""The one door to a loaded model: a queue of requests owned by one thread, events tagged with
the request's id, interactive requests first. Clients get snapshots, never the Engine. No Qt."""

from smolchat.service.engine_service import DELTA_EVERY_S, EngineService, RequestStream, load_engine
from smolchat.service.events import (
    CANCELLED,
    CLOSED,
    REPLACED,
    Cancelled,
    Counted,
    Delta,
    Event,
    Failed,
    Loaded,
    Loading,
    PrefillFinished,
    SpeedChanged,
    TurnFinished,
    Unloaded,
)
from smolchat.service.requests import (
    CountRequest,
    LoadRequest,
    PrefillRequest,
    Priority,
    Request,
    TurnRequest,
    UnloadRequest,
    next_request_id,
)

__all__ = [
    "CANCELLED",
    "CLOSED",
    "DELTA_EVERY_S",
    "REPLACED",
    "Cancelled",
    "CountRequest",
    "Counted",
    "Delta",
    "EngineService",
    "Event",
    "Failed",
    "LoadRequest",
    "Loaded",
    "Loading",
    "PrefillFinished",
    "PrefillRequest",
    "Priority",
    "Request",
    "RequestStream",
    "SpeedChanged",
    "TurnFinished",
    "TurnRequest",
    "Unloaded",
    "UnloadRequest",
    "load_engine",
    "next_request_id",
]
