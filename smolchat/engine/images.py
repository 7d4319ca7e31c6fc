"""Turning image files into the RGB pixels libmtmd reads.

Pillow decodes everything it knows (PNG, JPEG, WebP, GIF, BMP, TIFF, ...), which is more
than libmtmd's own stb_image decoder (no WebP, TIFF or HEIC), and it applies the EXIF
orientation that phone photos rely on. The pixels are handed to libmtmd as they are, and
their hash becomes the image's identity in the KV cache.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from smolchat.errors import SmolChatError

# Larger images are scaled down before the model sees them. SmolVLM resizes every image so
# its longest side is its preprocessing size (2048 px for 256M/500M) anyway, so this only
# saves memory and time on very large photos.
DEFAULT_MAX_SIDE = 4096


class ImageError(SmolChatError):
    """An image that cannot be used; the message names the file."""


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """Decoded RGB pixels, ready for the vision encoder."""

    width: int
    height: int
    rgb: bytes = field(repr=False)
    content_id: str  # hash of the pixels: the same picture always gets the same id
    source: str = ""  # the file it came from, for messages

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PreparedImage) and other.content_id == self.content_id

    def __hash__(self) -> int:
        return hash(self.content_id)


def prepare_image(path: str | os.PathLike[str], *, max_side: int = DEFAULT_MAX_SIDE) -> PreparedImage:
    """Decode the image file at ``path`` into RGB pixels, at most ``max_side`` wide and high."""
    label = str(path)
    opened: Image.Image | None = None
    try:
        opened = image = Image.open(Path(path))
        if image.format == "JPEG":
            # JPEG decodes at 1/2, 1/4 or 1/8 scale directly: far faster for big photos
            image.draft("RGB", (max_side, max_side))
        image.load()
        image = ImageOps.exif_transpose(image)
        image = _flatten_to_rgb(image)
    except FileNotFoundError as e:
        raise ImageError(f"{label}: the file does not exist.") from e
    except IsADirectoryError as e:
        raise ImageError(f"{label}: is a folder, not an image.") from e
    except PermissionError as e:
        raise ImageError(f"{label}: SmolChat is not allowed to read this file.") from e
    except UnidentifiedImageError as e:
        raise ImageError(
            f"{label}: is not an image SmolChat can read. "
            "Use a PNG, JPEG, WebP, GIF, BMP or TIFF file."
        ) from e
    except Image.DecompressionBombError as e:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageError(
            f"{label}: is too large to open safely (over {limit:g} megapixels). Scale it down first."
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{label}: the image is damaged or incomplete ({e}).") from e
    finally:
        if opened is not None:
            opened.close()

    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if min(image.size) < 1:
        raise ImageError(f"{label}: the image is empty.")
    rgb = image.tobytes()
    digest = hashlib.sha256()
    digest.update(f"{image.width}x{image.height}:".encode())
    digest.update(rgb)
    return PreparedImage(image.width, image.height, rgb, digest.hexdigest()[:32], label)


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels; transparent areas become white (as a screenshot viewer shows them)."""
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class ImageCache:
    """Decoded images by path, so a conversation's pictures are not re-read every turn.

    An entry is reused only while the file's size and modification time are unchanged.
    Used by the thread that owns the engine only.
    """

    def __init__(self, capacity: int = 16, max_side: int = DEFAULT_MAX_SIDE) -> None:
        self.capacity = capacity
        self.max_side = max_side
        self._entries: OrderedDict[tuple[str, int, int, int], PreparedImage] = OrderedDict()

    def get(self, path: str | os.PathLike[str]) -> PreparedImage:
        p = Path(path)
        try:
            st = p.stat()
        except FileNotFoundError as e:
            raise ImageError(f"{p}: the file does not exist.") from e
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns, self.max_side)
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit
        image = prepare_image(p, max_side=self.max_side)
        self._entries[key] = image
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return image
