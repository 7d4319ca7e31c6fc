"""Turning image files into the RGB pixels libmtmd reads.

Pillow decodes everything it knows (PNG, JPEG, WebP, GIF, BMP, TIFF, ...), which is more
than libmtmd's own stb_image decoder (no WebP, TIFF or HEIC), and it applies the EXIF
orientation that phone photos rely on. The pixels are handed to libmtmd as they are, and
their hash becomes the image's identity in the KV cache.

Image files come from anywhere, and Pillow's many parsers meet damaged and hostile ones
with whatever exception their parsing runs into. Every failure becomes an ImageError that
names the file; something that is not a regular file (a pipe, a device, a folder) is
refused before anything opens it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from smolchat.errors import SmolChatError

# Larger images are scaled down before the model sees them. SmolVLM resizes every image so
# its longest side is its preprocessing size (2048 px for 256M/500M) anyway, so this only
# saves memory and time on very large photos.
DEFAULT_MAX_SIDE = 4096

_READABLE = "Use a PNG, JPEG, WebP, GIF, BMP or TIFF file."

# EXIF orientation -> what turns the stored pixels upright
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Grey levels deeper than 8 bits: 32-bit integers, 16-bit unsigned (any byte order), 32-bit floats
_DEEP_GREY = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class ImageError(SmolChatError):
    """An image that cannot be used; the message names the file, then says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # keep it picklable
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """Decoded RGB pixels, ready for the vision encoder."""

    width: int
    height: int
    rgb: bytes = field(repr=False)
    content_id: str  # hash of the pixels: the same picture always gets the same id
    source: str = ""  # the file it came from, for messages
    # A video frame, already the size of one tile: read as that one tile, never cut into a grid
    one_tile: bool = False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PreparedImage) and other.content_id == self.content_id

    def __hash__(self) -> int:
        return hash(self.content_id)


@dataclass(frozen=True)
class OpenImage:
    """An image file opened by Pillow: its header read, its pixels not decoded yet."""

    image: Image.Image
    orientation: int  # EXIF orientation, 1 (upright) to 8
    size: tuple[int, int]  # as the model gets it: upright, then fitted into max_side


def prepare_image(path: str | os.PathLike[str], *, max_side: int = DEFAULT_MAX_SIDE) -> PreparedImage:
    """Decode the image file at ``path`` into RGB pixels, at most ``max_side`` wide and high:
    always at the size ``open_image`` reads from its header, which the context budget counts."""
    with open_image(path, max_side) as opened:
        image = opened.image
        image.load()
        image = _to_rgb(image)
        if opened.orientation in _UPRIGHT:
            image = image.transpose(_UPRIGHT[opened.orientation])
        if image.size != opened.size:
            # Fitted into max_side, as Image.thumbnail would. Should a decoder ever come out at another
            # size than its header said, this is also the header's size, the one the budget counted.
            image = image.resize(opened.size, Image.Resampling.LANCZOS, reducing_gap=2.0)
        return from_pixels(image, str(path))


def from_pixels(image: Image.Image, source: str, *, one_tile: bool = False) -> PreparedImage:
    """An RGB Pillow image as the engine takes it. A frame's identity differs from a photo's
    with the same pixels: the two are laid out differently."""
    rgb = image.tobytes()
    digest = hashlib.sha256()
    digest.update(f"{'one tile ' if one_tile else ''}{image.width}x{image.height}:".encode())
    digest.update(rgb)
    return PreparedImage(image.width, image.height, rgb, digest.hexdigest()[:32], source, one_tile)


@contextlib.contextmanager
def open_image(path: str | os.PathLike[str], max_side: int = DEFAULT_MAX_SIDE) -> Iterator[OpenImage]:
    """The image file at ``path``, its header read and nothing decoded, with the size the model
    will get. Any failure inside the block, from the file system or from Pillow's parsers while
    decoding, is raised as an ImageError naming the file."""
    label = str(path)
    with _regular_file(path) as file:
        try:
            with Image.open(file) as image:
                if image.format in ("JPEG", "MPO"):
                    # JPEG decodes at 1/2, 1/4 or 1/8 scale directly: far faster for big photos
                    image.draft("RGB", (max_side, max_side))
                if image.format == "EPS":  # its pixels come from running Ghostscript on the file's program
                    raise ImageError(
                        label, "is a PostScript file, a program SmolChat does not run. Export it as a PNG first."
                    )
                width, height = image.size
                if width < 1 or height < 1:  # Pillow's stubs for data formats (GRIB, BUFR, HDF5) open so
                    raise ImageError(
                        label,
                        f"is a {image.format} file without a picture SmolChat can read "
                        f"({width} x {height} pixels). {_READABLE}",
                    )
                orientation = _orientation(image)
                if orientation >= 5:  # turned by 90 degrees one way or the other
                    width, height = height, width
                yield OpenImage(image, orientation, fitted_size(width, height, max_side))
        except ImageError:
            raise
        except Exception as e:  # Pillow's parsers raise every kind of exception on hostile files
            raise image_error(label, e) from e


