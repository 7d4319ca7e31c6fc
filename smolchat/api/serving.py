"""What every route needs: the model served, the server's options, and the engine service."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from smolchat.api.errors import ApiError
from smolchat.api.images import ImagePolicy
from smolchat.service import EngineService

DEFAULT_MAX_BODY = 20 * 2**20  # a request, images included
DEFAULT_TIME_LIMIT_S = 600.0  # a request, waiting in the queue included


@dataclass
class ServedModel:
    """What the server says about its model, and whether it can answer yet."""

    id: str
    n_ctx: int
    created: int = field(default_factory=lambda: int(time.time()))
    takes_images: bool = True
    size_bytes: int = 0  # of the model's files, for Ollama's listings
    quantization: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None  # why it could not be loaded

    def answers_to(self, name: str) -> bool:
        """Whether a request for ``name`` is for this model (Ollama's clients add ":latest")."""
        return name in (self.id, f"{self.id}:latest")

    def unavailable(self) -> str | None:
        if self.failure:
            return f"The model could not be loaded: {self.failure}"
        return None if self.ready.is_set() else "The model is still loading; try again in a moment."


@dataclass(frozen=True)
class ServerOptions:
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    media_dir: Path | None = None
    allow_remote_images: bool = False
    cors_origins: tuple[str, ...] = ()
    time_limit_s: float | None = DEFAULT_TIME_LIMIT_S


@dataclass
class ServerContext:
    service: EngineService
    model: ServedModel
    options: ServerOptions

    @property
    def images(self) -> ImagePolicy:
        o = self.options
        return ImagePolicy(max_bytes=o.max_body_bytes, media_dir=o.media_dir, allow_remote=o.allow_remote_images)

    @property
    def time_limit_s(self) -> float | None:
        return self.options.time_limit_s

    def check_ready(self) -> None:
        why = self.model.unavailable()
        if why:
            raise ApiError(503, why)

    async def read_json(self, request: Request) -> object:
        """The request's JSON body, read no further than the size limit."""
        limit = self.options.max_body_bytes
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
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise ApiError(400, f"The request body is not valid JSON ({e}).") from None
