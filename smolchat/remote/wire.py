"""Messages as OpenAI's chat API carries them: content as parts, images as data URIs.

Parts even for text alone: llama-server's SmolVLM template reads the content as a list of
parts, and every other server takes that form too. Images are sent as the local engine would
read them (upright, at most 2048 px a side): a JPEG or PNG that is already so goes as its
own bytes; anything else (turned, too large, another format, a page or a frame) is encoded
once as a JPEG at quality 95.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from pathlib import Path

from smolchat.engine.images import DEFAULT_MAX_SIDE, PreparedImage, open_image, prepare_image
from smolchat.engine.prompt import Message

JPEG_QUALITY = 95
_AS_THEY_ARE = {"JPEG": "image/jpeg", "PNG": "image/png"}


def image_data_uri(image: str | os.PathLike[str] | PreparedImage, max_side: int = DEFAULT_MAX_SIDE) -> str:
    """A data URI of the image as the model should see it. Reading a file may raise the
    ImageError the window and the CLI show for a file that is not a usable image."""
    if isinstance(image, PreparedImage):
        return _encoded(image)
    path = Path(image)
    with open_image(path, max_side) as opened:
        mime = _AS_THEY_ARE.get(opened.image.format or "")
        as_it_is = mime is not None and opened.orientation == 1 and opened.size == opened.image.size
    if as_it_is:
        return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
    return _encoded(prepare_image(path, max_side=max_side))


def _encoded(image: PreparedImage) -> str:
    from PIL import Image

    pixels = Image.frombytes("RGB", (image.width, image.height), image.rgb)
    out = io.BytesIO()
    pixels.save(out, format="JPEG", quality=JPEG_QUALITY)
    return f"data:image/jpeg;base64,{base64.b64encode(out.getvalue()).decode('ascii')}"


def wire_messages(messages: Sequence[Message]) -> list[dict]:
    """``messages`` as OpenAI chat messages, their images read and encoded here."""
    out: list[dict] = []
    for message in messages:
        if message.role != "user":
            out.append({"role": message.role, "content": message.text})
            continue
        parts: list[dict] = []
        for part in message.content:
            if isinstance(part, str):
                if part:
                    parts.append(text_part(part))
            else:
                parts.append(image_part(image_data_uri(part)))
        out.append({"role": "user", "content": parts or [text_part("")]})
    return out


def image_part(data_uri: str) -> dict:
    return {"type": "image_url", "image_url": {"url": data_uri}}


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}
