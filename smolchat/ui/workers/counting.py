"""The thread that counts: the context budget of a conversation and the cost of attached
images, for the meter and for Send, while the engine's thread reads images or writes answers.

It holds a tokenizer of its own (the model's vocabulary, loaded apart from the engine) and the
model's chat template, whose renders are bounded in time and size; the UI thread does neither.
Requests carry an id and results come back with it, so the window keeps only the newest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from smolchat.budget.context import ContextBudget, PredictedCounter, estimated_tokens, plan_context
from smolchat.budget.detail import Detail
from smolchat.budget.images import SMOLVLM_MARKERS, ImageCost, ImageMarkers, MediaCost, image_cost, prepared_size
from smolchat.engine import Message, ModelInfo
from smolchat.engine.images import PreparedImage
from smolchat.errors import SmolChatError
from smolchat.media.attach import media_kind, planned_messages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanRequest:
    id: int
    history: tuple[Message, ...]
    new: Message
    n_ctx: int
    reply_tokens: int
    skippable: bool = True  # a meter update a newer one makes pointless; Send's plan is not


@dataclass(frozen=True)
class CostRequest:
    id: int
    images: tuple[Path, ...]


class CountWorker(QObject):
    planned = Signal(int, object)  # request id, ContextBudget or the message of what went wrong
    costed = Signal(int, object)  # request id, {path: ImageCost or a message}

    _use = Signal(object, object)  # ModelInfo or None, Detail
    _plan = Signal(object)
    _cost = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self._tokenizer = None
        self._counter: PredictedCounter | None = None
        self._image_cost = None
        self._planned = None
        self._newest_plan = 0  # written by the UI thread: older meter requests are skipped
        self._thread = QThread()
        self._thread.setObjectName("counting")
        self.moveToThread(self._thread)
        self._use.connect(self._do_use)
        self._plan.connect(self._do_plan)
        self._cost.connect(self._do_cost)
        self._thread.start()

    # -- from the UI thread ----------------------------------------------------------------

    def use_model(self, info: ModelInfo | None, detail: Detail) -> None:
        """Count for this model from now on (None: no model)."""
        self._use.emit(info, detail)

    def plan(self, request: PlanRequest) -> None:
        self._newest_plan = request.id
        self._plan.emit(request)

    def cost(self, request: CostRequest) -> None:
        self._cost.emit(request)

    def stop(self) -> None:
        self._use.emit(None, Detail.FULL)
        self._thread.quit()
        self._thread.wait()

    # -- in the counting thread ------------------------------------------------------------

    @Slot(object, object)
    def _do_use(self, info: ModelInfo | None, detail: Detail) -> None:
        from smolchat.engine.tokenizer import Tokenizer

        if self._tokenizer is not None:
            self._tokenizer.close()
        self._tokenizer = self._counter = self._image_cost = None
        if info is None:
            return
        if info.server is not None:  # a server's model: its vocabulary is not here
            count, markers = estimated_tokens, SMOLVLM_MARKERS
        else:
            try:
                self._tokenizer = Tokenizer(info.text_info.path)
            except SmolChatError as e:  # the engine loaded it, so this is rare: say so at the next count
                log.warning("counting tokens without the model's vocabulary: %s", e)
                return
            count = self._tokenizer.count
            markers = ImageMarkers.from_tokenizer(count)
        projector = info.projector_info

        def cost(width: int, height: int, one_tile: bool = False) -> ImageCost:
            return image_cost(width, height, projector, detail, markers, one_tile=one_tile)

        self._image_cost = cost if projector is not None else None
        fps, most = info.settings.video_fps, info.settings.video_max_frames
        self._planned = lambda messages: planned_messages(messages, projector, fps=fps, max_frames=most)
        self._counter = PredictedCounter(info.template.render, count, cost, self._planned)

    @Slot(object)
    def _do_plan(self, request: PlanRequest) -> None:
        if request.skippable and request.id < self._newest_plan:
            return
        if self._counter is None:
            self.planned.emit(
                request.id,
                "The model's vocabulary could not be read, so the context cannot be counted; load the model again.",
            )
            return
        try:
            image_tokens = {}
            if self._image_cost is not None and request.new.images:  # the new message's share, for the meter
                image_tokens[len(request.history)] = sum(self._attachment_cost(p).tokens for p in request.new.images)
            budget: ContextBudget | str = plan_context(
                self._counter,
                list(request.history),
                request.new,
                n_ctx=request.n_ctx,
                reply_tokens=request.reply_tokens,
                image_tokens=image_tokens,
            )
        except SmolChatError as e:
            budget = str(e)
        except Exception as e:  # a bug must not leave the meter or Send waiting forever
            log.exception("counting the context failed")
            budget = f"The context could not be counted ({type(e).__name__}: {e})."
        self.planned.emit(request.id, budget)

    def _attachment_cost(self, path: Path) -> ImageCost | MediaCost:
        """A picture's cost; a clip's or a PDF's, all its frames or pages together."""
        assert self._image_cost is not None
        if media_kind(path) is None:
            return self._image_cost(*prepared_size(path))
        (message,) = self._planned([Message.user("", images=[path])])
        parts = [p for p in message.content if isinstance(p, PreparedImage)]
        costs = [self._image_cost(p.width, p.height, one_tile=p.one_tile) for p in parts]
        frames = sum(1 for p in parts if p.one_tile)
        return MediaCost(frames, len(parts) - frames, sum(c.tiles for c in costs), sum(c.tokens for c in costs))

    @Slot(object)
    def _do_cost(self, request: CostRequest) -> None:
        costs: dict[Path, ImageCost | str] = {}
        for path in request.images:
            if self._image_cost is None:
                costs[path] = "This model cannot read images."
                continue
            try:
                costs[path] = self._attachment_cost(path)
            except SmolChatError as e:
                costs[path] = str(e)
            except Exception as e:
                log.exception("the cost of %s could not be counted", path)
                costs[path] = f"{path.name}: its cost could not be counted ({type(e).__name__})."
        self.costed.emit(request.id, costs)
