"""What the engine service tells its clients. Each event names the request it answers and
carries plain values only (snapshots, numbers, text): nothing in it calls into llama.cpp, so
any thread may keep it.

Every request ends with exactly one final event (``final`` is True): Loaded, Unloaded,
TurnFinished, PrefillFinished, Counted, Failed or Cancelled. Loading, Delta, Progress and
SpeedChanged come before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from smolchat.engine import ModelInfo, PrefillResult, PromptCount, TurnResult
from smolchat.engine.speed import Speed


@dataclass(frozen=True)
class Loading:
    final: ClassVar[bool] = False
    request_id: int
    name: str


@dataclass(frozen=True)
class Loaded:
    final: ClassVar[bool] = True
    request_id: int
    name: str
    info: ModelInfo


@dataclass(frozen=True)
class Unloaded:
    final: ClassVar[bool] = True
    request_id: int


@dataclass(frozen=True)
class Delta:
    """A piece of the answer: what was generated since the last one, sent at a steady pace."""

    final: ClassVar[bool] = False
    request_id: int
    text: str


@dataclass(frozen=True)
class TurnFinished:
    final: ClassVar[bool] = True
    request_id: int
    result: TurnResult  # the whole answer; finish_reason "cancelled" when it was stopped


@dataclass(frozen=True)
class PrefillFinished:
    final: ClassVar[bool] = True
    request_id: int
    result: PrefillResult  # result.cancelled when it was stopped


@dataclass(frozen=True)
class Counted:
    final: ClassVar[bool] = True
    request_id: int
    count: PromptCount


@dataclass(frozen=True)
class Progress:
    """How far a long step of the request has come: loading the weights, measuring this
    computer, reading an image's tiles."""

    final: ClassVar[bool] = False
    request_id: int
    stage: str  # what is being done, for a person
    done: float
    total: float | None  # None: how much is left is not known


@dataclass(frozen=True)
class SpeedChanged:
    """The engine measured this computer again while running the request."""

    final: ClassVar[bool] = False
    request_id: int
    speed: Speed


@dataclass(frozen=True)
class Failed:
    final: ClassVar[bool] = True
    request_id: int
    message: str  # written for a person: show it as it is
    refused: bool = False  # the request could not be done as asked (too long, say): the engine is fine


CANCELLED = "cancelled"  # by its client
REPLACED = "replaced"  # a load made pointless by a newer load or an unload
CLOSED = "closed"  # the service was closed first


@dataclass(frozen=True)
class Cancelled:
    """The request was taken out of the queue before it ran."""

    final: ClassVar[bool] = True
    request_id: int
    reason: str = CANCELLED  # CANCELLED, REPLACED or CLOSED


Event = (
    Loading
    | Loaded
    | Unloaded
    | Delta
    | Progress
    | TurnFinished
    | PrefillFinished
    | Counted
    | SpeedChanged
    | Failed
    | Cancelled
)
