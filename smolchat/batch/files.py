"""The files a batch job reads: a folder's pictures (in a stable order), or files named."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from smolchat.errors import SmolChatError

# What a folder holds that is read as a picture; other files (notes, sidecars) are passed over.
# A file named on the command line is always tried, and an error line says if it is not one.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_HASH_CHUNK = 1 << 20


def batch_files(inputs: list[Path], *, recursive: bool = False) -> list[Path]:
    """Every picture of each folder in ``inputs`` (and of its subfolders with ``recursive``;
    hidden files and folders left out, links to folders not followed) and each file named,
    without repeats, folders' contents sorted by path."""
    found: list[Path] = []
    for given in inputs:
        if given.is_dir():
            found += sorted(_pictures_in(given, recursive))
        elif given.is_file():
            found.append(given)
        elif given.exists():
            raise SmolChatError(f"{given}: is neither a file nor a folder.")
        else:
            raise SmolChatError(f"{given}: no such file or folder.")
    seen: set[Path] = set()
    unique = []
    for path in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _pictures_in(folder: Path, recursive: bool) -> list[Path]:
    pictures = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in names:
            path = Path(root, name)
            if not name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                pictures.append(path)
    return pictures


def content_hash(path: Path) -> str:
    """The SHA-256 of the file's bytes: a file changed since it was answered is answered again."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
