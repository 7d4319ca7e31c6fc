"""The HTTP server: OpenAI's ``/v1/chat/completions`` and ``/v1/models``, and ``/health``.

Each request becomes a turn on the engine service, queued behind the window's own turns
(background priority). The conversation a client resends is compared with what the KV cache
holds, images by their pixels, so a follow-up with the same image does not read it again.
A streaming client that goes away cancels its turn.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse

from smolchat.api.errors import ApiError, error_body, error_response
from smolchat.api.messages import ChatCompletionRequest, conversation, parse_request, sampling
from smolchat.engine import TurnResult
from smolchat.service import Cancelled, Delta, EngineService, Failed, Priority, TurnFinished

DEFAULT_MAX_BODY = 20 * 2**20  # a request, images included


@dataclass
class ServedModel:
    """What the server says about its model, and whether it can answer yet."""

    id: str
    n_ctx: int
    created: int = field(default_factory=lambda: int(time.time()))
    takes_images: bool = True
    ready: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None  # why it could not be loaded

    def unavailable(self) -> str | None:
        if self.failure:
            return f"The model could not be loaded: {self.failure}"
        return None if self.ready.is_set() else "The model is still loading; try again in a moment."


def create_app(
    service: EngineService,
    model: ServedModel,
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
) -> FastAPI:
    app = FastAPI(title="SmolChat", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def refused(_request: Request, error: ApiError) -> Response:
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> Response:
        return JSONResponse(error_body(error.status_code, str(error.detail)), error.status_code)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if api_key is not None and request.url.path != "/health":
            given = request.headers.get("authorization", "")
            if not _same(given, f"Bearer {api_key}"):
                return error_response(ApiError(401, "A valid API key is needed: Authorization: Bearer KEY."))
        return await call_next(request)

    @app.get("/health")
    async def health() -> Response:
        why = model.unavailable()
        if why:
            return JSONResponse(error_body(503, why), 503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [_model_card(model)]}

    @app.get("/v1/models/{model_id:path}")
    async def one_model(model_id: str) -> dict:
        if model_id != model.id:
            raise ApiError(404, f"The model {model_id!r} is not served here; this server has {model.id!r}.")
        return _model_card(model)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await _read_json(request, max_body_bytes)
        asked = parse_request(body)
        if asked.model != model.id:
            raise ApiError(
                404, f"The model {asked.model!r} is not served here; this server has {model.id!r}.", param="model"
            )
        why = model.unavailable()
        if why:
            raise ApiError(503, why)
        params = sampling(asked, n_ctx=model.n_ctx)
        messages = await anyio.to_thread.run_sync(lambda: conversation(asked, max_image_bytes=max_body_bytes))
        stream = service.turn(messages, params, priority=Priority.BACKGROUND)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if asked.stream:
            return _TurnStream(stream, _sse(stream, asked, model.id, completion_id))
        try:
            result = await _finish(stream)
        finally:
            stream.cancel()  # the client went away while it waited: nothing if it is done
        return JSONResponse(_completion(result, model.id, completion_id))

    return app


class _TurnStream(StreamingResponse):
    """Server-sent events that end the turn when the response ends, however it ends: a
    client that hangs up leaves the events' generator suspended (closed only when collected),
    so its own cleanup cannot be what frees the model."""

    def __init__(self, turn, events: AsyncIterator[str]) -> None:
        super().__init__(
            events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        self._turn = turn

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._turn.cancel()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _model_card(model: ServedModel) -> dict:
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": "smolchat",
        "input_modalities": ["text", "image"] if model.takes_images else ["text"],
        "context_length": model.n_ctx,
    }


async def _read_json(request: Request, limit: int) -> object:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"The request is larger than {limit // 2**20} MB.")
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > limit:
            raise ApiError(413, f"The request is larger than {limit // 2**20} MB.")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"The request body is not valid JSON ({e}).") from None


async def _next_event(events):
    return await anyio.to_thread.run_sync(next, events, None)


async def _finish(stream) -> TurnResult:
    events = iter(stream)
    while True:
        event = await _next_event(events)
        if isinstance(event, TurnFinished):
            return event.result
        if isinstance(event, Failed):
            raise ApiError(500, event.message)
        if event is None or isinstance(event, Cancelled):
            raise ApiError(503, "The request was dropped before it ran (the server is closing).")


_FINISH = {"stop": "stop", "length": "length", "context": "length", "cancelled": "stop"}


def _usage(result: TurnResult) -> dict:
    s = result.stats
    return {
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.generated_tokens,
        "total_tokens": s.prompt_tokens + s.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": s.reused_tokens},
    }


def _timings(result: TurnResult) -> dict:
    """llama-server's figures, so that the two can be compared."""
    s = result.stats
    return {
        "prompt_n": s.evaluated_tokens,
        "cache_n": s.reused_tokens,
        "prompt_ms": round((s.ttft_s or 0.0) * 1000, 3),
        "predicted_n": s.generated_tokens,
        "predicted_per_second": s.decode_tok_s,
    }


def _completion(result: TurnResult, model_id: str, completion_id: str) -> dict:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": _FINISH.get(result.stats.finish_reason, "stop"),
            }
        ],
        "usage": _usage(result),
        "timings": _timings(result),
    }


def _event(body: dict) -> str:
    return f"data: {json.dumps(body)}\n\n"


def _chunk(completion_id: str, model_id: str, choices: list[dict], **extra) -> str:
    return _event(
        {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model_id,
            "choices": choices,
            **extra,
        }
    )


def _delta(completion_id: str, model_id: str, delta: dict, finish: str | None = None) -> str:
    return _chunk(completion_id, model_id, [{"index": 0, "delta": delta, "finish_reason": finish}])


async def _sse(stream, asked: ChatCompletionRequest, model_id: str, completion_id: str) -> AsyncIterator[str]:
    """Server-sent events: the answer in pieces, its end, the usage if asked, then [DONE].
    (_TurnStream ends the turn if the client leaves first.)"""
    events = iter(stream)
    yield _delta(completion_id, model_id, {"role": "assistant", "content": ""})
    while True:
        event = await _next_event(events)
        if isinstance(event, Delta):
            yield _delta(completion_id, model_id, {"content": event.text})
        elif isinstance(event, TurnFinished):
            result = event.result
            yield _delta(completion_id, model_id, {}, _FINISH.get(result.stats.finish_reason, "stop"))
            if asked.stream_options and asked.stream_options.include_usage:
                yield _chunk(completion_id, model_id, [], usage=_usage(result), timings=_timings(result))
            break
        elif isinstance(event, Failed):
            yield _event(error_body(500, event.message))
            break
        elif event is None or isinstance(event, Cancelled):
            yield _event(error_body(503, "The request was dropped before it ran."))
            break
    yield "data: [DONE]\n\n"
