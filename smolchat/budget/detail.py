"""Image detail levels, and how each maps onto libmtmd's cap on an image's tiles.

SmolVLM scales every picture so its longest side is the projector's preprocessing size
(2048 px for 256M/500M), then cuts a grid of up to 4x4 tiles and adds an overview tile: a
1024x768 photo costs 13 tiles. ``image_max_tokens`` caps the grid's pixels instead; the
overview always comes on top, and the grid never goes below one tile. Shrinking the picture
beforehand would change nothing, since the preprocessing scales it back up.
"""

from __future__ import annotations

import enum
import os


class Detail(enum.StrEnum):
    LOW = "low"  # one tile's worth of pixels, plus the overview: 2 tiles for most pictures
    BALANCED = "balanced"  # about 2x2 tiles plus the overview
    FULL = "full"  # what the model's preprocessing asks: up to 4x4 tiles plus the overview

    @property
    def label(self) -> str:
        return {"low": "Low", "balanced": "Balanced", "full": "Full"}[self.value]


# A fast first answer on a laptop CPU: see the README's table of tokens and waits per level.
DEFAULT_DETAIL = Detail.BALANCED

# The grid's pixel budget, in tiles: 6 tiles' worth rounds down to 2x2 for 4:3 and square
# pictures and to 3x1 for 16:9.
_GRID_TILES = {Detail.LOW: 1, Detail.BALANCED: 6}


def image_max_tokens(detail: Detail, tokens_per_tile: int) -> int | None:
    """libmtmd's ``image_max_tokens`` for a detail level (None: the model's own)."""
    tiles = _GRID_TILES.get(Detail(detail))
    return None if tiles is None else tiles * tokens_per_tile


def parse_detail(value: str) -> Detail:
    try:
        return Detail(value.strip().lower())
    except ValueError:
        raise ValueError(f"'{value}' is not a detail level; use low, balanced or full.") from None


def max_tokens_for(detail: Detail, mmproj: str | os.PathLike[str] | None) -> int | None:
    """``image_max_tokens`` for a detail level with this projector (None without one)."""
    if mmproj is None or Detail(detail) is Detail.FULL:
        return None
    from smolchat.engine.gguf_info import (  # numpy and gguf: only when needed
        ModelFileError,
        inspect_projector,
    )

    try:
        return image_max_tokens(detail, inspect_projector(mmproj).tokens_per_tile)
    except ModelFileError:
        return None  # the engine checks both files in order and says what is wrong
