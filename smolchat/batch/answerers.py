"""What answers a batch job's pictures: the model this process loaded, or a server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from smolchat.engine.images import DEFAULT_MAX_SIDE, PreparedImage, prepare_image
from smolchat.engine.prompt import Message
from smolchat.engine.types import ModelInfo, SamplingParams, TextDelta, TurnEvent
from smolchat.errors import SmolChatError
from smolchat.remote import RemoteServer
from smolchat.remote.wire import image_data_uri, image_part, text_part
from smolchat.service import Delta, EngineService, Failed, TurnFinished, TurnRequest, next_request_id


class PictureError(SmolChatError):
    """This picture's answer failed (too large for the context, say); the next may not."""

    per_file = True


class LocalAnswerer:
    """The engine service's loaded model: pictures decoded here at the size the engine reads
    them, so its thread only encodes and generates."""

    def __init__(self, service: EngineService, info: ModelInfo) -> None:
        if info.projector_info is None:
            raise SmolChatError("This model was loaded without a vision projector (mmproj), so it cannot read images.")
        self._service = service
        self._max_side = info.projector_info.preproc_image_size or DEFAULT_MAX_SIDE

    def read(self, path: Path) -> object:
        return prepare_image(path, max_side=self._max_side)

    def answer(
        self, picture: object, prompt: str, system: str | None, sampling: SamplingParams, cancel: threading.Event
    ) -> Iterator[TurnEvent]:
        assert isinstance(picture, PreparedImage)
        messages = (*((Message.system(system),) if system else ()), Message("user", (picture, prompt)))
        stream = self._service.stream(TurnRequest(messages, sampling, cancel, next_request_id()))
        for event in stream:
            if isinstance(event, Delta):
                yield TextDelta(event.text)
            elif isinstance(event, TurnFinished):
                yield event.result
            elif isinstance(event, Failed):
                raise (PictureError if event.refused else SmolChatError)(event.message)
            elif event.final:  # cancelled before it ran
                return


class RemoteAnswerer:
    """A server: pictures encoded here as the data URIs of the request."""

    def __init__(self, server: RemoteServer) -> None:
        self._server = server

    def read(self, path: Path) -> object:
        return image_data_uri(path)

    def answer(
        self, picture: object, prompt: str, system: str | None, sampling: SamplingParams, cancel: threading.Event
    ) -> Iterator[TurnEvent]:
        assert isinstance(picture, str)
        messages: list[dict] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": [image_part(picture), text_part(prompt)]})
        return self._server.chat(messages, sampling, cancel=cancel)
