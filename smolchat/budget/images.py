"""The exact token cost of an image, from its pixel size and the projector, without running
the vision encoder.

libmtmd lays an idefics3 image out as, for a grid of C x R tiles:

    per tile:      <fake_token_around_image><row_r_col_c>  [tile embeddings]
    after each row but the last:  "\\n"
    the overview:  "\\n\\n" <fake_token_around_image><global-img>  [overview embeddings]
                   <fake_token_around_image>

so with SmolVLM's vocabulary (each marker one token) an image costs
(C*R + 1) x tokens_per_tile embeddings plus 2*C*R + (R - 1) + 4 marker tokens. A picture too
thin for one grid tile gets the overview alone. A video frame is one tile, between
<fake_token_around_image><global-img> and <fake_token_around_image>: 3 marker tokens.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smolchat.budget.detail import Detail, image_max_tokens
from smolchat.engine.gguf_info import ProjectorInfo
from smolchat.engine.images import DEFAULT_MAX_SIDE, image_error, open_image
from smolchat.engine.prompt import FRAME_CLOSE, FRAME_OPEN
from smolchat.engine.vision.tiles import TileGeometry, grid_size

TILE_MARKER = "<fake_token_around_image><row_{row}_col_{col}>"


def _special_tokens(row: int, col: int) -> int:
    return 2  # SmolVLM's vocabulary has both markers as single tokens for its grids


@dataclass(frozen=True)
class ImageMarkers:
    """Text tokens libmtmd puts around an image's tiles. The overview's four and each row's
    end are single tokens looked up in the vocabulary; a tile's marker is tokenized text."""

    tile_tokens: Callable[[int, int], int] = _special_tokens
    row_end: int = 1
    overview: int = 4
    frame: int = 3

    @classmethod
    def from_tokenizer(cls, count_tokens: Callable[[str], int]) -> ImageMarkers:
        """Exact for any vocabulary: ``count_tokens`` tokenizes with special tokens parsed."""
        return cls(
            functools.lru_cache(maxsize=None)(lambda row, col: count_tokens(TILE_MARKER.format(row=row, col=col))),
            frame=count_tokens(FRAME_OPEN) + count_tokens(FRAME_CLOSE),
        )


SMOLVLM_MARKERS = ImageMarkers()


@dataclass(frozen=True)
class ImageCost:
    width: int  # as the model gets it: upright, and at most 4096 px a side
    height: int
    detail: Detail
    columns: int
    rows: int
    tokens_per_tile: int
    marker_tokens: int

    @property
    def tiles(self) -> int:
        return self.columns * self.rows + 1  # the grid, and the overview

    @property
    def embedding_tokens(self) -> int:
        return self.tiles * self.tokens_per_tile

    @property
    def tokens(self) -> int:
        return self.embedding_tokens + self.marker_tokens

    def as_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "detail": self.detail.value,
            "tiles": self.tiles,
            "grid": [self.columns, self.rows],
            "tokens": self.tokens,
            "embedding_tokens": self.embedding_tokens,
        }


@dataclass(frozen=True)
class MediaCost:
    """What a clip (all its frames) or a PDF (all its pages) costs."""

    frames: int
    pages: int
    tiles: int
    tokens: int


def tile_geometry(projector: ProjectorInfo, detail: Detail) -> TileGeometry:
    return TileGeometry(
        projector.image_size,
        projector.patch_size,
        projector.scale_factor,
        projector.preproc_image_size,
        image_max_tokens(detail, projector.tokens_per_tile),
    )


def image_cost(
    width: int,
    height: int,
    projector: ProjectorInfo,
    detail: Detail = Detail.FULL,
    markers: ImageMarkers = SMOLVLM_MARKERS,
    *,
    one_tile: bool = False,
) -> ImageCost:
    """What an image of ``width`` x ``height`` pixels (as handed to libmtmd) costs; a video
    frame (``one_tile``) is one tile at any detail."""
    if one_tile:
        return ImageCost(width, height, Detail(detail), 0, 0, projector.tokens_per_tile, markers.frame)
    columns, rows = grid_size(width, height, tile_geometry(projector, detail))
    if columns * rows == 0:  # a sliver too thin for one grid tile: the overview alone
        columns = rows = 0
    marker_tokens = (
        markers.overview
        + markers.row_end * max(rows - 1, 0)
        + sum(markers.tile_tokens(row, col) for row in range(1, rows + 1) for col in range(1, columns + 1))
    )
    return ImageCost(width, height, Detail(detail), columns, rows, projector.tokens_per_tile, marker_tokens)


def prepared_size(path: str | os.PathLike[str], max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """The size ``engine.images.prepare_image`` gives an image file, read from its header
    only: turned upright, JPEGs decoded at a reduced scale, then fitted into ``max_side``.
    Remembered while the file is unchanged: the context meter asks again as the user types."""
    try:
        stat = os.stat(path)
    except OSError as e:
        raise image_error(path, e) from e
    return _header_size(str(path), stat.st_mtime_ns, stat.st_size, max_side)


@functools.lru_cache(maxsize=256)
def _header_size(path: str, _mtime_ns: int, _size: int, max_side: int) -> tuple[int, int]:
    with open_image(path, max_side) as opened:
        return opened.size


def typical_projector(model_name: str) -> ProjectorInfo:
    """The tile geometry of a SmolVLM projector, guessed from the model's name, for estimating
    what a server's model will make of an image without its files: 512 px tiles of 64 tokens
    (256M, 500M), or 384 px tiles of 81 tokens (the 2.2B models and SmolVLM-Instruct)."""
    name = model_name.lower()
    small = any(size in name for size in ("256m", "500m"))
    big = "2.2b" in name or "2b" in name or ("smolvlm-instruct" in name and not small)
    tile, patch, scale = (384, 14, 3) if big else (512, 16, 4)
    return ProjectorInfo(
        path=Path(model_name),
        size_bytes=0,
        projector_type="idefics3",
        output_width=0,
        n_embd=0,
        n_layer=0,
        image_size=tile,
        patch_size=patch,
        scale_factor=scale,
        preproc_image_size=4 * tile,
        file_type=None,
    )
