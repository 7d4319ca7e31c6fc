"""A client's request as a turn on the engine service, from the server's event loop.

Every route runs its turn through here: queued behind the window's turns, its events read
without blocking the loop, its answer checked against the format it asked for, and the turn
cancelled when the client goes away or the request runs past the server's time limit, so that
the model is free again within a moment.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import anyio
from fastapi import Request
from starlette.responses import StreamingResponse

from smolchat.api.errors import ApiError
from smolchat.engine import Message, SamplingParams, TurnResult
from smolchat.engine.structured import AnswerFormatError
from smolchat.service import Cancelled, Delta, EngineService, Failed, Priority, TurnFinished

WATCH_EVERY_S = 0.2  # how often a waiting request checks its client and its time


@dataclass
class Turn:
    """One request's turn: its events, and why it was stopped early, if it was."""

    service: EngineService
    messages: Sequence[Message]
    sampling: SamplingParams
    time_limit_s: float | None = None

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.stream = self.service.turn(self.messages, self.sampling, priority=Priority.BACKGROUND)
        self.stopped: str | None = None  # "timeout" or "disconnected"

    def cancel(self, why: str) -> None:
        if self.stopped is None:
            self.stopped = why
        self.stream.cancel()

    async def events(self, request: Request | None = None) -> AsyncIterator[Delta | TurnFinished]:
        """Deltas, then TurnFinished; ApiError for a failure. With ``request``, a client that
        goes away cancels the turn (a streaming response's own end does that otherwise)."""
        watched = time.monotonic()
        while True:
            # waits a moment at most, so that the client and the time are checked meanwhile
            event = await anyio.to_thread.run_sync(self.stream.next_event, WATCH_EVERY_S)
            if time.monotonic() - watched >= WATCH_EVERY_S:
                await self._watch(request)
                watched = time.monotonic()
            if event is None:
                continue
            if isinstance(event, Delta):
                yield event
            elif isinstance(event, TurnFinished):
                self._check(event.result)
                yield event
                return
            elif isinstance(event, Failed):
                raise ApiError(400 if event.refused else 500, event.message)
            elif isinstance(event, Cancelled):
                raise self._dropped()

    async def result(self, request: Request) -> TurnResult:
        """The whole answer (for a response that is not streamed)."""
        async for event in self.events(request):
            if isinstance(event, TurnFinished):
                return event.result
        raise self._dropped()

    async def _watch(self, request: Request | None) -> None:
        if self.stopped is not None:
            return  # cancelled already: its final event is on its way
        if self.time_limit_s is not None and time.monotonic() - self.started > self.time_limit_s:
            self.cancel("timeout")
        elif request is not None and await request.is_disconnected():
            self.cancel("disconnected")

    def _check(self, result: TurnResult) -> None:
        if self.stopped == "timeout":
            raise ApiError(
                504, f"The request took longer than the server's limit of {self.time_limit_s:g} s; it was stopped."
            )
        answer_format = self.sampling.answer_format
        if answer_format is not None and result.stats.finish_reason != "cancelled":
            try:
                answer_format.check(result.text)
            except AnswerFormatError as e:  # never expected: the grammar made it so
                raise ApiError(500, str(e)) from None

    def _dropped(self) -> ApiError:
        if self.stopped == "timeout":
            return ApiError(504, f"The request waited longer than the server's limit of {self.time_limit_s:g} s.")
        return ApiError(503, "The request was dropped before it ran (the server is closing).")


class TurnResponse(StreamingResponse):
    """A streamed answer that ends its turn when the response ends, however it ends: a client
    that hangs up leaves the body's generator suspended (closed only when collected), so its
    own cleanup cannot be what frees the model."""

    def __init__(self, turn: Turn, body: AsyncIterator[str], media_type: str) -> None:
        super().__init__(body, media_type=media_type, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._turn = turn

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._turn.cancel("disconnected")
