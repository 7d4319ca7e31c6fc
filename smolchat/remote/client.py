"""An OpenAI-compatible chat server as an engine: list its models, stream a turn.

The server is treated as hostile: every line it sends and the whole answer are bounded, its
JSON is checked for shape before use, and its error messages reach the user only after the
status has been turned into a sentence that says what to do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from smolchat.engine.prompt import Message
from smolchat.engine.types import SamplingParams, TextDelta, TurnEvent, TurnResult, TurnStats
from smolchat.errors import SmolChatError
from smolchat.remote.wire import wire_messages

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0  # between two pieces of the answer: a slow server reads a big image first
MAX_LINE_BYTES = 1 << 20  # one server-sent event
MAX_ANSWER_CHARS = 1 << 20
MAX_MODELS = 1000
MAX_ERROR_CHARS = 300
# What servers say when their model has no vision projector (llama-server, vLLM, Ollama, SmolChat)
_NO_VISION_HINTS = ("image input is not supported", "mmproj", "not a multimodal", "does not support image",
                    "cannot read images", "vision")  # fmt: skip


class RemoteError(SmolChatError):
    """The server could not be used; the message says why and what to do. ``per_file``: the
    server refused this request only (a picture it could not read), not every request."""

    def __init__(self, message: str, *, per_file: bool = False) -> None:
        super().__init__(message)
        self.per_file = per_file

    def __reduce__(self):
        return (_remote_error, (str(self), self.per_file))


def _remote_error(message: str, per_file: bool) -> RemoteError:
    return RemoteError(message, per_file=per_file)


@dataclass(frozen=True)
class RemoteModel:
    id: str
    takes_images: bool | None  # None: the server does not say
    n_ctx: int | None = None  # its context, where the server says (llama-server, vLLM, SmolChat)


@dataclass(frozen=True)
class ServerSpec:
    """A server to use, as a person gave it."""

    url: str
    api_key: str | None = None
    model: str | None = None  # None: the one it serves


def server_url(url: str) -> str:
    """The server's base address (no trailing ``/v1``), from what a person types: a bare
    ``host:port`` means http."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"{url!r} is not a server address; give one like http://127.0.0.1:8080.")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{parts.scheme}://{parts.netloc}{path}"


