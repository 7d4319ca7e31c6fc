"""Clips written with PyAV for the tests: a red square crossing a black frame, left to right,
so that a frame's time can be read back from where the square is."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

SQUARE = 16


def write_clip(path: Path, seconds: float = 12, fps: int = 25, size=(160, 120), codec: str = "libx264") -> Path:
    frames = int(round(seconds * fps))
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(square_at(i / frames, size), format="rgb24")))
        out.mux(stream.encode())
    return path


def write_animation(path: Path, durations_ms: list[int], size=(96, 64)) -> Path:
    pictures = [Image.fromarray(square_at(i / len(durations_ms), size)) for i in range(len(durations_ms))]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations_ms, loop=0)
    return path


def square_at(progress: float, size) -> np.ndarray:
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    x = int(progress * (width - SQUARE))
    pixels[height // 2 - SQUARE // 2 : height // 2 + SQUARE // 2, x : x + SQUARE] = (255, 0, 0)
    return pixels


def square_progress(image) -> float:
    """Where the square is in a frame as the model reads it (0: left edge, 1: right edge)."""
    pixels = np.frombuffer(image.rgb, np.uint8).reshape(image.height, image.width, 3)
    red = np.where(pixels[:, :, 0].max(axis=0) > 128)[0]
    assert red.size, "no square in this frame"
    return (red.mean() - red.size / 2) / (image.width - red.size)
