"""Video clips as SmolVLM2 reads them: a few frames, each one tile, with their timestamps.

Frames are chosen as SmolVLM2's own processor chooses them: ``round(fps x duration)`` of them
(at most ``max_frames``) evenly from the first frame to the last, the first and last second
skipped when the clip is long enough. Each frame is scaled so its longest side is the model's
tile size, then squared to the tile, as the processor does (it stretches rather than pads, and
the model was trained on that), so it costs exactly one tile's tokens. The prompt lays the
frames out as the processor does too::

    You are provided the following series of twelve frames from a 0:00:12 [H:MM:SS] video.
    <newline>Frame from 00:00:<frame> ... <newline>Frame from 00:11:<frame><newline><newline>

PyAV decodes (FFmpeg is inside its wheels); a long clip is sought, not decoded whole. Animated
GIF and WebP files are clips too, decoded by Pillow.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from smolchat.engine.images import ImageError, PreparedImage, from_pixels, open_image
from smolchat.media import DEFAULT_FPS, DEFAULT_MAX_FRAMES

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"})
ANIMATION_SUFFIXES = frozenset({".gif", ".webp"})  # clips when they hold more than one frame
SKIP_SECONDS = 1.0
# Frames larger than this are refused before decoding: 8K video is 33 megapixels.
MAX_FRAME_PIXELS = 64_000_000
# Decoding on from the last frame beats seeking when the next frame is this close.
_SEEK_GAP_S = 2.0

_READABLE = "Use an MP4, MOV, WebM, MKV or AVI video, or an animated GIF or WebP."


class VideoError(ImageError):
    """A clip that cannot be used; the message names the file, then says why."""


@dataclass(frozen=True)
class VideoInfo:
    """What a clip's header says: enough to plan its frames and predict their cost."""

    path: str
    duration_s: float
    fps: float  # the clip's own frame rate
    frame_count: int
    width: int
    height: int


@dataclass(frozen=True)
class Frame:
    time_s: float
    image: PreparedImage

    @property
    def timestamp(self) -> str:
        return timestamp(self.time_s)


@dataclass(frozen=True)
class Video:
    """The frames of a clip the model reads, in order."""

    source: str
    duration_s: float
    frames: tuple[Frame, ...]

    @property
    def content(self) -> tuple[str | PreparedImage, ...]:
        """The clip as message content: the introduction, each frame after its timestamp, and
        the blank line before what follows."""
        return video_content(self.duration_s, [(f.time_s, f.image) for f in self.frames])


def video_content(duration_s: float, frames: list[tuple[float, PreparedImage]]) -> tuple[str | PreparedImage, ...]:
    parts: list[str | PreparedImage] = [
        f"You are provided the following series of {number_in_words(len(frames))} frames "
        f"from a {duration(duration_s)} [H:MM:SS] video.\n"
    ]
    for time_s, image in frames:
        parts += [f"\nFrame from {timestamp(time_s)}:", image]
    parts.append("\n\n")
    return tuple(parts)