class RemoteServer:
    """One server; ``model`` None takes the one it serves (an error names them if it has several)."""

    def __init__(self, url: str, api_key: str | None = None, model: str | None = None) -> None:
        import httpx2 as httpx

        self.url = server_url(url)
        self._api_key = api_key
        self._model = model
        self._client = httpx.Client(
            base_url=self.url + "/v1",
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment must not see local traffic
        )

    def __enter__(self) -> RemoteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # -- models ----------------------------------------------------------------------------

    def models(self) -> list[RemoteModel]:
        """What the server serves (``GET /v1/models``)."""
        body = self._json(self._request("GET", "/models"))
        entries = body.get("data") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise RemoteError(f"{self.url} did not list its models as OpenAI's API does (GET /v1/models).")
        models = []
        for entry in entries[:MAX_MODELS]:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]:
                modalities = entry.get("input_modalities")
                takes = ("image" in modalities) if isinstance(modalities, list) else None
                meta = entry["meta"] if isinstance(entry.get("meta"), dict) else {}
                n_ctx = next(
                    (v for v in (entry.get("context_length"), entry.get("max_model_len"), meta.get("n_ctx"))
                     if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 24),
                    None,
                )  # fmt: skip
                models.append(RemoteModel(entry["id"][:200], takes, n_ctx))
        return models

    @property
    def model(self) -> str:
        """The model the turns ask for."""
        if self._model is None:
            served = self.models()
            if not served:
                raise RemoteError(f"{self.url} serves no model yet; load one there and try again.")
            if len(served) > 1:
                names = ", ".join(m.id for m in served[:20])
                raise RemoteError(f"{self.url} serves several models ({names}): choose one with --server-model.")
            self._model = served[0].id
        return self._model

    # -- turns -----------------------------------------------------------------------------

    def turn(
        self, messages: Sequence[Message], sampling: SamplingParams, *, cancel: threading.Event | None = None
    ) -> Iterator[TurnEvent]:
        """Answer the last of ``messages``: TextDelta events as the server streams, then one
        TurnResult. Its stats are the server's ``usage``; the split into image and text tokens
        is known only to the server, so image figures are 0."""
        return self.chat(wire_messages(messages), sampling, cancel=cancel)

    def chat(
        self, messages: list[dict], sampling: SamplingParams, *, cancel: threading.Event | None = None
    ) -> Iterator[TurnEvent]:
        """``turn`` for messages already in OpenAI's form."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)[:4]
        if sampling.answer_format is not None:
            schema = sampling.answer_format.schema
            body["response_format"] = (
                {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
                if schema is not None
                else {"type": "json_object"}
            )
        has_images = any(isinstance(p, dict) and p.get("type") == "image_url" for m in messages for p in _parts(m))
        return self._stream(body, has_images, cancel or threading.Event())

    def _stream(self, body: dict, has_images: bool, cancel: threading.Event) -> Iterator[TurnEvent]:
        import httpx2 as httpx

        started = time.perf_counter()
        first_at: float | None = None
        text: list[str] = []
        length = 0
        finish = "stop"
        usage: dict = {}
        timings: dict = {}
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._status_error(response, has_images)
                for data in _events(response.iter_bytes()):
                    if cancel.is_set():
                        finish = "cancelled"
                        break
                    if data == "[DONE]":
                        break
                    chunk = _loads(data, self.url)
                    if isinstance(chunk.get("error"), dict | str):  # an error after the stream started
                        # this answer only: llama-server says so when its parser rejects what the model wrote
                        said = _message(chunk) or "an error"
                        raise RemoteError(f"{self.url} stopped the answer: {said}", per_file=True)
                    if isinstance(chunk.get("usage"), dict):
                        usage = chunk["usage"]
                    if isinstance(chunk.get("timings"), dict):
                        timings = chunk["timings"]
                    choices = chunk.get("choices")
                    for choice in choices if isinstance(choices, list) else ():
                        if not isinstance(choice, dict):
                            continue
                        delta = choice.get("delta")
                        piece = delta.get("content") if isinstance(delta, dict) else None
                        if isinstance(piece, str) and piece:
                            if first_at is None:
                                first_at = time.perf_counter()
                            length += len(piece)
                            if length > MAX_ANSWER_CHARS:
                                raise RemoteError(f"{self.url} sent an answer longer than any asked for; stopped.")
                            text.append(piece)
                            yield TextDelta(piece)
                        if choice.get("finish_reason") in ("stop", "length"):
                            finish = choice["finish_reason"]
        except httpx.TimeoutException:
            raise RemoteError(
                f"{self.url} sent nothing for {READ_TIMEOUT_S:.0f} s; it may be overloaded or stuck."
            ) from None
        except httpx.HTTPError as e:
            raise self._connection_error(e) from None
        ended = time.perf_counter()
        yield TurnResult("".join(text), _stats(started, first_at, ended, usage, timings, finish))

    # -- HTTP ------------------------------------------------------------------------------

    def _request(self, method: str, path: str):
        import httpx2 as httpx

        try:
            response = self._client.request(method, path)
        except httpx.HTTPError as e:
            raise self._connection_error(e) from None
        if response.status_code != 200:
            raise self._status_error(response, False)
        return response

    def _json(self, response) -> Any:
        if len(response.content) > 16 * MAX_LINE_BYTES:
            raise RemoteError(f"{self.url} answered with more than 16 MB; not read.")
        return _loads(response.text, self.url)

    def _connection_error(self, error: Exception) -> RemoteError:
        import httpx2 as httpx

        if isinstance(error, httpx.ConnectError):
            return RemoteError(
                f"Cannot reach {self.url}: nothing answers there ({_reason(error)}). "
                "Check the address and port, and that the server is running."
            )
        if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError):
            return RemoteError(f"{self.url} closed the connection ({_reason(error)}). It may have stopped; try again.")
        return RemoteError(f"Talking to {self.url} failed: {_reason(error)}.")

    def _status_error(self, response, has_images: bool) -> RemoteError:
        status = response.status_code
        said = _said(response)
        also = f" The server said: {said}" if said else ""
        if status in (401, 403):
            if self._api_key:
                return RemoteError(f"{self.url} refused the API key (HTTP {status}). Check the key.{also}")
            return RemoteError(f"{self.url} needs an API key (HTTP {status}): give it with --api-key.{also}")
        lowered = said.lower()
        if has_images and any(hint in lowered for hint in _NO_VISION_HINTS):
            return RemoteError(
                f"The model at {self.url} cannot read images: it runs without its vision projector "
                f"(llama-server needs --mmproj).{also}"
            )
        if status == 503 or "loading model" in lowered:
            return RemoteError(f"{self.url} is still loading its model (HTTP {status}); try again in a moment.")
        if status == 404:
            if "model" in lowered:
                return RemoteError(f"{self.url} has no model named {self._model!r}.{also}")
            return RemoteError(
                f"{self.url} does not answer OpenAI's chat API (HTTP 404 for {response.request.url.path}). "
                "Give the server's base address, e.g. http://127.0.0.1:8080."
            )
        if status == 413:
            return RemoteError(
                f"{self.url} found the request too large (HTTP 413): send fewer or smaller images.", per_file=True
            )
        return RemoteError(f"{self.url} answered HTTP {status}.{also}", per_file=status in (400, 422))


def _parts(message: dict) -> list:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _events(chunks: Iterator[bytes]) -> Iterator[str]:
    """The data of each server-sent event, each line bounded."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                yield line[5:].strip().decode("utf-8", errors="replace")
        if len(pending) > MAX_LINE_BYTES:
            raise RemoteError("The server sent a line longer than 1 MB; stopped.")
    if pending.startswith(b"data:"):
        yield pending[5:].strip().decode("utf-8", errors="replace")


