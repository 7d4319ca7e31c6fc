"""Ollama's API: ``/api/chat``, ``/api/generate``, ``/api/tags``, ``/api/show``, ``/api/ps`` and
``/api/version``, so that a tool written for Ollama works unchanged against this address.

Streaming is newline-delimited JSON, on by default as in Ollama; durations are nanoseconds;
errors are ``{"error": "..."}``. Images are bare base64; ``format`` is "json" or a JSON schema.
The context size is the server's own (``serve --n-ctx``): ``options.num_ctx`` can lower what
an answer may take, not raise it, and ``keep_alive`` is ignored (the model stays loaded).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse, Response

from smolchat.api.errors import ApiError
from smolchat.api.images import image_from_base64
from smolchat.api.messages import MAX_MESSAGES, stop_sequences
from smolchat.api.serving import ServerContext
from smolchat.api.turns import Turn, TurnResponse
from smolchat.engine import Message, SamplingParams, TurnResult
from smolchat.engine.structured import AnswerFormatError, JsonFormat, json_object, json_schema
from smolchat.service import Delta, TurnFinished

OLLAMA_PREFIX = "/api/"
# The version of Ollama's API these routes follow (tools check it before using a feature)
OLLAMA_API_VERSION = "0.9.0"
MAX_IMAGES = 64


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Options(_Lenient):
    num_ctx: int | None = Field(default=None, ge=1)
    num_predict: int | None = None  # -1: until the model stops (or the context is full)
    temperature: float | None = Field(default=None, ge=0, le=5)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    stop: list[str] | str | None = None
    repeat_penalty: float | None = Field(default=None, ge=0)
    repeat_last_n: int | None = Field(default=None, ge=-1)


class ChatMessage(_Lenient):
    role: Literal["system", "user", "assistant"]
    content: str = ""
    images: list[str] | None = Field(default=None, max_length=MAX_IMAGES)


class _Asked(_Lenient):
    model: str
    stream: bool = True
    format: str | dict | None = None
    options: Options | None = None


class ChatRequest(_Asked):
    messages: list[ChatMessage] = Field(default_factory=list, max_length=MAX_MESSAGES)


class GenerateRequest(_Asked):
    prompt: str = ""
    system: str | None = None
    images: list[str] | None = Field(default=None, max_length=MAX_IMAGES)
    raw: bool = False


class ShowRequest(_Lenient):
    model: str | None = None
    name: str | None = None  # older clients


def ollama_error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status)


def ollama_router(server: ServerContext) -> APIRouter:
    router = APIRouter(prefix="/api")
    model = server.model

    def known(name: str) -> None:
        if not model.answers_to(name):
            raise ApiError(404, f"model '{name}' not found (this server has '{model.id}')")

    @router.get("/version")
    async def version() -> dict:
        return {"version": OLLAMA_API_VERSION}

    @router.get("/tags")
    async def tags() -> dict:
        return {"models": [_listing(server)]}

    @router.get("/ps")
    async def running() -> dict:
        loaded = model.ready.is_set() and not model.failure
        entry = {
            **_listing(server),
            "expires_at": "9999-12-31T23:59:59Z",
            "size_vram": 0,
            "context_length": model.n_ctx,
        }
        return {"models": [entry] if loaded else []}

    @router.post("/show")
    async def show(request: Request) -> dict:
        asked = _parse(ShowRequest, await server.read_json(request))
        known(asked.model or asked.name or "")
        return {
            "modelfile": "",
            "parameters": "",
            "template": "",
            "details": _details(server),
            "model_info": {"general.architecture": "llama", "llama.context_length": model.n_ctx},
            "capabilities": ["completion", "vision"] if model.takes_images else ["completion"],
            "modified_at": _timestamp(model.created),
        }

    @router.post("/chat")
    async def chat(request: Request) -> Response:
        asked = _parse(ChatRequest, await server.read_json(request))
        known(asked.model)
        if not asked.messages:  # Ollama's way of loading a model
            return JSONResponse(_final(server, asked, None, "chat", done_reason="load"))
        server.check_ready()
        messages = await anyio.to_thread.run_sync(lambda: _chat_messages(asked, server))
        return await _answer(server, request, asked, messages, "chat")

    @router.post("/generate")
    async def generate(request: Request) -> Response:
        asked = _parse(GenerateRequest, await server.read_json(request))
        known(asked.model)
        if asked.raw:
            raise ApiError(400, "raw prompts are not supported: the model's chat template is always used")
        if not asked.prompt and not asked.images:
            return JSONResponse(_final(server, asked, None, "generate", done_reason="load"))
        server.check_ready()
        messages = await anyio.to_thread.run_sync(lambda: _generate_messages(asked, server))
        return await _answer(server, request, asked, messages, "generate")

    return router


async def _answer(server: ServerContext, request: Request, asked: _Asked, messages, kind: str) -> Response:
    turn = Turn(server.service, messages, _sampling(asked, server.model.n_ctx), server.time_limit_s)
    if asked.stream:
        return TurnResponse(turn, _ndjson(server, turn, asked, kind), "application/x-ndjson")
    result = await turn.result(request)
    body = _final(server, asked, result, kind, started=turn.started)
    if kind == "chat":
        body["message"]["content"] = result.text
    else:
        body["response"] = result.text
    return JSONResponse(body)


async def _ndjson(server: ServerContext, turn: Turn, asked: _Asked, kind: str) -> AsyncIterator[str]:
    try:
        async for event in turn.events():
            if isinstance(event, Delta):
                yield _line({**_piece(server, asked, kind, event.text), "done": False})
            elif isinstance(event, TurnFinished):
                yield _line(_final(server, asked, event.result, kind, started=turn.started))
    except ApiError as e:
        yield _line({"error": e.message})


def _parse(shape: type[_Lenient], body: object):
    try:
        return shape.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"{where}: {first['msg']}" if where else first["msg"]) from None


def _answer_format(asked: _Asked) -> JsonFormat | None:
    spec = asked.format
    if spec is None or spec == "":
        return None
    try:
        if spec == "json":
            return json_object()
        if isinstance(spec, dict):
            return json_schema(spec)
    except AnswerFormatError as e:
        raise ApiError(400, f"format: {e}") from None
    raise ApiError(400, 'format: "json" or a JSON schema')


def _sampling(asked: _Asked, n_ctx: int) -> SamplingParams:
    o = asked.options or Options()
    d = SamplingParams()
    stops = stop_sequences(o.stop, "options.stop")
    room = min(n_ctx, o.num_ctx or n_ctx)
    max_tokens = o.num_predict if o.num_predict is not None and o.num_predict > 0 else room
    return SamplingParams(
        temperature=d.temperature if o.temperature is None else o.temperature,
        top_p=d.top_p if o.top_p is None else o.top_p,
        top_k=d.top_k if o.top_k is None else o.top_k,
        min_p=d.min_p if o.min_p is None else o.min_p,
        repeat_penalty=d.repeat_penalty if o.repeat_penalty is None else o.repeat_penalty,
        repeat_last_n=(n_ctx if o.repeat_last_n == -1 else o.repeat_last_n)
        if o.repeat_last_n is not None
        else d.repeat_last_n,
        seed=o.seed,
        max_tokens=min(max_tokens, room),
        stop=stops,
        answer_format=_answer_format(asked),
    )


def _images(encoded: list[str] | None, where: str, server: ServerContext) -> list:
    if encoded and not server.model.takes_images:
        raise ApiError(400, f"{where}: this model was loaded without its vision projector and cannot read images")
    return [image_from_base64(e, f"{where}.{i}", server.images) for i, e in enumerate(encoded or [])]


def _chat_messages(asked: ChatRequest, server: ServerContext) -> list[Message]:
    messages = []
    for i, m in enumerate(asked.messages):
        if m.role == "user":
            messages.append(Message.user(m.content, images=_images(m.images, f"messages.{i}.images", server)))
        elif m.images:
            raise ApiError(400, f"messages.{i}.images: only user messages can hold images")
        else:
            messages.append(Message(m.role, (m.content,)))
    if messages[-1].role != "user":
        raise ApiError(400, "messages: the last message must be the user's")
    return messages


def _generate_messages(asked: GenerateRequest, server: ServerContext) -> list[Message]:
    system = [Message("system", (asked.system,))] if asked.system else []
    return [*system, Message.user(asked.prompt, images=_images(asked.images, "images", server))]


def _piece(server: ServerContext, asked: _Asked, kind: str, text: str) -> dict:
    body: dict = {"model": asked.model, "created_at": _timestamp(time.time())}
    if kind == "chat":
        body["message"] = {"role": "assistant", "content": text}
    else:
        body["response"] = text
    return body


def _final(
    server: ServerContext,
    asked: _Asked,
    result: TurnResult | None,
    kind: str,
    *,
    started: float | None = None,
    done_reason: str | None = None,
) -> dict:
    body = {**_piece(server, asked, kind, ""), "done": True}
    if result is None:
        body["done_reason"] = done_reason or "load"
        return body
    s = result.stats
    ttft = s.ttft_s or s.e2e_s
    total = time.monotonic() - started if started is not None else s.e2e_s
    body.update(
        done_reason="length" if s.finish_reason in ("length", "context") else "stop",
        total_duration=_ns(total),
        load_duration=0,
        prompt_eval_count=s.prompt_tokens,
        prompt_eval_duration=_ns(ttft),
        eval_count=s.generated_tokens,
        eval_duration=_ns(max(0.0, s.e2e_s - ttft)),
    )
    return body


def _listing(server: ServerContext) -> dict:
    model = server.model
    return {
        "name": model.id,
        "model": model.id,
        "modified_at": _timestamp(model.created),
        "size": model.size_bytes,
        "digest": hashlib.sha256(f"{model.id}:{model.size_bytes}".encode()).hexdigest(),
        "details": _details(server),
    }


def _details(server: ServerContext) -> dict:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama", "clip"] if server.model.takes_images else ["llama"],
        "parameter_size": "",
        "quantization_level": server.model.quantization,
    }


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _line(body: dict) -> str:
    return json.dumps(body) + "\n"
