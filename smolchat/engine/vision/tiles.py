"""SmolVLM's image tiles, cut exactly as libmtmd cuts them.

An encoder other than libmtmd's must see the same pixels libmtmd would have given its own,
or its embeddings would not stand in for libmtmd's. libmtmd resamples with a port of
Pillow's filters (same fixed-point arithmetic), so Pillow reproduces its tiles.

The order is libmtmd's chunk order for idefics3: the grid tiles row by row, then the
overview (the whole picture squeezed into one tile).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class TileGeometry:
    """What decides how an image is cut: the projector's sizes and the token limits."""

    tile_size: int  # 512 px for SmolVLM
    patch_size: int
    scale_factor: int
    longest_edge: int | None  # preprocessing size (2048 px for SmolVLM-256M/500M)
    max_tokens: int | None = None  # libmtmd's image_max_tokens, when set
    min_tokens: int | None = None

    @property
    def _patch_area(self) -> int:
        return (self.patch_size * self.scale_factor) ** 2


def _grid_from_longest_edge(width: int, height: int, g: TileGeometry) -> tuple[Image.Resampling, tuple[int, int], tuple[int, int]]:
    """The default cut: longest side to the preprocessing size, then up to whole tiles."""
    edge = g.longest_edge
    aspect = width / height
    if width >= height:
        w, h = edge, int(edge / aspect)
        h += h % 2
    else:
        w, h = int(edge * aspect), edge
        w += w % 2
    grid = (-(-w // g.tile_size), -(-h // g.tile_size))
    return Image.Resampling.LANCZOS, (w, h), (grid[0] * g.tile_size, grid[1] * g.tile_size)


def _refined_with_limits(width: int, height: int, g: TileGeometry) -> tuple[int, int]:
    """The size libmtmd picks when a token limit is set (whole tiles, within the limit)."""
    align = g.tile_size
    min_pixels = (g.min_tokens or 0) * g._patch_area
    max_pixels = (g.max_tokens or 0) * g._patch_area

    def ceil_to(x: float) -> int:
        return math.ceil(np.float32(x / align)) * align

    def floor_to(x: float) -> int:
        return math.floor(np.float32(x / align)) * align

    if g.longest_edge:
        scale = min(np.float32(g.longest_edge / width), np.float32(g.longest_edge / height))
        w_bar, h_bar = ceil_to(np.float32(width * scale)), ceil_to(np.float32(height * scale))
    else:
        w_bar = max(align, round(np.float32(width / align)) * align)
        h_bar = max(align, round(np.float32(height / align)) * align)
    if max_pixels > 0 and w_bar * h_bar > max_pixels:
        beta = np.sqrt(np.float32(height * width / max_pixels), dtype=np.float32)
        h_bar = max(align, floor_to(height / beta))
        w_bar = max(align, floor_to(width / beta))
    elif min_pixels > 0 and w_bar * h_bar < min_pixels:
        beta = np.sqrt(np.float32(min_pixels / (height * width)), dtype=np.float32)
        h_bar, w_bar = ceil_to(height * beta), ceil_to(width * beta)
    return w_bar, h_bar


def _fit_padded(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to fit inside ``size`` keeping the aspect ratio, centred on black."""
    scale = min(size[0] / image.width, size[1] / image.height)
    w = min(math.ceil(np.float32(image.width * np.float32(scale))), size[0])
    h = min(math.ceil(np.float32(image.height * np.float32(scale))), size[1])
    canvas = Image.new("RGB", size)
    canvas.paste(_resize(image, (w, h), Image.Resampling.BICUBIC), ((size[0] - w) // 2, (size[1] - h) // 2))
    return canvas


def _resize(image: Image.Image, size: tuple[int, int], method: Image.Resampling) -> Image.Image:
    return image if image.size == size else image.resize(size, method)


def cut_tiles(image: Image.Image, g: TileGeometry) -> list[Image.Image]:
    """The tiles libmtmd makes of ``image``, in chunk order (grid row by row, overview last)."""
    image = image.convert("RGB")
    t = g.tile_size
    if g.longest_edge and not g.max_tokens and not g.min_tokens:
        method, resized, refined_size = _grid_from_longest_edge(image.width, image.height, g)
        refined = _resize(_resize(image, resized, method), refined_size, method)
        overview = _resize(refined, (t, t), method)
    else:
        refined_size = _refined_with_limits(image.width, image.height, g)
        refined = _fit_padded(image, refined_size)
        overview = _resize(image, (t, t), Image.Resampling.BICUBIC)
    tiles = [
        refined.crop((x, y, x + t, y + t))
        for y in range(0, refined.height, t)
        for x in range(0, refined.width, t)
    ]
    return tiles + [overview]


def normalized(tiles: list[Image.Image], mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Tiles as float32 NCHW, scaled to [0, 1] and normalized the way libmtmd does."""
    batch = np.stack([np.asarray(tile, dtype=np.float32) for tile in tiles]) / np.float32(255.0)
    batch = (batch - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
