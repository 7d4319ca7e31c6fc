"""The engine service: one thread, the only holder of a loaded Engine, runs what clients ask.

Clients (the window through its Qt worker, the command line, the local API, batch jobs) submit
requests from any thread. The service's thread takes them one at a time, interactive ones
first and otherwise in the order they came, and answers with events tagged with the request's
id (see ``events``). The Engine never leaves that thread: events carry snapshots and plain
values only.

Two ways to receive events:
- ``on_event``, given to the constructor, is called with every event of every request. It is
  called on the service's thread, except for the Cancelled event of a request taken out of the
  queue before it ran (cancelled, replaced by a newer load, or dropped by ``close()``): that one
  comes at once, on the thread that took it out. Keep the callback short (hand the event on to
  another thread or queue): the model waits while it runs.
- ``stream(request)`` (or ``turn(messages)``) returns a ``RequestStream``, an iterator over that
  request's events that ends with its final event, for a client that blocks on the answer:
  ``for event in service.turn(messages): ...``. Never iterate it on the service's thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from smolchat import progress
from smolchat.calibrate import open_engine
from smolchat.engine import Message, SamplingParams, TextDelta, TurnResult
from smolchat.engine.types import RequestError
from smolchat.errors import SmolChatError
from smolchat.media.attach import MediaReader, planned_messages
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
    Progress,
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

if TYPE_CHECKING:
    from smolchat.engine.engine import Engine
    from smolchat.remote.engine import RemoteEngine

log = logging.getLogger(__name__)

DELTA_EVERY_S = 0.04  # streamed text is sent at most this often: windows repaint at a steady pace
NO_MODEL = "No model is loaded yet."


def load_engine(request: LoadRequest) -> Engine | RemoteEngine:
    """The one place where the service opens a model pair: with the vision plan measured
    fastest on this computer; or connects to a server's model."""
    from smolchat.budget.fit import vision_memory_rule

    if request.server is not None:
        from smolchat.remote.engine import RemoteEngine

        return RemoteEngine.connect(request.server)

    return open_engine(request.text, request.mmproj, request.settings, fits=vision_memory_rule(request.settings))


