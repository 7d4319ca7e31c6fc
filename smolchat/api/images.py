"""Images a client sends, read as dropped files are (every format check and size bound).

By default only images inside the request are read: OpenAI's data URIs and Ollama's bare
base64. A server started with ``--media-dir DIR`` also reads ``file://`` URLs of files under
DIR (nothing outside it, links included), and one started with ``--allow-remote-images``
fetches ``http(s)://`` URLs: the only way a request makes this computer reach another.
Decoding takes a moment: call these off the event loop.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from smolchat.api.errors import ApiError
from smolchat.engine.images import ImageError, PreparedImage, prepare_image

_DATA_URI = re.compile(r"^data:(image/[\w.+-]+)?(;[\w.+-]+=[\w.+-]+)*;base64,", re.IGNORECASE)
FETCH_TIMEOUT_S = 20.0
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class ImagePolicy:
    """Where images may come from, and how large they may be."""

    max_bytes: int = 20 * 2**20
    media_dir: Path | None = None  # file:// URLs are read only from under here
    allow_remote: bool = False  # http(s):// URLs are fetched only if set


def image_from_url(url: str, where: str, policy: ImagePolicy) -> PreparedImage:
    """An OpenAI ``image_url``: a data URI, or (where allowed) a file or web address."""
    match = _DATA_URI.match(url)
    if match is not None:
        return image_from_base64(url[match.end() :], where, policy)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in ("http", "https"):
        if not policy.allow_remote:
            raise ApiError(
                400,
                f"{where}: images on the web are not fetched (this server keeps to this computer); "
                "send the image as a data URI, or start the server with --allow-remote-images",
                param=where,
            )
        return decode_image(_fetch(url, where, policy.max_bytes), where)
    if scheme == "file":
        return _local_file(url, where, policy)
    raise ApiError(400, f"{where}: an image must be a data URI (data:image/...;base64,...)", param=where)


def image_from_base64(encoded: str, where: str, policy: ImagePolicy) -> PreparedImage:
    """Base64 image bytes (Ollama's ``images``; a data URI prefix is allowed too)."""
    match = _DATA_URI.match(encoded)
    if match is not None:
        encoded = encoded[match.end() :]
    if len(encoded) > policy.max_bytes * 4 // 3 + 4:
        raise ApiError(413, f"{where}: the image is larger than {policy.max_bytes // 2**20} MB", param=where)
    try:
        data = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}: the image's base64 data is broken", param=where) from None
    return decode_image(data, where)


def decode_image(data: bytes, where: str) -> PreparedImage:
    fd, path = tempfile.mkstemp(prefix="smolchat-api-", suffix=".img")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return prepare_image(path)
    except ImageError as e:
        raise ApiError(400, f"{where}: {e.reason}", param=where) from None
    finally:
        os.unlink(path)


def _local_file(url: str, where: str, policy: ImagePolicy) -> PreparedImage:
    if policy.media_dir is None:
        raise ApiError(
            400, f"{where}: file URLs are read only from a folder the server names with --media-dir", param=where
        )
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise ApiError(400, f"{where}: only files on this computer can be read", param=where)
    root = policy.media_dir.resolve()
    try:
        path = Path(unquote(parsed.path)).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise ApiError(404, f"{where}: no such file under the media folder", param=where) from None
    if not path.is_relative_to(root) or not path.is_file():  # resolved: a link out of the folder is out
        raise ApiError(404, f"{where}: no such file under the media folder", param=where)
    if path.stat().st_size > policy.max_bytes:
        raise ApiError(413, f"{where}: the image is larger than {policy.max_bytes // 2**20} MB", param=where)
    try:
        return prepare_image(path)
    except ImageError as e:
        raise ApiError(400, f"{where}: {e.reason}", param=where) from None


def _fetch(url: str, where: str, max_bytes: int) -> bytes:
    """The bytes at ``url``: bounded in size, time and redirects."""
    import httpx2 as httpx

    try:
        with httpx.Client(timeout=FETCH_TIMEOUT_S, follow_redirects=True, max_redirects=MAX_REDIRECTS) as client:
            with client.stream("GET", url, headers={"Accept": "image/*"}) as response:
                if response.status_code != 200:
                    raise ApiError(400, f"{where}: fetching the image gave HTTP {response.status_code}", param=where)
                data = bytearray()
                for piece in response.iter_bytes():
                    data += piece
                    if len(data) > max_bytes:
                        raise ApiError(413, f"{where}: the image is larger than {max_bytes // 2**20} MB", param=where)
                return bytes(data)
    except httpx.HTTPError as e:
        raise ApiError(400, f"{where}: the image could not be fetched ({type(e).__name__})", param=where) from None
