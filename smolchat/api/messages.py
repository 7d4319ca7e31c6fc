"""What an OpenAI chat-completions request asks for, checked and turned into the engine's
messages and sampling. Everything here comes from a client: sizes are bounded, and images
are read under the server's policy (``images``) by the same hardened reader as dropped files."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smolchat.api.errors import ApiError
from smolchat.api.images import ImagePolicy, image_from_url
from smolchat.engine import Message, SamplingParams
from smolchat.engine.images import PreparedImage
from smolchat.engine.structured import AnswerFormatError, JsonFormat, json_object, json_schema

MAX_MESSAGES = 1000
MAX_STOPS = 4  # as OpenAI allows


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


class JsonSchemaFormat(_Lenient):
    name: str | None = None
    # "schema" is a BaseModel attribute: the field is read under another name
    json_schema_: dict | None = Field(default=None, alias="schema")
    strict: bool | None = None  # the schema is always followed strictly here


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


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
    response_format: ResponseFormat | None = None


def parse_request(body: object) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"{where}: {first['msg']}" if where else first["msg"], param=where or None) from None


def stop_sequences(given: str | list[str] | None, param: str) -> tuple[str, ...]:
    """A client's stop sequences, bounded in number and length (OpenAI's and Ollama's alike)."""
    stops = [given] if isinstance(given, str) else list(given or [])
    if len(stops) > MAX_STOPS or any(not s or len(s) > 256 for s in stops):
        raise ApiError(400, f"{param}: up to {MAX_STOPS} sequences of 1 to 256 characters", param=param)
    return tuple(stops)


def answer_format(request: ChatCompletionRequest) -> JsonFormat | None:
    """The format the answer must follow, if any; 400 when it cannot be followed."""
    asked = request.response_format
    if asked is None or asked.type == "text":
        return None
    try:
        if asked.type == "json_object":
            return json_object()
        if asked.json_schema is None or asked.json_schema.json_schema_ is None:
            raise AnswerFormatError("A json_schema response format needs json_schema.schema.")
        return json_schema(asked.json_schema.json_schema_)
    except AnswerFormatError as e:
        raise ApiError(400, f"response_format: {e}", param="response_format") from None


def sampling(request: ChatCompletionRequest, *, n_ctx: int, answer_format: JsonFormat | None = None) -> SamplingParams:
    stops = stop_sequences(request.stop, "stop")
    if answer_format is not None and request.ignore_eos:
        raise ApiError(400, "ignore_eos cannot be combined with response_format", param="ignore_eos")
    max_tokens = request.max_completion_tokens or request.max_tokens or SamplingParams().max_tokens
    defaults = SamplingParams()
    return SamplingParams(
        temperature=defaults.temperature if request.temperature is None else request.temperature,
        top_p=defaults.top_p if request.top_p is None else request.top_p,
        seed=request.seed,
        max_tokens=min(max_tokens, n_ctx),
        stop=stops,
        ignore_eos=request.ignore_eos,
        answer_format=answer_format,
    )


def conversation(request: ChatCompletionRequest, policy: ImagePolicy) -> list[Message]:
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
                images.append(image_from_url(url or "", where, policy))
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
