"""OpenAI's ``/v1/models`` and ``/v1/chat/completions``, streamed as server-sent events or not."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from smolchat.api.errors import ApiError, error_body
from smolchat.api.messages import ChatCompletionRequest, answer_format, conversation, parse_request, sampling
from smolchat.api.serving import ServerContext
from smolchat.api.turns import Turn, TurnResponse
from smolchat.engine import TurnResult
from smolchat.service import Delta, TurnFinished

_FINISH = {"stop": "stop", "length": "length", "context": "length", "cancelled": "stop"}


def openai_router(server: ServerContext) -> APIRouter:
    router = APIRouter()
    model = server.model

    @router.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [_model_card(server)]}

    @router.get("/v1/models/{model_id:path}")
    async def one_model(model_id: str) -> dict:
        if not model.answers_to(model_id):
            raise ApiError(404, f"The model {model_id!r} is not served here; this server has {model.id!r}.")
        return _model_card(server)

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        asked = parse_request(await server.read_json(request))
        if not model.answers_to(asked.model):
            raise ApiError(
                404, f"The model {asked.model!r} is not served here; this server has {model.id!r}.", param="model"
            )
        server.check_ready()
        params = sampling(asked, n_ctx=model.n_ctx, answer_format=answer_format(asked))
        messages = await anyio.to_thread.run_sync(lambda: conversation(asked, server.images))
        turn = Turn(server.service, messages, params, server.time_limit_s)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if asked.stream:
            return TurnResponse(turn, _sse(turn, asked, model.id, completion_id), "text/event-stream")
        result = await turn.result(request)
        return JSONResponse(_completion(result, model.id, completion_id))

    return router


def _model_card(server: ServerContext) -> dict:
    model = server.model
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": "smolchat",
        "input_modalities": ["text", "image"] if model.takes_images else ["text"],
        "context_length": model.n_ctx,
    }


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


async def _sse(turn: Turn, asked: ChatCompletionRequest, model_id: str, completion_id: str) -> AsyncIterator[str]:
    """Server-sent events: the answer in pieces, its end, the usage if asked, then [DONE].
    (TurnResponse ends the turn if the client leaves first.)"""
    yield _delta(completion_id, model_id, {"role": "assistant", "content": ""})
    try:
        async for event in turn.events():
            if isinstance(event, Delta):
                yield _delta(completion_id, model_id, {"content": event.text})
            elif isinstance(event, TurnFinished):
                result = event.result
                yield _delta(completion_id, model_id, {}, _FINISH.get(result.stats.finish_reason, "stop"))
                if asked.stream_options and asked.stream_options.include_usage:
                    yield _chunk(completion_id, model_id, [], usage=_usage(result), timings=_timings(result))
    except ApiError as e:
        yield _event(error_body(e.status, e.message))
    yield "data: [DONE]\n\n"
