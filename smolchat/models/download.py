"""Downloading model files into the Hugging Face cache, resumable across crashes and restarts.

huggingface_hub asks the Hub where a file lives and what it is (commit, sha256, size) and
turns its errors into ours; the bytes are fetched here, because huggingface_hub 2.x deletes
a partial file when a download fails and cannot resume across calls. Here the partial file
stays in the cache as ``blobs/<sha256>.incomplete``, the next attempt asks only for the rest
with a ``Range`` request, and the file becomes a blob only after its sha256 matches the
Hub's LFS hash.

What the server says is checked before it is used (the commit id and hash that name folders
and files in the cache, the size, the part of the file an answer holds), and a server that
keeps answering without bringing the file nearer its end is given up on after a few requests.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import filelock
import httpx2
from huggingface_hub import constants, get_hf_file_metadata, get_session
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

from smolchat.errors import SmolChatError
from smolchat.models import hf_cache
from smolchat.models.hub import (
    FileGoneError,
    Hub,
    HubAnswerError,
    HubError,
    HubUnreachableError,
    RemoteFile,
    hub_errors,
)
from smolchat.units import format_bytes, format_two_sizes

REPORT_EVERY_S = 0.1  # progress reports, at most this often
RETRY_DELAYS_S = (1.0, 2.0, 4.0)  # after an answer that brought the file no further
MAX_REQUESTS_PER_FILE = 20  # in one download; what arrived is kept for the next one
SPARE_DISK_BYTES = 100_000_000  # room left for the rest of the system


class DownloadCancelledError(SmolChatError):
    pass


class DownloadInterruptedError(HubUnreachableError):
    pass


class ChecksumMismatchError(HubError):
    pass


class DiskFullError(SmolChatError):
    pass


class CacheNotWritableError(SmolChatError):
    pass


@dataclass(frozen=True)
class Progress:
    filename: str
    file_done: int
    file_total: int
    done: int  # bytes of all the files of this download, including those already there
    total: int
    speed: float  # bytes per second over the last few seconds

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.speed if self.speed > 0 else None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressCallback = Callable[[Progress], None]


def free_bytes(path: Path) -> int:
    """Free space on the disk that holds ``path`` (or would hold it)."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def download(
    hub: Hub,
    repo: str,
    files: list[RemoteFile],
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """Fetch ``files`` of ``repo`` into the cache (resuming any partial file) and return their
    paths in the cache. Raises a SmolChatError with a message for the user on any failure;
    a partial file is kept for the next attempt unless its bytes proved wrong."""
    with _writing_to(hub.cache_dir):
        return _Download(hub, repo, files, on_progress, cancel or threading.Event()).run()


