"""What an OpenAI chat-completions request asks for, checked and turned into the engine's
messages and sampling. Everything here comes from a client: sizes are bounded, images are
decoded by the same hardened reader as dropped files, and nothing is fetched or opened."""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smolchat.api.errors import ApiError
from smolchat.engine import Message, SamplingParams
from smolchat.engine.images import ImageError, PreparedImage, prepare_image

MAX_MESSAGES = 1000
MAX_STOPS = 4  # as OpenAI allows
_DATA_URI = re.compile(r"^data:(image/[\w.+-]+)?(;[\w.+-]+=[\w.+-]+)*;base64,", re.IGNORECASE)


class _Lenient(BaseModel):
    # fields other clients send (logprobs, user, tools declared but unused...) are ignored
    model_config = ConfigDict(extra="ignore")


class ImageUrl(_Lenient):
    url: str
    detail: str | None = None


class ContentPart(_Lenient):
    type: str
    text: str | None = None
    image_url: ImageUrl | str | None = None


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)
    ignore_eos: bool = False  # llama-server's extension: generate max_tokens whatever the model says


def parse_request(body: object) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"{where}: {first['msg']}" if where else first["msg"], param=where or None) from None


def sampling(request: ChatCompletionRequest, *, n_ctx: int) -> SamplingParams:
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if len(stops) > MAX_STOPS or any(not s or len(s) > 256 for s in stops):
        raise ApiError(400, f"stop: up to {MAX_STOPS} sequences of 1 to 256 characters", param="stop")
    max_tokens = request.max_completion_tokens or request.max_tokens or SamplingParams().max_tokens
    defaults = SamplingParams()
    return SamplingParams(
        temperature=defaults.temperature if request.temperature is None else request.temperature,
        top_p=defaults.top_p if request.top_p is None else request.top_p,
        seed=request.seed,
        max_tokens=min(max_tokens, n_ctx),
        stop=tuple(stops),
        ignore_eos=request.ignore_eos,
    )


def conversation(request: ChatCompletionRequest, *, max_image_bytes: int) -> list[Message]:
    """The engine's messages; images decoded (which takes a moment: call off the event loop)."""
    messages = []
    for i, m in enumerate(request.messages):
        role = "system" if m.role == "developer" else m.role
        texts: list[str] = []
        images: list[PreparedImage] = []
        parts = [ContentPart(type="text", text=m.content)] if isinstance(m.content, str) else (m.content or [])
        for j, part in enumerate(parts):
            where = f"messages.{i}.content.{j}"
            if part.type == "text":
                texts.append(part.text or "")
            elif part.type == "image_url":
                if role != "user":
                    raise ApiError(400, f"{where}: only user messages can hold images", param=where)
                url = part.image_url.url if isinstance(part.image_url, ImageUrl) else part.image_url
                images.append(_image(url or "", where, max_image_bytes))
            else:
                raise ApiError(400, f"{where}: unknown content type {part.type!r}", param=where)
        text = "\n".join(texts)
        if role == "user":
            messages.append(Message.user(text, images=images))
        else:
            messages.append(Message(role, (text,)))
    if messages[-1].role != "user":
        raise ApiError(400, "messages: the last message must be the user's", param="messages")
    return messages


def _image(url: str, where: str, max_bytes: int) -> PreparedImage:
    match = _DATA_URI.match(url)
    if match is None:
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme in ("http", "https"):
            raise ApiError(
                400, f"{where}: images on the web are not fetched; send the image as a data URI", param=where
            )
        raise ApiError(400, f"{where}: an image must be a data URI (data:image/...;base64,...)", param=where)
    encoded = url[match.end() :]
    if len(encoded) > max_bytes * 4 // 3 + 4:
        raise ApiError(413, f"{where}: the image is larger than {max_bytes // 2**20} MB", param=where)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}: the image's base64 data is broken", param=where) from None
    return decode_image(data, where)


def decode_image(data: bytes, where: str) -> PreparedImage:
    """Bytes a client sent, read as dropped files are (every format check and size bound)."""
    fd, path = tempfile.mkstemp(prefix="smolchat-api-", suffix=".img")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return prepare_image(path)
    except ImageError as e:
        raise ApiError(400, f"{where}: {e.reason}", param=where) from None
    finally:
        os.unlink(path)
