"""Writing a file so that it is never seen half written.

The new content goes to a temporary file of its own in the same folder (so that two writers at
once never write into one file), is flushed to the disk, and then takes the file's name in one
step: a reader finds the old content or the new, a crash or a full disk leaves the old one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMPORARY = ".tmp"


@contextmanager
def replacing(path: str | os.PathLike[str], suffix: str = TEMPORARY) -> Iterator[IO[bytes]]:
    """A binary file to write the new content of ``path`` into; it becomes ``path`` when the
    block ends, and is removed if the block fails. The folder is made if missing. ``suffix``
    ends the temporary file's name (for a cleanup that looks for it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with open(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Make ``data`` the content of ``path`` (text as UTF-8)."""
    with replacing(path) as out:
        out.write(data.encode() if isinstance(data, str) else data)


def write_json(path: str | os.PathLike[str], value: Any, indent: int | None = 1) -> None:
    """Make ``value`` as JSON the content of ``path``; a value JSON cannot hold leaves the file as it was."""
    write_atomically(path, json.dumps(value, indent=indent))
