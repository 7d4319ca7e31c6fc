"""What clients ask of the engine service. Every request carries an id, unique in the process,
and every event that answers it carries the same id."""

from __future__ import annotations

import enum
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path

from smolchat.engine import EngineSettings, Message, SamplingParams
from smolchat.remote.client import ServerSpec

_ids = itertools.count(1)


def next_request_id() -> int:
    """A new id; safe from any thread."""
    return next(_ids)


class Priority(enum.IntEnum):
    """Which requests run first: the window's before the API's and batch jobs'. Requests of
    the same priority run in the order they were submitted; a running one is never pre-empted."""

    INTERACTIVE = 0
    BACKGROUND = 1


@dataclass(frozen=True)
class LoadRequest:
    """Load a model pair, after unloading the one before. A newer load or an unload replaces
    a load still waiting in the queue: it is then never loaded."""

    name: str
    text: Path
    mmproj: Path | None
    settings: EngineSettings
    id: int = 0  # 0: the service gives it one
    server: ServerSpec | None = None  # a server's model instead of the files (text and mmproj unused)


@dataclass(frozen=True)
class UnloadRequest:
    id: int = 0


@dataclass(frozen=True)
class TurnRequest:
    """Answer the last of ``messages``. Setting ``cancel`` (or cancelling the id) stops it; the
    answer so far comes back, marked "cancelled"."""

    messages: tuple[Message, ...]
    sampling: SamplingParams
    cancel: threading.Event
    id: int


@dataclass(frozen=True)
class PrefillRequest:
    """Evaluate ``messages`` ahead of a turn (the images of the message being written)."""

    messages: tuple[Message, ...]
    cancel: threading.Event
    id: int


@dataclass(frozen=True)
class CountRequest:
    """Count the context positions ``messages`` take with the loaded model (text tokens and
    image embeddings), without evaluating anything."""

    messages: tuple[Message, ...]
    add_generation_prompt: bool = True
    id: int = 0


Request = LoadRequest | UnloadRequest | TurnRequest | PrefillRequest | CountRequest