def _loads(text: str, url: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        raise RemoteError(f"{url} did not answer in JSON; is it an OpenAI-compatible server?") from None
    if not isinstance(value, dict):
        raise RemoteError(f"{url} did not answer with a JSON object.")
    return value


def _said(response) -> str:
    """The message in an error body (OpenAI's {"error": {"message"}}, or plain text), bounded."""
    try:
        body = json.loads(response.content[:MAX_LINE_BYTES])
    except ValueError:
        body = None
    said = _message(body) if isinstance(body, dict) else response.content[:MAX_ERROR_CHARS].decode(errors="replace")
    said = " ".join(str(said).split())
    return said[:MAX_ERROR_CHARS] + ("…" if len(said) > MAX_ERROR_CHARS else "")


def _message(body: dict) -> str:
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    if isinstance(body.get("detail"), str):
        return body["detail"]
    return ""


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text[:MAX_ERROR_CHARS]


def _number(mapping: dict, key: str) -> int:
    value = mapping.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _stats(started: float, first_at: float | None, ended: float, usage: dict, timings: dict, finish: str) -> TurnStats:
    prompt = _number(usage, "prompt_tokens")
    details = usage.get("prompt_tokens_details")
    cached = _number(details, "cached_tokens") if isinstance(details, dict) else _number(timings, "cache_n")
    generated = _number(usage, "completion_tokens")
    tpot = (ended - first_at) / (generated - 1) if first_at is not None and generated > 1 else None
    return TurnStats(
        ttft_s=None if first_at is None else first_at - started,
        tpot_s=tpot,
        e2e_s=ended - started,
        decode_tok_s=1 / tpot if tpot else None,
        prompt_tokens=prompt,
        image_tokens=0,
        reused_tokens=min(cached, prompt),
        evaluated_tokens=max(prompt - cached, 0),
        generated_tokens=generated,
        image_tiles_encoded=0,
        encode_s=0.0,
        finish_reason=finish,
    )
