"""Files a person attaches, as message content: photos as they are, PDFs as their pages,
clips as their frames. Checked first (headers only, before a model loads), read later."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smolchat.engine.gguf_info import ProjectorInfo
from smolchat.engine.images import DEFAULT_MAX_SIDE, PreparedImage
from smolchat.engine.prompt import Message
from smolchat.media import ASK_ABOVE_PAGES, pdf, video


@dataclass(frozen=True)
class Attachment:
    path: Path
    kind: str  # "image", "pages" or "video"
    pages: tuple[int, ...] = ()  # a PDF's pages to send, from 1
    clip: video.VideoInfo | None = None


def check(
    images: list[Path], videos: list[Path] | tuple = (), *, pages: str | None = None, ask_above: int = ASK_ABOVE_PAGES
) -> list[Attachment]:
    """The attachments, each file's header read: an error names the first file that cannot
    be used. A PDF with more than ``ask_above`` pages needs ``pages`` (1-3,5)."""
    from smolchat.engine.images import open_image

    checked = [Attachment(Path(p), "video", clip=video.probe(p)) for p in videos]
    for path in images:
        if pdf.is_pdf(path):
            count = pdf.page_count(path)
            if pages is None and count > ask_above:
                raise pdf.DocumentError(
                    path, f"has {count} pages. Choose the pages to send, e.g. --pages 1-3 (each page is a picture)."
                )
            chosen = pdf.parse_pages(pages, count, path) if pages is not None else list(range(1, count + 1))
            checked.append(Attachment(Path(path), "pages", tuple(chosen)))
        else:
            with open_image(path):
                pass
            checked.append(Attachment(Path(path), "image"))
    return checked


def content(
    attachments: list[Attachment],
    projector: ProjectorInfo,
    *,
    fps: float = video.DEFAULT_FPS,
    max_frames: int = video.DEFAULT_MAX_FRAMES,
    cancel: threading.Event | None = None,
) -> tuple[str | PreparedImage | os.PathLike, ...]:
    """The attachments as message content, in order: clips as their frames (one tile each, at
    the projector's tile size), PDFs as pages at its preprocessing size, photos as paths (the
    engine reads and caches those itself)."""
    parts: list[str | PreparedImage | os.PathLike] = []
    for a in attachments:
        if a.kind == "video":
            clip = video.read_video(a.path, projector.image_size, fps=fps, max_frames=max_frames, cancel=cancel)
            parts += clip.content
        elif a.kind == "pages":
            parts += pdf.render_pages(a.path, list(a.pages), projector.preproc_image_size or DEFAULT_MAX_SIDE)
        else:
            parts.append(a.path)
    return tuple(parts)


def planned_content(
    attachments: list[Attachment],
    projector: ProjectorInfo,
    *,
    fps: float = video.DEFAULT_FPS,
    max_frames: int = video.DEFAULT_MAX_FRAMES,
) -> tuple[str | PreparedImage | os.PathLike, ...]:
    """What ``content`` will give, from headers alone: frames and pages as size-only images
    (for counting; nothing decoded or rendered)."""
    parts: list[str | PreparedImage | os.PathLike] = []
    for a in attachments:
        if a.kind == "video":
            assert a.clip is not None
            tile = projector.image_size
            times = video.frame_times(a.clip, fps, max_frames)
            sized = [(t, _size_only(tile, tile, f"{a.path}@{t}", one_tile=True)) for t in times]
            parts += video.video_content(a.clip.duration_s, sized)
        elif a.kind == "pages":
            sizes = pdf.page_sizes(a.path, list(a.pages), projector.preproc_image_size or DEFAULT_MAX_SIDE)
            parts += [_size_only(w, h, f"{a.path}#{n}") for (w, h), n in zip(sizes, a.pages)]
        else:
            parts.append(a.path)
    return tuple(parts)


def _size_only(width: int, height: int, where: str, *, one_tile: bool = False) -> PreparedImage:
    name = f"size-only:{where}"
    return PreparedImage(width, height, b"", content_id=name, source=name, one_tile=one_tile)


# -- messages whose parts name clips and PDFs ------------------------------------------------


def media_kind(path: str | os.PathLike[str]) -> str | None:
    """ "video" for a clip, "pages" for a PDF, None for a picture: what a message part is."""
    suffix = Path(path).suffix.lower()
    if pdf.is_pdf(path):
        return "pages"
    if suffix in video.VIDEO_SUFFIXES:
        return "video"
    if suffix in video.ANIMATION_SUFFIXES and _animated(*_file_key(Path(path))):
        return "video"
    return None


@functools.lru_cache(maxsize=256)
def _animated(path: str, *_unchanged) -> bool:
    """Whether a GIF or WebP moves, remembered while the file is unchanged: the meter asks for
    every picture of the conversation at every keystroke."""
    return video.is_video(path)


def _file_key(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return (str(path),)
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


class MediaReader:
    """Clips and PDFs named in messages, read once into their content (frames, pages) and
    kept while the file is unchanged: a follow-up finds the same frames, so the engine finds
    them in its cache. Used by the thread that owns the engine only."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._read: dict[tuple, tuple] = {}

    def expand(
        self,
        messages: list[Message],
        projector: ProjectorInfo | None,
        *,
        fps: float = video.DEFAULT_FPS,
        max_frames: int = video.DEFAULT_MAX_FRAMES,
        cancel: threading.Event | None = None,
    ) -> list[Message]:
        """The messages with each clip and PDF replaced by its frames and pages."""

        def read(path: Path, kind: str, projector: ProjectorInfo) -> tuple:
            key = (*_file_key(path), kind, projector.image_size, projector.preproc_image_size, fps, max_frames)
            if key not in self._read:
                found = _checked(path, kind)
                self._read[key] = content(found, projector, fps=fps, max_frames=max_frames, cancel=cancel)
                while len(self._read) > self.capacity:
                    self._read.pop(next(iter(self._read)))
            return self._read[key]

        return _replacing_media(messages, projector, read)