def timestamp(seconds: float) -> str:
    """MM:SS, as the processor writes a frame's time (minutes run past 59)."""
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def duration(seconds: float) -> str:
    """H:MM:SS, as Python writes a whole-second timedelta (the processor's own format)."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_in_words(n: int) -> str:
    """A count in English words, as num2words writes it for the processor: 'twenty-one',
    'one hundred and five', 'one thousand, two hundred and thirty-four'."""
    if n < 0:
        raise ValueError("a frame count is never negative")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")
    if n < 1000:
        rest = n % 100
        return f"{_ONES[n // 100]} hundred" + (f" and {number_in_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    if rest == 0:
        return f"{number_in_words(thousands)} thousand"
    joiner = " and " if rest < 100 else ", "
    return f"{number_in_words(thousands)} thousand{joiner}{number_in_words(rest)}"


NOT_TRAINED_ON_VIDEO = "This model was not trained on video (SmolVLM2 was): it reads the frames as separate pictures."


def trained_on_video(model_name: str, file_name: str = "") -> bool:
    """Whether the model is a SmolVLM2 (trained on clips): SmolVLM2-256M, not SmolVLM-256M."""
    return re.search(r"smolvlm[-_ ]?2(?!\d)", f"{model_name} {file_name}".lower()) is not None


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether SmolChat reads this file as a clip: a video file, or an animated GIF or WebP."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return True
    if suffix not in ANIMATION_SUFFIXES:
        return False
    try:
        with open_image(path) as opened:
            return getattr(opened.image, "n_frames", 1) > 1
    except ImageError:
        return False


def frame_times(info: VideoInfo, fps: float = DEFAULT_FPS, max_frames: int = DEFAULT_MAX_FRAMES) -> list[float]:
    """The times of the frames to read, as SmolVLM2's processor picks them (by frame index,
    evenly between the first and last, a second skipped at each end of a long enough clip)."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError("frames per second must be a positive number")
    if max_frames < 1:
        raise ValueError("at least one frame must be read")
    total = max(info.frame_count, 1)
    wanted = max(min(int(round(fps * info.duration_s)), max_frames), 1)
    start, end = 0, total - 1
    if SKIP_SECONDS > 0 and info.duration_s - 2 * SKIP_SECONDS > max_frames * fps:
        start = int(SKIP_SECONDS * info.fps)
        end = min(int(total - SKIP_SECONDS * info.fps), total - 1)
    if start >= end:
        start, end = 0, total - 1
    if wanted == 1:
        indices = [start]
    else:
        step = (end - start) / (wanted - 1)
        indices = sorted({int(start + i * step) for i in range(wanted)})
    return [index / info.fps for index in indices]


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """The clip's duration, frame rate, frame count and size, from its header."""
    label = str(path)
    if Path(path).suffix.lower() in ANIMATION_SUFFIXES:
        return _probe_animation(path)
    with _opened(label) as container:
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise VideoError(label, f"holds video in a format SmolChat cannot decode. {_READABLE}")
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / 1_000_000
        else:
            seconds = 0.0
        frames = stream.frames or int(round(seconds * rate))
        if frames <= 0 or seconds <= 0:  # no length in the header: count the frames (rare: raw streams)
            frames, seconds = _count_frames(container, rate)
        _check_size(label, width, height)
        return VideoInfo(label, seconds, rate, frames, width, height)


def read_video(
    path: str | os.PathLike[str],
    tile_size: int,
    *,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    cancel: threading.Event | None = None,
    on_frame: Callable[[int, int], None] | None = None,
) -> Video:
    """The clip's frames as one tile each; ``on_frame(done, total)`` after each, and a set
    ``cancel`` stops between frames (VideoError)."""
    info = probe(path)
    times = frame_times(info, fps, max_frames)
    frames = []
    source = (
        _animation_frames(info, times) if Path(path).suffix.lower() in ANIMATION_SUFFIXES else _decoded(info, times)
    )
    for i, (time_s, picture) in enumerate(source):
        if cancel is not None and cancel.is_set():
            raise VideoError(info.path, "reading it was stopped.")
        frames.append(Frame(time_s, as_tile(picture, tile_size, f"{info.path} at {timestamp(time_s)}")))
        if on_frame is not None:
            on_frame(i + 1, len(times))
    if not frames:
        raise VideoError(info.path, f"has no frame SmolChat can read. {_READABLE}")
    return Video(info.path, info.duration_s, tuple(frames))


def preview(path: str | os.PathLike[str], count: int, side: int) -> list[tuple[float, Image.Image]]:
    """``count`` frames spread over the clip, each fitted into ``side`` px with its shape kept:
    what a film strip shows (not what the model reads)."""
    info = probe(path)
    times = frame_times(info, fps=count / max(info.duration_s, 1e-3), max_frames=count)
    decoded = (
        _animation_frames(info, times) if Path(path).suffix.lower() in ANIMATION_SUFFIXES else _decoded(info, times)
    )
    shown = []
    for time_s, picture in decoded:
        picture = picture.convert("RGB")
        picture.thumbnail((side, side), Image.Resampling.LANCZOS)
        shown.append((time_s, picture))
    return shown


def as_tile(picture: Image.Image, tile_size: int, source: str) -> PreparedImage:
    """A frame as the model reads it: longest side to the tile, then squared to it."""
    picture = picture.convert("RGB")
    width, height = picture.size
    if width >= height:
        size = (tile_size, max(int(tile_size / (width / height)), 1))
        size = (size[0], size[1] + size[1] % 2)
    else:
        size = (max(int(tile_size * width / height), 1), tile_size)
        size = (size[0] + size[0] % 2, size[1])
    if picture.size != size:
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    if picture.size != (tile_size, tile_size):
        picture = picture.resize((tile_size, tile_size), Image.Resampling.LANCZOS)
    return from_pixels(picture, source, one_tile=True)


# -- decoding -------------------------------------------------------------------------------


