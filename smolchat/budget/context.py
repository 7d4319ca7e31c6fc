"""The context budget of a conversation: what the system prompt, every earlier turn, every
image, the new message and the reply will take, before anything is sent.

Counts are exact: the conversation is laid out by the engine the way it will be evaluated
(chat template, tokenizer, libmtmd's image layout) without any pixel work. When the next turn
does not fit, the oldest turns leave the context first, two messages at a time; the system
prompt and the new message never do, and nothing leaves the visible history. Nothing is
dropped without being said: the budget names what it left out and what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from smolchat.budget.images import ImageCost, prepared_size
from smolchat.engine import Message, PromptCount
from smolchat.engine.images import PreparedImage
from smolchat.engine.prompt import ImageRef


class Counter(Protocol):
    """What the budget needs from a loaded model (``smolchat.engine.Engine`` is one)."""

    def count_prompt(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> PromptCount: ...


class PredictedCounter:
    """Counts as ``Engine.count_prompt`` does, without the engine's vision context: the chat
    template's text tokenized with the model's vocabulary, images by their predicted cost from
    the size in their file's header. It can run in the window's thread while the engine's
    thread reads an image."""

    def __init__(
        self,
        render: Callable[..., list],
        count_text: Callable[[str, bool], int],
        image_cost: Callable[..., ImageCost],  # (width, height, one_tile=False)
        expand: Callable[[list[Message]], list[Message]] | None = None,  # clips and PDFs into frames and pages
    ) -> None:
        self._render, self._count_text, self._image_cost = render, count_text, image_cost
        self._expand = expand

    @staticmethod
    def _placeholder(image: ImageRef) -> PreparedImage:
        if isinstance(image, PreparedImage):
            return image
        width, height = prepared_size(image)
        return PreparedImage(width, height, b"", f"size-only:{image}")

    def count_prompt(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> PromptCount:
        if self._expand is not None:
            messages = self._expand(list(messages))
        sized = [
            Message(m.role, tuple(p if isinstance(p, str) else self._placeholder(p) for p in m.content))
            for m in messages
        ]
        positions = image_tokens = tiles = 0
        for i, segment in enumerate(self._render(sized, add_generation_prompt=add_generation_prompt)):
            if isinstance(segment, str):
                positions += self._count_text(segment, i == 0)  # libmtmd adds BOS to the first text only
            else:
                size = (segment.width, segment.height)
                cost = self._image_cost(*size, one_tile=True) if segment.one_tile else self._image_cost(*size)
                positions += cost.tokens
                image_tokens += cost.embedding_tokens
                tiles += cost.tiles
        return PromptCount(positions, image_tokens, tiles)


@dataclass(frozen=True)
class BudgetItem:
    kind: str  # "system", "turn", "message" or "reply"
    label: str
    tokens: int
    image_tokens: int = 0  # of which images (markers included)
    images: int = 0
    n_messages: int = 1  # a turn is the user's message and the answer to it
    dropped: bool = False  # left out of what the model sees (still in the history)


@dataclass(frozen=True)
class ContextBudget:
    n_ctx: int
    items: tuple[BudgetItem, ...]
    used: int  # tokens of what will be sent, counted as sent, with the reply's room

    @property
    def needed(self) -> int:
        """Tokens the whole conversation, new message and reply would take."""
        return sum(i.tokens for i in self.items)

    @property
    def fits(self) -> bool:
        return self.used <= self.n_ctx

    @property
    def dropped(self) -> list[BudgetItem]:
        return [i for i in self.items if i.dropped]

    @property
    def kept_from(self) -> int:
        """Index of the first earlier message still sent (after the system prompt)."""
        return sum(i.n_messages for i in self.dropped)

    def share(self, kind: str) -> int:
        return sum(i.tokens for i in self.items if i.kind == kind and not i.dropped)

    def message(self, largest_n_ctx: int | None = None) -> str | None:
        """What the user should know before sending: None when all of it fits as it is.
        ``largest_n_ctx``: the largest context the free memory allows, to suggest it."""
        raise_it = "raise the context size"
        if largest_n_ctx is not None and largest_n_ctx > self.n_ctx:
            raise_it += f" (up to {largest_n_ctx:,} tokens fit in the memory that is free)"
        elif largest_n_ctx is not None:
            raise_it = "start a new conversation (a larger context does not fit here)"
        if not self.fits:
            return (
                f"This message does not fit: it needs {self.used:,} tokens with the reply's room, and the "
                f"context holds {self.n_ctx:,} even with every earlier turn left out. Lower the image "
                "detail, send fewer or smaller images, shorten the message or the reply length, or "
                f"{raise_it}."
            )
        if self.dropped:
            tokens = sum(i.tokens for i in self.dropped)
            turns = len(self.dropped)
            return (
                f"The conversation is longer than the {self.n_ctx:,}-token context: the {turns} oldest "
                f"turn{'s' if turns > 1 else ''} ({tokens:,} tokens) will be left out of what the model "
                f"sees; they stay in the history. To keep them, {raise_it} or lower the image detail."
            )
        return None

    def as_dict(self) -> dict:
        return {
            "n_ctx": self.n_ctx,
            "needed": self.needed,
            "used": self.used,
            "fits": self.fits,
            "dropped_turns": len(self.dropped),
            "message": self.message(),
            "items": [vars(i) for i in self.items],
        }


def plan_context(
    counter: Counter,
    history: Sequence[Message],
    new: Message,
    *,
    n_ctx: int,
    reply_tokens: int,
    image_tokens: dict[int, int] | None = None,
) -> ContextBudget:
    """The budget of sending ``new`` after ``history`` (which may start with a system prompt),
    with ``reply_tokens`` kept free for the answer. ``image_tokens`` (message index -> tokens
    of its images, from ``budget.images``) splits each item's count into text and images."""
    messages = [*history, new]
    image_tokens = image_tokens or {}
    # Cumulative counts of every prefix: item k costs what message k adds to the prompt.
    ends = [0] + [
        counter.count_prompt(messages[: k + 1], add_generation_prompt=(k == len(messages) - 1)).positions
        for k in range(len(messages))
    ]
    items: list[BudgetItem] = []
    k = 0
    while k < len(messages):
        m = messages[k]
        if k == len(messages) - 1:
            kind, span, label = "message", 1, "This message"
        elif m.role == "system":
            kind, span, label = "system", 1, "System prompt"
        else:
            span = 2 if k + 1 < len(messages) - 1 and messages[k + 1].role == "assistant" else 1
            kind, label = "turn", f"Turn {sum(1 for i in items if i.kind == 'turn') + 1}"
        tokens = ends[k + span] - ends[k]
        images = sum(len(messages[j].images) for j in range(k, k + span))
        picture_tokens = sum(image_tokens.get(j, 0) for j in range(k, k + span))
        items.append(BudgetItem(kind, label, tokens, picture_tokens, images, span))
        k += span
    items.append(BudgetItem("reply", f"Reply (up to {reply_tokens:,} tokens)", reply_tokens))

    # Over the limit: the oldest turns leave first. What is left is counted again as it will
    # be sent (a template may render the first kept turn differently).
    turns = [i for i, item in enumerate(items) if item.kind == "turn"]
    used = ends[-1] + reply_tokens
    dropped = 0
    while used > n_ctx and dropped < len(turns):
        dropped += 1
        kept_from = sum(items[i].n_messages for i in turns[:dropped])
        used = counter.count_prompt(_kept(history, new, kept_from), add_generation_prompt=True).positions + reply_tokens
    return ContextBudget(n_ctx, tuple(_drop(items, turns[:dropped])), used)


def _drop(items: list[BudgetItem], indices: list[int]) -> list[BudgetItem]:
    return [replace(item, dropped=True) if i in indices else item for i, item in enumerate(items)]


def messages_to_send(history: Sequence[Message], new: Message, budget: ContextBudget) -> list[Message]:
    """The messages the model gets under ``budget``: the system prompt, the turns kept, ``new``."""
    return _kept(history, new, budget.kept_from)


def _kept(history: Sequence[Message], new: Message, kept_from: int) -> list[Message]:
    system = [m for m in history[:1] if m.role == "system"]
    return [*system, *history[len(system) + kept_from :], new]


# Without a model's vocabulary (a server's model), text is estimated at this many characters
# a token: about right for English with SmolVLM's tokenizer.
CHARS_PER_TOKEN = 4


def estimated_tokens(text: str, add_bos: bool = False) -> int:
    """About how many tokens ``text`` takes in a vocabulary not at hand."""
    return -(-len(text) // CHARS_PER_TOKEN) + int(add_bos)