def planned_messages(
    messages: list[Message],
    projector: ProjectorInfo | None,
    *,
    fps: float = video.DEFAULT_FPS,
    max_frames: int = video.DEFAULT_MAX_FRAMES,
) -> list[Message]:
    """The messages as ``MediaReader.expand`` will give them, from headers alone (for counting)."""

    def plan(path: Path, kind: str, projector: ProjectorInfo) -> tuple:
        return _planned(*_file_key(path), kind, projector, fps, max_frames)

    return _replacing_media(messages, projector, plan)


@functools.lru_cache(maxsize=64)
def _planned(path: str, *key_and_rest) -> tuple:
    """``planned_content`` of one file, remembered while it is unchanged: the meter asks again at
    every keystroke, for every message of the conversation."""
    *_unchanged, kind, projector, fps, max_frames = key_and_rest
    return planned_content(_checked(Path(path), kind), projector, fps=fps, max_frames=max_frames)


def _replacing_media(
    messages: list[Message], projector: ProjectorInfo | None, parts_of: Callable[[Path, str, ProjectorInfo], tuple]
) -> list[Message]:
    if projector is None or not any(_names_media(m) for m in messages):
        return messages
    out = []
    for m in messages:
        parts: list = []
        for part in m.content:
            kind = media_kind(part) if isinstance(part, os.PathLike) else None
            if kind is None:
                parts.append(part)
            else:
                parts += parts_of(Path(part), kind, projector)
        out.append(Message(m.role, tuple(parts)))
    return out


def _checked(path: Path, kind: str) -> list[Attachment]:
    # a PDF in a message was chosen whole (the window keeps only the pages picked)
    return check([path], [], ask_above=10**6) if kind == "pages" else check([], [path])


def _names_media(message: Message) -> bool:
    return any(isinstance(p, os.PathLike) and media_kind(p) is not None for p in message.content)