class _opened:
    """A clip opened by PyAV, every failure a VideoError naming the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self):
        import av

        if not os.path.isfile(self.path):
            why = "the file does not exist." if not os.path.exists(self.path) else "is not a file."
            raise VideoError(self.path, why)
        try:
            self.container = av.open(self.path, metadata_errors="ignore")
        except av.FFmpegError as e:
            raise VideoError(self.path, f"is not a video SmolChat can read ({_reason(e)}). {_READABLE}") from e
        except OSError as e:
            raise VideoError(self.path, f"cannot be read ({e.strerror or e}).") from e
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(self.path, f"holds no video (only sound or data). {_READABLE}")
        return self.container

    def __exit__(self, kind, error, trace) -> None:
        import av

        self.container.close()
        if error is None or isinstance(error, (VideoError, GeneratorExit)):
            return
        if isinstance(error, MemoryError):
            raise VideoError(self.path, "is too large to decode in the memory available.") from error
        if isinstance(error, av.FFmpegError):
            raise VideoError(self.path, f"is damaged or incomplete ({_reason(error)}).") from error
        if isinstance(error, Exception):  # FFmpeg meets hostile files with whatever PyAV then trips on
            raise VideoError(self.path, f"is damaged or incomplete ({type(error).__name__}: {error}).") from error


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _check_size(path: str, width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise VideoError(path, f"has no picture size in its header. {_READABLE}")
    if width * height > MAX_FRAME_PIXELS:
        raise VideoError(
            path, f"has frames of {width} x {height} pixels, too large to decode safely. Scale the video down first."
        )


def _count_frames(container, rate: float) -> tuple[int, float]:
    stream = container.streams.video[0]
    count, last = 0, 0.0
    for packet in container.demux(stream):
        if packet.size:
            count += 1
            if packet.pts is not None and packet.time_base is not None:
                last = max(last, float(packet.pts * packet.time_base))
    container.seek(0)
    return count, max(last + 1 / rate, count / rate)


def _decoded(info: VideoInfo, times: list[float]) -> Iterator[tuple[float, Image.Image]]:
    """The frame on screen at each of ``times``: seeking to a far one, decoding on to a near one."""
    with _opened(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.time_base
        start = float(stream.start_time * base) if stream.start_time is not None and base is not None else 0.0
        frames: Iterator = iter(())
        shown = None  # (time, frame): the last frame decoded up to the target
        pending = None  # a frame decoded past the last target: it may be the next one's
        counted = 0  # frames decoded since the last seek, for streams without timestamps
        for target in times:
            if shown is None or target - shown[0] > _SEEK_GAP_S:
                if target > _SEEK_GAP_S and base is not None:
                    container.seek(int((start + target) / base), stream=stream, backward=True)
                else:
                    container.seek(0)
                frames, shown, pending, counted = container.decode(stream), None, None, 0
            while True:
                frame, pending = (pending, None) if pending is not None else (next(frames, None), None)
                if frame is None:
                    break
                counted += 1
                time_s = frame.time - start if frame.time is not None else (counted - 1) / info.fps
                if shown is not None and time_s > target + 1e-6:
                    pending = frame
                    break
                shown = (time_s, frame)
                if time_s >= target - 1e-6:
                    break
            if shown is None:
                break
            yield target, shown[1].to_image()


def _probe_animation(path: str | os.PathLike[str]) -> VideoInfo:
    with open_image(path) as opened:
        image = opened.image
        count = getattr(image, "n_frames", 1)
        durations = []
        for i in range(count):
            image.seek(i)
            durations.append(max(int(image.info.get("duration", 100) or 100), 10))  # browsers show 0 ms as 100
        image.seek(0)
        width, height = opened.size
    seconds = sum(durations) / 1000
    return VideoInfo(str(path), seconds, count / seconds, count, width, height)


def _animation_frames(info: VideoInfo, times: list[float]) -> Iterator[tuple[float, Image.Image]]:
    """Each time's frame of an animated GIF or WebP, each frame shown for its own duration."""
    with open_image(info.path) as opened:
        image = opened.image
        starts, elapsed = [], 0.0
        for i in range(info.frame_count):
            image.seek(i)
            starts.append(elapsed)
            elapsed += max(int(image.info.get("duration", 100) or 100), 10) / 1000
        for target in times:
            index = max(i for i, start in enumerate(starts) if start <= target + 1e-6)
            image.seek(index)
            yield target, image.convert("RGB")