@contextmanager
def _writing_to(cache_dir: Path) -> Iterator[None]:
    """The file system's refusals (a read-only disk, a file where a folder should be, no
    permission) as a message that names the folder."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"The disk holding {cache_dir} is full. Free some space and download again.") from e
        where = f" ({e.filename})" if e.filename else ""
        raise CacheNotWritableError(
            f"SmolChat cannot write to the model folder {cache_dir}: {e.strerror or e}{where}. Make sure it is a "
            "folder you may write to (or point HF_HUB_CACHE at one) and download again."
        ) from e


class _Download:
    def __init__(
        self,
        hub: Hub,
        repo: str,
        files: list[RemoteFile],
        on_progress: ProgressCallback | None,
        cancel: threading.Event,
    ) -> None:
        self.hub, self.repo, self.files, self.cancel = hub, repo, files, cancel
        self.on_progress = on_progress
        self.total = sum(f.size for f in files)
        self.done_before = 0  # bytes of the files finished in this run
        self._samples: deque[tuple[float, int]] = deque()
        self._fetched = 0  # bytes received from the network in this run, for the speed
        self._last_report = -1.0

    def run(self) -> list[Path]:
        if self.hub.offline:
            raise HubUnreachableError("Offline mode is on (HF_HUB_OFFLINE): models cannot be downloaded.")
        already = {c.filename: c for c in hf_cache.cached_files(self.hub.cache_dir, self.repo)}
        missing = [f for f in self.files if not _matches(already.get(f.path), f)]
        self._check_disk_space(missing)
        result = []
        for f in self.files:
            cached = already.get(f.path)
            path = cached.path if _matches(cached, f) else self._fetch(f)
            self._report(f, f.size, f.size, final=True)
            self.done_before += f.size
            result.append(path)
        return result

    def _check_disk_space(self, missing: list[RemoteFile]) -> None:
        needed = 0
        for f in missing:
            partial = hf_cache.partial_path(self.hub.cache_dir, self.repo, f.sha256) if f.sha256 else None
            have = partial.stat().st_size if partial and partial.exists() else 0
            needed += max(f.size - have, 0)
        if not needed:
            return
        free = free_bytes(self.hub.cache_dir)
        if free < needed + SPARE_DISK_BYTES:
            raise DiskFullError(
                f"Not enough disk space: the download needs {format_bytes(needed)} and the disk holding "
                f"{self.hub.cache_dir} has {format_bytes(free)} free (SmolChat leaves "
                f"{format_bytes(SPARE_DISK_BYTES)} for the rest of the system). Free some space, or point "
                "HF_HUB_CACHE at a bigger disk, and download again."
            )

    def _fetch(self, f: RemoteFile) -> Path:
        url = self.hub.file_url(self.repo, f.path)
        with hub_errors(self.repo, self.hub.endpoint, f.path):
            meta = get_hf_file_metadata(url, token=self.hub.token, endpoint=self.hub.endpoint)
        sha256 = meta.etag if hf_cache.is_sha256(meta.etag) else f.sha256
        if not sha256 or not meta.commit_hash:
            raise HubError(f"The Hub did not say which version of {f.path} it serves; try again later.")
        if not hf_cache.is_commit(meta.commit_hash):
            raise HubAnswerError(
                f"The Hub at {self.hub.endpoint} named the version of {f.path} {meta.commit_hash!r}, which is not a "
                "commit id (40 hexadecimal digits); SmolChat stores nothing under such a name. If HF_ENDPOINT "
                "points at a mirror, check that mirror."
            )
        if meta.size is not None and meta.size != f.size:
            now, listed = format_two_sizes(meta.size, f.size)
            raise FileGoneError(
                f"{f.path} in {self.repo} is now {now}, not {listed} as listed: it changed on the Hub. "
                f"List the repo again (`smolchat models list {self.repo}`) and download again."
            )
        cache = self.hub.cache_dir
        blob = hf_cache.blob_path(cache, self.repo, sha256)
        lock = hf_cache.lock_path(cache, self.repo, sha256)
        hf_cache.make_folder(cache, lock.parent)
        hf_cache.make_folder(cache, blob.parent)
        with self._locked(filelock.FileLock(str(lock))):
            if not blob.exists():
                self._fetch_to_blob(f, meta.location, sha256, blob)
            return hf_cache.add_to_snapshot(cache, self.repo, meta.commit_hash, f.path, blob)

    @contextmanager
    def _locked(self, lock: filelock.FileLock) -> Iterator[None]:
        # Another SmolChat (or huggingface_hub) may be fetching the same file: wait, but stay cancellable.
        while True:
            self._raise_if_cancelled()
            try:
                lock.acquire(timeout=0.2)
                break
            except filelock.Timeout:
                continue
        try:
            yield
        finally:
            lock.release()

    def _fetch_to_blob(self, f: RemoteFile, location: str, sha256: str, blob: Path) -> None:
        size = f.size
        partial = hf_cache.partial_path(self.hub.cache_dir, self.repo, sha256)
        digest = hashlib.sha256()
        have = _hash_existing(partial, digest, size)
        if have < 0:  # longer than the file: not a part of it
            digest, have = hashlib.sha256(), 0
            partial.unlink(missing_ok=True)
        self._report(f, have, size)
        requests = stalls = 0  # stalls: answers in a row that brought the file no further
        while have < size:
            self._raise_if_cancelled()
            before = have
            requests += 1
            lost: Exception | None = None
            try:
                have, digest, answer = self._stream(f, location, partial, have, size, digest)
            except (httpx2.TransportError, ConnectionError) as e:
                digest = hashlib.sha256()  # start again from what reached the disk
                have = max(_hash_existing(partial, digest, size), 0)
                answer, lost = "the connection dropped", e
            except (httpx2.HTTPError, httpx2.InvalidURL, httpx2.StreamError) as e:
                raise HubAnswerError(
                    f"The Hub at {self.hub.endpoint} sent {f.name} in a form SmolChat cannot read ({e}). "
                    "Try again later; if HF_ENDPOINT points at a mirror, check that mirror."
                ) from e
            if have >= size:
                break
            stalls = 0 if have > before else stalls + 1
            if stalls > len(RETRY_DELAYS_S) or requests >= MAX_REQUESTS_PER_FILE:
                done = f"{format_bytes(have)} of {format_bytes(size)} done"
                if lost is not None:
                    raise DownloadInterruptedError(
                        f"The connection to the Hub was lost while downloading {f.name} ({done}). "
                        "Download again to continue from there."
                    ) from lost
                raise HubAnswerError(
                    f"The Hub at {self.hub.endpoint} did not send all of {f.name} in {requests} requests ({done}): "
                    f"{answer}. SmolChat stopped asking; what arrived is kept, and downloading again continues "
                    "from there. If HF_ENDPOINT points at a mirror, check that mirror."
                )
            self._wait(RETRY_DELAYS_S[stalls - 1] if stalls else 0)
        if digest.hexdigest() != sha256:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{f.name} arrived damaged: its sha256 does not match the Hub's. The download was deleted; "
                "download it again (if this repeats, the network or a proxy is altering the file)."
            )
        os.replace(partial, blob)
        os.chmod(blob, 0o644)

    def _stream(
        self, f: RemoteFile, location: str, partial: Path, have: int, size: int, digest: hashlib._Hash
    ) -> tuple[int, hashlib._Hash, str]:
        """Append what one GET brings to ``partial``; the bytes now there, their hash, and what the
        server did if the file is not complete."""
        headers = build_hf_headers(token=self.hub.token)
        headers["Accept-Encoding"] = "identity"
        if have:
            headers["Range"] = f"bytes={have}-"
        timeout = httpx2.Timeout(constants.HF_HUB_DOWNLOAD_TIMEOUT)
        with get_session().stream("GET", location, headers=headers, timeout=timeout, follow_redirects=True) as response:
            if response.status_code == 416:  # the partial file is longer than the file: start over
                partial.unlink(missing_ok=True)
                return 0, hashlib.sha256(), "it refused to send the rest of the file (416)"
            if response.status_code >= 400:
                response.read()  # the error's details are in the body
                with hub_errors(self.repo, self.hub.endpoint, f.path):
                    hf_raise_for_status(response)
            answer = "its answers ended before the end of the file"
            if have and response.status_code != 206:  # the server ignored the Range: start over
                partial.unlink(missing_ok=True)
                have, digest = 0, hashlib.sha256()
                answer = "it sent the start of the file again instead of the rest, and stopped short"
            elif have and _range_start(response.headers.get("Content-Range")) != have:
                return have, digest, "it sent another part of the file than the one asked for"
            received = 0
            try:
                with open(partial, "ab") as out:
                    for chunk in response.iter_bytes():  # as received: nothing held back when the line drops
                        self._raise_if_cancelled()
                        out.write(chunk)
                        out.flush()  # what arrived survives a killed process
                        digest.update(chunk)
                        received += len(chunk)
                        have += len(chunk)
                        self._fetched += len(chunk)
                        self._report(f, have, size)
                        if have > size:
                            break
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskFullError(
                        f"The disk filled up while downloading {f.name} ({format_bytes(have)} of "
                        f"{format_bytes(size)} kept). Free some space and download again to continue."
                    ) from e
                raise
        if have > size:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatchError(f"The Hub sent more bytes than {f.name} has; download it again.")
        return have, digest, answer if received else "its answers held no data"

    def _wait(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            self._raise_if_cancelled()

    def _raise_if_cancelled(self) -> None:
        if self.cancel.is_set():
            raise DownloadCancelledError(
                "Download cancelled. What was fetched is kept: downloading again continues from there."
            )

    def _report(self, f: RemoteFile, file_done: int, file_total: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress is None or (not final and now - self._last_report < REPORT_EVERY_S):
            return
        self._last_report = now
        self._samples.append((now, self._fetched))
        while len(self._samples) > 2 and now - self._samples[0][0] > 5.0:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        speed = (self._fetched - b0) / (now - t0) if now > t0 else 0.0
        self.on_progress(Progress(f.path, file_done, file_total, self.done_before + file_done, self.total, speed))


def _matches(cached: hf_cache.CachedFile | None, remote: RemoteFile) -> TypeGuard[hf_cache.CachedFile]:
    if cached is None or cached.size != remote.size:
        return False
    return remote.sha256 is None or cached.blob.name == remote.sha256 or cached.blob.name == cached.path.name


def _hash_existing(partial: Path, digest: hashlib._Hash, size: int) -> int:
    """Feed a partial file's bytes to ``digest``; its length, or -1 when it cannot be used."""
    try:
        with open(partial, "rb") as f:
            n = 0
            while chunk := f.read(8 << 20):
                digest.update(chunk)
                n += len(chunk)
        return n if n <= size else -1
    except FileNotFoundError:
        return 0


def _range_start(content_range: str | None) -> int | None:
    """Where the part a 206 answer holds begins (``Content-Range: bytes START-END/SIZE``)."""
    m = re.fullmatch(r"bytes (\d+)-\d+/(?:\d+|\*)", (content_range or "").strip())
    return int(m[1]) if m else None
