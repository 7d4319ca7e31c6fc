"""SmolVLM's image tiles, cut exactly as libmtmd cuts them.

An encoder other than libmtmd's must see the same pixels libmtmd would have given its own,
or its embeddings would not stand in for libmtmd's. libmtmd resamples with its own port of
Pillow's filters (fixed-point, horizontal pass first); Pillow itself rounds differently for
some sizes, so the same arithmetic is done here with numpy, bit for bit.

The order is libmtmd's chunk order for idefics3: the grid tiles row by row, then the
overview (the whole picture squeezed into one tile).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


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


def _grid_from_longest_edge(width: int, height: int, g: TileGeometry) -> tuple[tuple[int, int], tuple[int, int]]:
    """The default cut: longest side to the preprocessing size, then up to whole tiles."""
    edge = g.longest_edge
    assert edge is not None  # only geometries with a preprocessing size cut this way
    aspect = width / height
    if width >= height:
        w, h = edge, int(edge / aspect)
        h += h % 2
    else:
        w, h = int(edge * aspect), edge
        w += w % 2
    grid = (-(-w // g.tile_size), -(-h // g.tile_size))
    return (w, h), (grid[0] * g.tile_size, grid[1] * g.tile_size)


def _refined_with_limits(width: int, height: int, g: TileGeometry) -> tuple[int, int]:
    """The size libmtmd picks when a token limit is set (whole tiles, within the limit)."""
    align = g.tile_size
    min_pixels = (g.min_tokens or 0) * g._patch_area
    max_pixels = (g.max_tokens or 0) * g._patch_area

    def ceil_to(x: float | np.floating) -> int:
        return math.ceil(np.float32(x / align)) * align

    def floor_to(x: float | np.floating) -> int:
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


def _fit_padded(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale to fit inside ``size`` keeping the aspect ratio, centred on black."""
    height, width = image.shape[:2]
    scale = min(np.float32(size[0] / width), np.float32(size[1] / height))
    w = min(math.ceil(np.float32(width * scale)), size[0])
    h = min(math.ceil(np.float32(height * scale)), size[1])
    canvas = np.zeros((size[1], size[0], 3), np.uint8)
    top, left = (size[1] - h) // 2, (size[0] - w) // 2
    canvas[top : top + h, left : left + w] = resample(image, (w, h), "bicubic")
    return canvas


_PRECISION_BITS = 22  # 32 - 8 - 2, as in Pillow
_SUPPORT = {"bilinear": 1.0, "bicubic": 2.0, "lanczos": 3.0}


def _filter(x: np.ndarray, method: str) -> np.ndarray:
    if method == "lanczos":
        return np.where((x >= -3.0) & (x < 3.0), np.sinc(x) * np.sinc(x / 3.0), 0.0)
    x = np.abs(x)
    if method == "bilinear":
        return np.where(x < 1.0, 1.0 - x, 0.0)
    a = -0.5
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _coefficients(in_size: int, out_size: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """First input index and fixed-point weights (out_size, taps) of each output pixel."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT[method] * filterscale
    taps = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((center - support + 0.5).astype(np.int64), 0)
    last = np.minimum((center + support + 0.5).astype(np.int64), in_size)
    count = last - first
    offsets = np.arange(taps)
    weights = _filter((offsets[None, :] + first[:, None] - center[:, None] + 0.5) / filterscale, method)
    weights = np.where(offsets[None, :] < count[:, None], weights, 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, total, out=weights.copy(), where=total != 0)
    fixed = weights * (1 << _PRECISION_BITS)
    fixed = np.trunc(fixed + np.where(weights < 0, -0.5, 0.5)).astype(np.int64)
    return first, fixed


_BLOCK_VALUES = 1 << 18  # output values resampled at a time: the int32 sums stay in cache


def _resample_axis(image: np.ndarray, out_size: int, axis: int, method: str) -> np.ndarray:
    in_size = image.shape[axis]
    first, weights = _coefficients(in_size, out_size, method)
    weights = weights.astype(np.int32)
    # The resampled axis first and contiguous, so each tap gathers whole rows. int32
    # accumulators, as in libmtmd (and Pillow): the sums fit. A block of output rows at a
    # time, so that a 2048 px picture needs a few MB of sums rather than hundreds.
    src = np.ascontiguousarray(np.moveaxis(image, axis, 0))
    out = np.empty((out_size,) + src.shape[1:], np.uint8)
    row_values = max(1, src[0].size)
    block = max(1, _BLOCK_VALUES // row_values)
    expand = (slice(None),) + (None,) * (src.ndim - 1)
    for start in range(0, out_size, block):
        rows = slice(start, min(start + block, out_size))
        acc = np.full((rows.stop - start,) + src.shape[1:], 1 << (_PRECISION_BITS - 1), np.int32)
        term = np.empty_like(acc)
        for tap in range(weights.shape[1]):
            index = np.minimum(first[rows] + tap, in_size - 1)  # weight 0 where past the edge
            np.multiply(src[index], weights[rows, tap][expand], out=term)
            acc += term
        acc >>= _PRECISION_BITS
        np.clip(acc, 0, 255, out=acc)
        out[rows] = acc
    return np.moveaxis(out, 0, axis)


def resample(image: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to ``size`` (width, height) as libmtmd does."""
    height, width = image.shape[:2]
    if size[0] != width:
        image = _resample_axis(image, size[0], 1, method)
    if size[1] != height:
        image = _resample_axis(image, size[1], 0, method)
    return image


def _uses_longest_edge(g: TileGeometry) -> bool:
    return bool(g.longest_edge) and not g.max_tokens and not g.min_tokens


def _require_pixels(width: int, height: int) -> None:
    if width < 1 or height < 1:  # ImageError refuses such files first; this keeps the arithmetic honest
        raise ValueError(f"an image of {width} x {height} pixels has nothing to cut into tiles")


def grid_size(width: int, height: int, g: TileGeometry) -> tuple[int, int]:
    """Columns and rows of the tile grid libmtmd cuts an image of this size into (the
    overview tile comes on top). A sliver too thin for the grid has none: 0 columns or rows."""
    _require_pixels(width, height)
    if _uses_longest_edge(g):
        _, (w, h) = _grid_from_longest_edge(width, height, g)
    else:
        w, h = _refined_with_limits(width, height, g)
    return w // g.tile_size, h // g.tile_size


def cut_tiles(image: np.ndarray, g: TileGeometry) -> list[np.ndarray]:
    """The tiles libmtmd makes of an (H, W, 3) uint8 image, in chunk order (grid row by row,
    overview last)."""
    t = g.tile_size
    height, width = image.shape[:2]
    _require_pixels(width, height)
    if _uses_longest_edge(g):
        resized, refined_size = _grid_from_longest_edge(width, height, g)
        if 0 in resized:  # thinner than a pixel at the preprocessing size: no grid, the overview alone
            return [resample(image, (t, t), "lanczos")]
        refined = resample(resample(image, resized, "lanczos"), refined_size, "lanczos")
        overview = resample(refined, (t, t), "lanczos")
    else:
        refined = _fit_padded(image, _refined_with_limits(width, height, g))
        overview = resample(image, (t, t), "bicubic")
    tiles = [
        refined[y : y + t, x : x + t] for y in range(0, refined.shape[0], t) for x in range(0, refined.shape[1], t)
    ]
    return tiles + [overview]


def normalized(tiles: list[np.ndarray], mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Tiles as float32 NCHW, scaled to [0, 1] and normalized the way libmtmd does."""
    scaled = np.stack(tiles).astype(np.float32) / np.float32(255.0)
    batch = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
