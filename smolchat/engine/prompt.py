"""Conversations and how they become a prompt: the model's own chat template, rendered.

A conversation is a list of Messages; a message's content is a sequence of text strings
and images. Rendering gives the prompt as a list of segments: text (to tokenize) and
images (for libmtmd), in order.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from smolchat.engine.images import PreparedImage
from smolchat.errors import SmolChatError

log = logging.getLogger(__name__)

# An image in a message: decoded pixels, or the path of an image file. (A plain str in a
# message's content is always text.)
ImageRef = Union[PreparedImage, os.PathLike]
Segment = Union[str, PreparedImage]

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


class PromptError(SmolChatError):
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


class ChatTemplate:
    """A model's chat template, rendered into text and image segments."""

    def __init__(self, template: str, *, bos_token: str = "", eos_token: str = "") -> None:
        self._with_generation = Jinja2ChatFormatter(template, eos_token, bos_token, True)
        self._without_generation = Jinja2ChatFormatter(template, eos_token, bos_token, False)
        self.content_as_parts = self._takes_content_parts()

    def _takes_content_parts(self) -> bool:
        """SmolVLM's template reads content as a list of parts; plain chat templates want a string."""
        probe = "\u2063probe\u2063"
        try:
            rendered = self._render([{"role": "user", "content": [{"type": "text", "text": probe}]}], True)
            return probe in rendered
        except Exception:
            return False

    def _render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        formatter = self._with_generation if add_generation_prompt else self._without_generation
        return formatter(messages=messages).prompt

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> list[Segment]:
        """Render ``messages``, whose images must already be decoded (PreparedImage)."""
        if not self.content_as_parts:
            if any(m.images for m in messages):
                raise PromptError(
                    "This model's chat template has no place for images: it is a text-only "
                    "model. Remove the images or choose a vision model."
                )
            plain = [{"role": m.role, "content": m.text} for m in messages]
            return [self._safe_render(plain, add_generation_prompt)]

        structured, ordered, from_text = _template_messages(messages, {"type": "image"})
        text = self._safe_render(structured, add_generation_prompt)
        if not ordered:
            return [text]
        pieces = text.split(TEMPLATE_IMAGE_TOKEN)
        if len(pieces) - 1 == len(from_text):
            return _interleave(pieces, from_text, ordered)
        # The template draws images some other way: mark each image with a sentinel text part
        # and split there.
        log.debug("chat template does not render images as %s; using sentinels", TEMPLATE_IMAGE_TOKEN)
        sentinel = "\u2063img\u2063"
        structured, ordered, _ = _template_messages(messages, {"type": "text", "text": sentinel})
        pieces = self._safe_render(structured, add_generation_prompt).split(sentinel)
        if len(pieces) - 1 != len(ordered):
            raise PromptError("This model's chat template drops images; it cannot be used for image chat.")
        return _interleave(pieces, [False] * len(ordered), ordered)

    def _safe_render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        try:
            return self._render(messages, add_generation_prompt)
        except Exception as e:
            raise PromptError(f"The model's chat template failed on this conversation: {e}") from e


def _template_messages(
    messages: Sequence[Message], image_part: dict
) -> tuple[list[dict], list[PreparedImage], list[bool]]:
    """Messages as chat templates take them (content as a list of parts), with every image
    drawn as ``image_part``; also the images in order, and for each "<image>" the rendered
    text will hold: whether it comes from user text rather than from an image."""
    structured, ordered, from_text = [], [], []
    for m in messages:
        parts = []
        for part in m.content:
            if isinstance(part, str):
                parts.append({"type": "text", "text": part})
                from_text.extend([True] * part.count(TEMPLATE_IMAGE_TOKEN))
            else:
                parts.append(image_part)
                ordered.append(_decoded(part))
                from_text.append(False)
        structured.append({"role": m.role, "content": parts or [{"type": "text", "text": ""}]})
    return structured, ordered, from_text


def _interleave(pieces: list[str], from_text: list[bool], images: list[PreparedImage]) -> list[Segment]:
    """Rejoin text pieces split at every image token; those from user text stay text."""
    segments: list[Segment] = []
    text = pieces[0]
    image_iter = iter(images)
    for piece, is_text in zip(pieces[1:], from_text):
        if is_text:
            text += TEMPLATE_IMAGE_TOKEN + piece
            continue
        if text:
            segments.append(text)
        segments.append(next(image_iter))
        text = piece
    if text:
        segments.append(text)
    return segments


def _decoded(part: object) -> PreparedImage:
    if not isinstance(part, PreparedImage):
        raise TypeError("images must be decoded (PreparedImage) before rendering")
    return part
