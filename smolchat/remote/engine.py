"""A server's model where the service expects an Engine: turns go to the server, counts are
estimates (the server's tokenizer and projector are not here), reading ahead does nothing
(the server reads the pictures when the question comes)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from smolchat.budget.context import PredictedCounter, estimated_tokens
from smolchat.budget.detail import Detail
from smolchat.budget.images import ImageCost, image_cost, typical_projector
from smolchat.engine.chat_template import ChatTemplate
from smolchat.engine.gguf_info import TextModelInfo
from smolchat.engine.prompt import SMOLVLM_CHAT_TEMPLATE, Message
from smolchat.engine.speed import Speed
from smolchat.engine.types import EngineSettings, ModelInfo, PrefillResult, PromptCount, SamplingParams, TurnEvent
from smolchat.remote.client import RemoteError, RemoteServer, ServerSpec

DEFAULT_N_CTX = 8192  # a server that does not say its context: SmolVLM's trained length


class RemoteEngine:
    def __init__(self, server: RemoteServer, model: str, n_ctx: int) -> None:
        self.server = server
        self.model = model
        self.settings = EngineSettings(n_ctx=n_ctx)
        self.projector_info = typical_projector(model)
        self.template = ChatTemplate(SMOLVLM_CHAT_TEMPLATE)
        self.speed = Speed()
        projector = self.projector_info

        def cost(width: int, height: int, one_tile: bool = False) -> ImageCost:
            return image_cost(width, height, projector, Detail.FULL, one_tile=one_tile)

        self._counter = PredictedCounter(self.template.render, estimated_tokens, cost)

    @classmethod
    def connect(cls, spec: ServerSpec) -> RemoteEngine:
        """The server's model, once it has answered: the one asked for, or the one it serves."""
        server = RemoteServer(spec.url, api_key=spec.api_key, model=spec.model)
        try:
            served = server.models()
            chosen = next((m for m in served if m.id == spec.model), None) if spec.model else None
            if spec.model and chosen is None:
                names = ", ".join(m.id for m in served[:20]) or "none"
                raise RemoteError(f"{server.url} has no model named {spec.model!r} (it has: {names}).")
            if chosen is None:
                if len(served) != 1:
                    names = ", ".join(m.id for m in served[:20])
                    raise RemoteError(
                        f"{server.url} serves {'several models (' + names + ')' if served else 'no model yet'}: "
                        "choose one."
                    )
                chosen = served[0]
            if chosen.takes_images is False:
                raise RemoteError(f"{chosen.id} at {server.url} takes no images; choose a vision model.")
        except BaseException:
            server.close()
            raise
        return cls(server, chosen.id, chosen.n_ctx or DEFAULT_N_CTX)

    def run_turn(
        self, messages: Sequence[Message], sampling: SamplingParams, *, cancel: threading.Event | None = None
    ) -> Iterator[TurnEvent]:
        return self.server.turn(messages, sampling, cancel=cancel)

    def prefill(self, messages: Sequence[Message], *, cancel: threading.Event | None = None) -> PrefillResult:
        return PrefillResult(0, 0, 0, 0, 0.0, 0.0, cancelled=False)

    def count_prompt(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> PromptCount:
        return self._counter.count_prompt(messages, add_generation_prompt=add_generation_prompt)

    def info(self) -> ModelInfo:
        text = TextModelInfo(
            path=Path(self.model),
            size_bytes=0,
            architecture="remote",
            name=self.model,
            n_embd=0,
            n_layer=0,
            n_head=1,
            n_head_kv=1,
            n_ctx_train=self.settings.n_ctx,
            n_vocab=0,
            chat_template=None,
            file_type=None,
        )
        return ModelInfo(
            text, self.projector_info, None, self.settings, self.template, None, self.speed, server=self.server.url
        )

    def close(self) -> None:
        self.server.close()
