"""Progress of long work deep inside the core (loading a model, measuring this computer,
reading an image's tiles), told to whoever asked for the work.

The code doing the work calls ``report``; whoever runs it wraps the call in ``reporting`` with
a callback (the engine service turns each report into an event for its client). Nothing is
passed down through the layers in between, and with no one listening a report costs a lookup.
The callback runs in the working thread: it must be quick and must not call back into the work.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# stage (what is being done, for a person), done, total (None: how much is left is not known)
Callback = Callable[[str, float, "float | None"], None]

_listener: contextvars.ContextVar[Callback | None] = contextvars.ContextVar("progress_listener", default=None)
EVERY_S = 0.05  # reports closer together than this are dropped, except a stage's first and last


@contextmanager
def reporting(callback: Callback) -> Iterator[None]:
    """Send what the work run inside this block reports to ``callback``."""
    last_stage: str | None = None
    last_at = 0.0

    def throttled(stage: str, done: float, total: float | None) -> None:
        nonlocal last_stage, last_at
        now = time.monotonic()
        ended = total is not None and done >= total
        if stage != last_stage or ended or now - last_at >= EVERY_S:
            last_stage, last_at = stage, now
            callback(stage, done, total)

    token = _listener.set(throttled)
    try:
        yield
    finally:
        _listener.reset(token)


def report(stage: str, done: float = 0, total: float | None = None) -> None:
    """Tell whoever listens that ``stage`` is ``done`` of ``total`` along."""
    listener = _listener.get()
    if listener is not None:
        listener(stage, done, total)


@contextmanager
def hushed() -> Iterator[None]:
    """Reports of the work inside are not passed on (a measurement loads small models of its
    own: their loading is not the model's)."""
    token = _listener.set(None)
    try:
        yield
    finally:
        _listener.reset(token)