def image_error(path: str | os.PathLike[str], error: BaseException) -> ImageError:
    """What went wrong reading the image file at ``path``, in words for a person."""
    detail = str(error) or type(error).__name__
    if isinstance(error, (FileNotFoundError, NotADirectoryError)):
        why = "the file does not exist."
    elif isinstance(error, IsADirectoryError):
        why = "is a folder, not an image."
    elif isinstance(error, PermissionError):
        why = "SmolChat is not allowed to read this file."
    elif isinstance(error, UnidentifiedImageError):
        why = f"is not an image SmolChat can read. {_READABLE}"
    elif isinstance(error, Image.DecompressionBombError):
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        why = f"is too large to open safely (over {limit:g} megapixels). Scale it down first."
    elif isinstance(error, MemoryError):
        why = "is too large to decode in the memory available. Scale it down first."
    elif isinstance(error, NotImplementedError):
        why = f"is stored in a way SmolChat cannot decode ({detail}). {_READABLE}"
    elif isinstance(error, OSError) and error.errno is not None:  # from the file system, not a parser
        why = f"cannot be read ({error.strerror or detail})."
    else:
        why = f"the image is damaged or incomplete ({detail})."
    return ImageError(path, why)


@contextlib.contextmanager
def _regular_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """The file at ``path``, open for reading. Anything but a regular file is refused before it is
    opened: opening a pipe waits for a writer, and a device never ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise image_error(path, e) from e
    if not stat.S_ISREG(mode):
        raise _not_a_file(path, mode)
    try:
        # Non-blocking, in case a pipe took the file's place since: then the open returns at once.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise image_error(path, e) from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_a_file(path, mode)
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file


def _not_a_file(path: str | os.PathLike[str], mode: int) -> ImageError:
    if stat.S_ISDIR(mode):
        return ImageError(path, "is a folder, not an image.")
    return ImageError(path, "is not a file but a device or a pipe; SmolChat reads pictures from files only.")


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, from what the header holds: for a PNG, an eXIf chunk before the
    pixels (Pillow's PNG reader would decode the whole picture to look further). An EXIF block
    that cannot be read counts as upright, as viewers show such photos."""
    if image.format == "TIFF":  # Pillow's TIFF reader turns the picture upright itself, and sizes it so
        return 1
    try:
        value = Image.Image.getexif(image).get(ExifTags.Base.Orientation, 1)
    except Exception:  # a damaged EXIF block, in whatever way the TIFF-structured parser trips on it
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def fitted_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The size Pillow's ``Image.thumbnail((side, side))`` gives: aspect kept, rounded to the
    integer closest in aspect, never below one pixel."""
    if width <= side and height <= side:
        return width, height
    aspect = width / height
    if aspect >= 1:  # x / y >= aspect with x == y == side
        w = side
        h = _round_aspect(side / aspect, lambda n: 0 if n == 0 else abs(aspect - side / n))
    else:
        h = side
        w = _round_aspect(side * aspect, lambda n: abs(aspect - n / side))
    return w, h


def _round_aspect(number: float, key: Callable[[int], float]) -> int:
    return max(min(math.floor(number), math.ceil(number), key=key), 1)


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB as a viewer shows it: deep grey levels scaled onto 8 bits, and transparent
    areas white, whether an alpha channel, a palette entry or a colour key made them so."""
    if image.mode in _DEEP_GREY:
        image = _grey_to_8_bits(image)
    elif image.mode == "La":  # premultiplied alpha: Pillow converts it to LA only
        image = image.convert("LA")
    if image.mode in ("RGBA", "RGBa", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _grey_to_8_bits(image: Image.Image) -> Image.Image:
    """Deep grey levels onto 0..255 as image viewers map them (Pillow's own conversion clips at
    255, so a 16-bit picture would come out nearly white). 16-bit images span their full range;
    32-bit integer and float images the first usual range that holds all their values (0..1
    for floats, 0..255, 0..65535), else their own minimum to maximum. A grey colour key becomes
    transparency, compared at full depth."""
    values = np.asarray(image)
    key = image.info.get("transparency")
    transparent = values == key if isinstance(key, int) else None
    if image.mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    else:
        low, high = _value_range(values, floats=image.mode == "F")
    grey = np.nan_to_num(values.astype(np.float32), copy=False, nan=low, posinf=high, neginf=low)
    grey -= low
    grey *= 255 / (high - low)
    grey = np.rint(np.clip(grey, 0, 255, out=grey), out=grey).astype(np.uint8)
    if transparent is not None and transparent.any():
        return Image.fromarray(np.dstack([grey, np.where(transparent, 0, 255).astype(np.uint8)]))  # LA
    return Image.fromarray(grey)


def _value_range(values: np.ndarray, *, floats: bool) -> tuple[float, float]:
    finite = values[np.isfinite(values)] if floats else values
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    usual = [(0.0, 1.0)] if floats else []
    for low, high in [*usual, (0.0, 255.0), (0.0, 65535.0)]:
        if low <= lo and hi <= high:
            return low, high
    return lo, max(hi, lo + 1)  # a single value outside the usual ranges comes out black


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
        except OSError as e:
            raise image_error(p, e) from e
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