class RequestStream:
    """The events of one request, in order, ending with its final event."""

    def __init__(self, service: EngineService, request_id: int) -> None:
        self.request_id = request_id
        self._service = service
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._final: Event | None = None

    def __iter__(self) -> Iterator[Event]:
        while self._final is None:
            event = self._events.get()
            if event.final:
                self._final = event
            yield event

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event; None if none came within ``timeout`` seconds. Not after the final one."""
        assert self._final is None, "the request has ended"
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if event.final:
            self._final = event
        return event

    def wait(self) -> Event:
        """Block until the request ends; its final event (skipping those before it)."""
        for _ in self:
            pass
        assert self._final is not None
        return self._final

    def cancel(self) -> bool:
        return self._service.cancel(self.request_id)

    def _put(self, event: Event) -> None:
        self._events.put(event)


class EngineService:
    """One thread that owns the model; see the module's description for how to use it."""

    def __init__(self, on_event: Callable[[Event], None] | None = None, *, thread_name: str = "engine") -> None:
        self._on_event = on_event
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: list[tuple[int, int, Request]] = []  # a heap of (priority, arrival, request)
        self._arrivals = itertools.count()
        self._running: Request | None = None
        self._streams: dict[int, RequestStream] = {}
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name=thread_name, daemon=True)
        self._thread.start()

    # -- from any thread -------------------------------------------------------------------

    def submit(self, request: Request, *, priority: Priority = Priority.BACKGROUND) -> int:
        """Queue ``request``; its events go to ``on_event``. Returns its id (given one if it had 0)."""
        return self._submit(request, priority, None)

    def stream(self, request: Request, *, priority: Priority = Priority.BACKGROUND) -> RequestStream:
        """Queue ``request``; its events come through the returned stream (and ``on_event``)."""
        request = _with_id(request)
        stream = RequestStream(self, request.id)
        self._submit(request, priority, stream)
        return stream

    def turn(
        self,
        messages: Sequence[Message],
        sampling: SamplingParams = SamplingParams(),
        *,
        priority: Priority = Priority.BACKGROUND,
    ) -> RequestStream:
        """Answer the last of ``messages``: Delta events, then TurnFinished (or Failed)."""
        request = TurnRequest(tuple(messages), sampling, threading.Event(), next_request_id())
        return self.stream(request, priority=priority)

    def cancel(self, request_id: int) -> bool:
        """Take the request out of the queue (it ends with Cancelled), or stop it if it is a turn
        or a prefill that runs (it ends with what it got so far). A running load or count
        cannot be stopped. False when there was nothing to cancel."""
        with self._lock:
            queued = self._take_queued(lambda r: r.id == request_id)
            running = self._running if self._running is not None and self._running.id == request_id else None
        if queued:
            self._emit(Cancelled(request_id, CANCELLED))
            return True
        if isinstance(running, (TurnRequest, PrefillRequest)):
            running.cancel.set()
            return True
        return False

    def close(self) -> None:
        """Drop what is queued, stop what runs, unload the model and end the thread."""
        with self._lock:
            self._closing = True
            dropped = self._take_queued(lambda _r: True)
            running = self._running
            self._wake.notify_all()
        if isinstance(running, (TurnRequest, PrefillRequest)):
            running.cancel.set()
        for request in dropped:
            self._emit(Cancelled(request.id, CLOSED))
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    # -- queue -----------------------------------------------------------------------------

    def _submit(self, request: Request, priority: Priority, stream: RequestStream | None) -> int:
        request = _with_id(request)
        with self._lock:
            if stream is not None:
                self._streams[request.id] = stream
            if self._closing:
                dropped = [(request, CLOSED)]
            else:
                dropped = []
                if isinstance(request, (LoadRequest, UnloadRequest)):  # a load still waiting is pointless now
                    dropped = [(r, REPLACED) for r in self._take_queued(lambda r: isinstance(r, LoadRequest))]
                heapq.heappush(self._queue, (int(priority), next(self._arrivals), request))
                self._wake.notify()
        for old, reason in dropped:
            self._emit(Cancelled(old.id, reason))
        return request.id

    def _take_queued(self, matches: Callable[[Request], bool]) -> list[Request]:
        """Remove the queued requests that match; the lock is held."""
        taken = [entry for entry in self._queue if matches(entry[2])]
        if taken:
            self._queue = [entry for entry in self._queue if not matches(entry[2])]
            heapq.heapify(self._queue)
        return [request for _, _, request in sorted(taken)]

    def _emit(self, event: Event) -> None:
        with self._lock:
            stream = self._streams.pop(event.request_id, None) if event.final else self._streams.get(event.request_id)
        if stream is not None:
            stream._put(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a client's bug must not stop the model's thread
                log.exception("handling %s failed", type(event).__name__)

    # -- on the service's thread ------------------------------------------------------------

    def _progress(self, request_id: int, stage: str, done: float, total: float | None) -> None:
        self._emit(Progress(request_id, stage, done, total))

    def _serve(self) -> None:
        owner = _ModelOwner(self._emit)  # referenced from this thread only: so is its Engine
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closing:
                        self._wake.wait()
                    if not self._queue:
                        return  # closing, and everything queued was dropped
                    _, _, request = heapq.heappop(self._queue)
                    self._running = request
                try:
                    with progress.reporting(partial(self._progress, request.id)):
                        owner.run(request)
                except Exception as e:  # a bug here: the request still ends, the thread goes on
                    log.exception("the engine service failed on %s", type(request).__name__)
                    self._emit(Failed(request.id, f"The request failed ({type(e).__name__}: {e})."))
                finally:
                    with self._lock:
                        self._running = None
        finally:
            owner.unload()


class _ModelOwner:
    """Holds the loaded Engine and runs requests on it, in the service's thread."""

    def __init__(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit
        self._engine: Engine | RemoteEngine | None = None
        self._media = MediaReader()  # clips and PDFs in messages, as frames and pages

    def run(self, request: Request) -> None:
        if isinstance(request, LoadRequest):
            self._load(request)
        elif isinstance(request, UnloadRequest):
            self.unload()
            self._emit(Unloaded(request.id))
        elif isinstance(request, TurnRequest):
            self._turn(request)
        elif isinstance(request, PrefillRequest):
            self._prefill(request)
        elif isinstance(request, CountRequest):
            self._count(request)
        else:
            raise TypeError(f"not a request: {request!r}")

    def unload(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.close()

    def _load(self, request: LoadRequest) -> None:
        self.unload()
        self._emit(Loading(request.id, request.name))
        try:
            self._engine = load_engine(request)
        except SmolChatError as e:
            self._emit(Failed(request.id, str(e)))
            return
        except Exception as e:  # a bug or a llama.cpp failure: say so rather than load forever
            log.exception("loading %s failed", request.name)
            self._emit(Failed(request.id, f"{request.name} could not be loaded ({type(e).__name__}: {e})."))
            return
        self._emit(Loaded(request.id, request.name, self._engine.info()))

    def _turn(self, request: TurnRequest) -> None:
        engine = self._engine
        if engine is None:
            self._emit(Failed(request.id, NO_MODEL))
            return
        pending, last_sent = "", time.monotonic()
        final: Event | None = None
        try:
            messages = self._expanded(engine, request.messages, request.cancel)
            for event in engine.run_turn(messages, request.sampling, cancel=request.cancel):
                if isinstance(event, TextDelta):
                    pending += event.text
                    now = time.monotonic()
                    if now - last_sent >= DELTA_EVERY_S:
                        self._emit(Delta(request.id, pending))
                        pending, last_sent = "", now
                elif isinstance(event, TurnResult):
                    final = TurnFinished(request.id, event)
        except SmolChatError as e:
            final = Failed(request.id, str(e), refused=isinstance(e, RequestError))
        except Exception as e:  # the answer ends with a message instead of never ending
            log.exception("the turn failed")
            final = Failed(request.id, f"The answer failed ({type(e).__name__}: {e}).")
        if pending:  # what came before a failure is part of the answer too
            self._emit(Delta(request.id, pending))
        self._emit(SpeedChanged(request.id, engine.speed))
        self._emit(final or Failed(request.id, "The answer ended without a result."))

    def _prefill(self, request: PrefillRequest) -> None:
        engine = self._engine
        if engine is None:
            self._emit(Failed(request.id, NO_MODEL))
            return
        if request.cancel.is_set():  # given up while it waited: no need to read the images
            self._emit(Cancelled(request.id, CANCELLED))
            return
        try:
            messages = self._expanded(engine, request.messages, request.cancel)
            final: Event = PrefillFinished(request.id, engine.prefill(messages, cancel=request.cancel))
        except SmolChatError as e:
            final = Failed(request.id, str(e))
        except Exception as e:  # the turn that follows will say what is wrong, if it matters
            log.debug("reading ahead failed", exc_info=True)
            final = Failed(request.id, f"Reading ahead failed ({type(e).__name__}: {e}).")
        self._emit(SpeedChanged(request.id, engine.speed))
        self._emit(final)

    def _expanded(self, engine: Engine | RemoteEngine, messages, cancel: threading.Event) -> list[Message]:
        """Clips and PDFs in the messages as their frames and pages."""
        s = engine.settings
        return self._media.expand(
            list(messages), engine.projector_info, fps=s.video_fps, max_frames=s.video_max_frames, cancel=cancel
        )

    def _count(self, request: CountRequest) -> None:
        engine = self._engine
        if engine is None:
            self._emit(Failed(request.id, NO_MODEL))
            return
        try:
            s = engine.settings
            messages = planned_messages(
                list(request.messages), engine.projector_info, fps=s.video_fps, max_frames=s.video_max_frames
            )
            count = engine.count_prompt(messages, add_generation_prompt=request.add_generation_prompt)
        except SmolChatError as e:
            self._emit(Failed(request.id, str(e)))
            return
        except Exception as e:
            log.exception("counting failed")
            self._emit(Failed(request.id, f"The prompt could not be counted ({type(e).__name__}: {e})."))
            return
        self._emit(Counted(request.id, count))


def _with_id(request: Request) -> Request:
    return request if request.id else replace(request, id=next_request_id())
