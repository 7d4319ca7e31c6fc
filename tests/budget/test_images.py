"""An image's token cost, predicted from its size, equals what libmtmd lays out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smolchat.budget.detail import Detail, image_max_tokens
from smolchat.budget.images import ImageMarkers, image_cost, prepared_size, tile_geometry
from smolchat.engine import EngineSettings, Message
from smolchat.engine.engine import Engine
from smolchat.engine.gguf_info import ProjectorInfo, inspect_projector
from smolchat.engine.images import ImageError, PreparedImage, prepare_image
from smolchat.engine.vision.tiles import cut_tiles

# The tiny fixture's projector: 32 px tiles, 128 px preprocessing size, 4 tokens a tile.
SIZES = [
    (1, 1),
    (3, 2),
    (16, 16),
    (64, 48),  # tiny
    (32, 32),
    (33, 32),
    (32, 33),
    (128, 128),
    (129, 128),  # exactly a tile or the preprocessing size, one over
    (512, 512),
    (1024, 1024),
    (2048, 2048),  # square
    (4096, 512),
    (8000, 1000),
    (1000, 8000),  # panorama 8:1 and its tall twin
    (300, 500),
    (333, 777),
    (500, 4000),
    (3, 2000),  # tall
    (1024, 768),
    (1920, 1080),
    (1080, 1920),
    (4000, 3000),
    (4096, 4096),  # photos
]


def placeholder(width: int, height: int) -> PreparedImage:
    """An image of this size for laying out only (libmtmd never sees its pixels there)."""
    return PreparedImage(width, height, b"", hashlib.sha1(f"{width}x{height}".encode()).hexdigest())


@pytest.fixture(scope="module", params=list(Detail), ids=lambda d: d.value)
def engine_at(request, tiny_pair):
    detail = request.param
    cap = image_max_tokens(detail, inspect_projector(tiny_pair[1]).tokens_per_tile)
    with Engine(*tiny_pair, EngineSettings(vision_backend="llama.cpp", image_max_tokens=cap)) as engine:
        yield detail, engine


def test_prediction_equals_libmtmd_for_every_size_and_detail(engine_at, tiny_pair):
    detail, engine = engine_at
    projector = inspect_projector(tiny_pair[1])
    anchor = placeholder(7, 7)  # the measured image comes second, so the template around it is the same
    before = engine.count_prompt([Message.user("What is this?", images=[anchor])])
    wrong = []
    for width, height in SIZES:
        real = engine.count_prompt([Message.user("What is this?", images=[anchor, placeholder(width, height)])])
        predicted = image_cost(width, height, projector, detail, ImageMarkers.from_tokenizer(engine.count_tokens))
        got = (
            real.positions - before.positions,
            real.image_tokens - before.image_tokens,
            real.image_tiles - before.image_tiles,
        )
        if got != (predicted.tokens, predicted.embedding_tokens, predicted.tiles):
            wrong.append(((width, height), got, predicted))
    assert wrong == []


def test_detail_levels_for_a_photo(tiny_pair):
    projector = inspect_projector(tiny_pair[1])
    tiles = {d: image_cost(1024, 768, projector, d).tiles for d in Detail}
    assert tiles == {Detail.LOW: 2, Detail.BALANCED: 5, Detail.FULL: 13}


@pytest.mark.parametrize(
    "size, fmt, orientation",
    [
        ((640, 480), "PNG", 1),
        ((400, 300), "JPEG", 6),
        ((5000, 120), "PNG", 1),
        ((9000, 4500), "JPEG", 1),
        ((4500, 9001), "JPEG", 8),
    ],
)
def test_prepared_size_is_read_from_the_header_as_prepare_image_decodes(tmp_path, size, fmt, orientation):
    path = tmp_path / f"picture.{fmt.lower()}"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", size, (90, 120, 200)).save(path, fmt, exif=exif)
    prepared = prepare_image(path)
    assert prepared_size(path) == (prepared.width, prepared.height)


def test_a_data_file_without_a_picture_is_refused_before_its_cost(tmp_path):
    # Pillow opens GRIB, BUFR and HDF5 files as pictures of 0 x 0 pixels
    path = tmp_path / "forecast.grib"
    path.write_bytes(b"GRIB\0\0\0\x01" + bytes(64))
    with pytest.raises(ImageError, match="forecast.grib: is a GRIB file without a picture SmolChat can read"):
        prepared_size(path)


@pytest.mark.parametrize("detail", list(Detail), ids=lambda d: d.value)
@pytest.mark.parametrize(
    "size", [(1, 1), (1, 4096), (4096, 1), (1, 2049), (5000, 2), (1, 1000)], ids=lambda s: f"{s[0]}x{s[1]}"
)
def test_a_sliver_is_cut_into_as_many_tiles_as_it_costs(size, detail):
    # SmolVLM-256M's projector: 512 px tiles, scaled to 2048 px first; a picture thinner than a
    # pixel at that scale gets the overview alone, in the count and in the tiles our encoders cut
    projector = ProjectorInfo(Path("mmproj-256m.gguf"), 0, "idefics3", 576, 768, 12, 512, 16, 4, 2048, None)
    width, height = size
    cost = image_cost(width, height, projector, detail)
    tiles = cut_tiles(np.zeros((height, width, 3), np.uint8), tile_geometry(projector, detail))
    assert len(tiles) == cost.tiles >= 1
    assert all(tile.shape == (512, 512, 3) for tile in tiles)
