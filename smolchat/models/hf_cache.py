"""The standard Hugging Face cache, read and written in its documented layout.

    <cache>/models--<owner>--<name>/blobs/<sha256>           the file's bytes
                                   /blobs/<sha256>.incomplete a download in progress (ours)
                                   /snapshots/<commit>/<file> a link to the blob
                                   /refs/main                 the commit 'main' pointed to
    <cache>/.locks/models--<owner>--<name>/<sha256>.lock

Files SmolChat downloads are therefore visible to llama.cpp, huggingface_hub and other apps,
and files they downloaded are reused. A blob only ever appears complete: downloads grow the
``.incomplete`` file and rename it once its sha256 has been checked.

Commit ids, sha256 hashes and file names come from the Hub (or a mirror HF_ENDPOINT names) and
are checked before they become paths; every folder made below a repo's folder must stay inside
it (no link leads out), and only a repo's own ``blobs/`` are ever deleted.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from smolchat.errors import SmolChatError

_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CachePathError(SmolChatError):
    """A path that would lead outside the cache, refused before anything is written there."""


def is_commit(value: object) -> bool:
    return isinstance(value, str) and _COMMIT.fullmatch(value) is not None


def is_sha256(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def file_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a file of a repo inside a snapshot folder, or None when it can:
    a relative path with '/' between its parts, none of them empty, '.' or '..'."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character"
    if "\\" in name or ":" in name:
        return "contains a backslash or a colon (a folder or drive elsewhere on Windows)"
    if name.startswith("/"):
        return "is an absolute path"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "leaves its folder ('..', '.' or an empty part)"
    return None


def repo_folder(cache_dir: Path, repo: str) -> Path:
    return cache_dir / ("models--" + repo.replace("/", "--"))


def repo_of_folder(folder: Path) -> str | None:
    name = folder.name
    if not name.startswith("models--") or name.count("--") < 2:
        return None
    return name.removeprefix("models--").replace("--", "/", 1)


def blob_path(cache_dir: Path, repo: str, sha256: str) -> Path:
    if not is_sha256(sha256):
        raise CachePathError(
            f"SmolChat refused to name a file in {cache_dir} after {sha256!r}: "
            "that is not a sha256 hash. Download the model again."
        )
    return repo_folder(cache_dir, repo) / "blobs" / sha256


def partial_path(cache_dir: Path, repo: str, sha256: str) -> Path:
    return blob_path(cache_dir, repo, sha256).with_name(sha256 + ".incomplete")


def lock_path(cache_dir: Path, repo: str, sha256: str) -> Path:
    blob = blob_path(cache_dir, repo, sha256)  # checks the hash
    return cache_dir / ".locks" / repo_folder(cache_dir, repo).name / (blob.name + ".lock")


def make_folder(root: Path, path: Path) -> Path:
    """Create ``path`` (a folder below ``root``) part by part, refusing to follow a link that
    leads out of ``root``: nothing is created or written outside it. ``root`` itself may be a link."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if relative == os.curdir:
        relative = ""
    if relative == os.pardir or relative.startswith(os.pardir + os.sep) or os.path.isabs(relative):
        raise CachePathError(f"SmolChat refused to write to {path}: it is outside {root}.")
    root.mkdir(parents=True, exist_ok=True)
    real_root = os.path.realpath(root)
    current = root
    for part in Path(relative).parts:
        current = current / part
        current.mkdir(exist_ok=True)
        if not _is_within(os.path.realpath(current), real_root):
            raise CachePathError(
                f"{current} is a link that leads outside {root}; SmolChat does not write through it. "
                "Remove the link and try again."
            )
    return current


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class CachedFile:
    repo: str
    filename: str  # path inside the repo
    path: Path  # the snapshot entry (a link to the blob, or the file itself where links are not possible)
    size: int
    commit: str

    @property
    def blob(self) -> Path:
        return self.path.resolve()


