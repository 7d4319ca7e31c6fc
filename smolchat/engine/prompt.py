"""Conversations as the engine takes them: Messages whose content is text and images.

Rendering a conversation with the model's chat template (``chat_template.ChatTemplate``)
gives the prompt as a list of segments: text (to tokenize) and images (for libmtmd), in order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from smolchat.engine.types import RequestError

if TYPE_CHECKING:  # decoding pictures needs numpy and Pillow: messages alone do not
    from smolchat.engine.images import PreparedImage

# An image in a message: decoded pixels, or the path of an image file. (A plain str in a
# message's content is always text.)
ImageRef: TypeAlias = "PreparedImage | os.PathLike"
Segment: TypeAlias = "str | PreparedImage"

ROLES = ("system", "user", "assistant")

# SmolVLM's own template (from its tokenizer_config.json). Content must be a list of parts;
# an image part renders as "<image>".
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Used only for a text model that carries no template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# What an image part renders as in the templates of the SmolVLM family
TEMPLATE_IMAGE_TOKEN = "<image>"
# What SmolVLM2 puts around each video frame: the markers libmtmd puts around a picture's
# overview, without the blank line before it.
FRAME_OPEN = "<fake_token_around_image><global-img>"
FRAME_CLOSE = "<fake_token_around_image>"


class PromptError(RequestError):
    """The conversation cannot be turned into a prompt for this model."""


@dataclass(frozen=True)
class Message:
    role: str
    content: tuple[str | ImageRef, ...]

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")

    @classmethod
    def user(cls, text: str = "", images: Sequence[ImageRef | str] = ()) -> Message:
        """A user message; images (paths or PreparedImage) come before the text, as SmolVLM
        was trained."""
        refs = tuple(Path(i) if isinstance(i, str) else i for i in images)
        return cls("user", (*refs, *((text,) if text or not refs else ())))

    @classmethod
    def assistant(cls, text: str) -> Message:
        return cls("assistant", (text,))

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", (text,))

    @property
    def text(self) -> str:
        return "".join(part for part in self.content if isinstance(part, str))

    @property
    def images(self) -> list[ImageRef]:
        return [part for part in self.content if not isinstance(part, str)]