def cached_files(cache_dir: Path, repo: str | None = None, suffix: str = ".gguf") -> list[CachedFile]:
    """Complete files in the cache (of one repo, or all), one per file name: the version
    of the commit ``main`` points to, else the newest."""
    folders = [repo_folder(cache_dir, repo)] if repo else sorted(cache_dir.glob("models--*"))
    found: list[CachedFile] = []
    for folder in folders:
        name = repo_of_folder(folder)
        if name is None or not (folder / "snapshots").is_dir():
            continue
        main = _read_ref(folder)
        by_name: dict[str, tuple[tuple[bool, float], CachedFile]] = {}
        for snapshot in (folder / "snapshots").iterdir():
            for entry in snapshot.rglob("*"):
                if not entry.name.lower().endswith(suffix):
                    continue
                try:
                    stat = entry.stat()  # follows the link: fails for a dangling one
                except OSError:
                    continue
                filename = entry.relative_to(snapshot).as_posix()
                rank = (snapshot.name == main, stat.st_mtime)
                if filename not in by_name or rank > by_name[filename][0]:
                    by_name[filename] = (rank, CachedFile(name, filename, entry, stat.st_size, snapshot.name))
        found.extend(f for _, f in sorted(by_name.values(), key=lambda item: item[1].filename))
    return found


def _read_ref(folder: Path, ref: str = "main") -> str | None:
    try:
        return (folder / "refs" / ref).read_text().strip()
    except OSError:
        return None


def add_to_snapshot(cache_dir: Path, repo: str, commit: str, filename: str, blob: Path) -> Path:
    """Make ``blob`` appear as ``filename`` in the snapshot of ``commit``, and point 'main' there.
    Only an entry inside that snapshot is ever replaced."""
    folder = repo_folder(cache_dir, repo)
    if not is_commit(commit):
        raise CachePathError(
            f"SmolChat refused to make a snapshot folder named {commit!r} in {folder}: "
            "that is not a commit id (40 hexadecimal digits)."
        )
    if problem := file_name_problem(filename):
        raise CachePathError(f"SmolChat refused to store a file named {filename!r} in {folder}: the name {problem}.")
    snapshot = make_folder(folder, folder / "snapshots" / commit)
    pointer = make_folder(snapshot, (snapshot / filename).parent) / Path(filename).name
    link = pointer.with_name(f".{pointer.name}.{os.getpid()}.link")
    link.unlink(missing_ok=True)
    try:
        link.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:  # no symlinks (Windows without developer mode): the snapshot holds the file itself
        os.replace(blob, pointer)
    else:
        try:
            os.replace(link, pointer)  # replaces a link or file there, never what a link points to
        finally:
            link.unlink(missing_ok=True)
    ref = make_folder(folder, folder / "refs") / "main"
    written = ref.with_name(f".main.{os.getpid()}.tmp")
    written.write_text(commit)
    os.replace(written, ref)
    return pointer


def remove_cached(cache_dir: Path, file: CachedFile) -> None:
    """Delete a file from every snapshot of its repo, and its blob once nothing links to it.
    An entry that links anywhere but the repo's own ``blobs/`` is only unlinked: what it points
    to is not SmolChat's to delete."""
    folder = repo_folder(cache_dir, file.repo)
    snapshots = folder / "snapshots"
    real_snapshots = os.path.realpath(snapshots)
    blob = file.blob
    for snapshot in snapshots.iterdir():
        entry = snapshot / file.filename
        if not (entry.is_symlink() or entry.exists()):
            continue
        # the entry's own folder must be inside the snapshots (a linked snapshot folder is not ours)
        if _is_within(os.path.realpath(entry.parent), real_snapshots) and entry.resolve() == blob:
            entry.unlink()
            _remove_empty_parents(entry.parent, snapshots)
    own_blobs = Path(os.path.realpath(folder / "blobs"))
    if blob.parent != own_blobs or not blob.is_file():
        return
    if not any(p.is_symlink() and p.resolve() == blob for p in snapshots.rglob("*")):
        blob.unlink()


def remove_repo_if_empty(cache_dir: Path, repo: str) -> None:
    """Remove a repo's folder (refs, locks) once it holds no file and no partial download."""
    folder = repo_folder(cache_dir, repo)
    if any(p.is_file() or p.is_symlink() for p in (folder / "blobs").glob("*")) or any(
        p.is_file() or p.is_symlink() for p in (folder / "snapshots").rglob("*")
    ):
        return
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(cache_dir / ".locks" / folder.name, ignore_errors=True)


def _remove_empty_parents(directory: Path, stop: Path) -> None:
    while directory != stop and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent
