"""ONNX Runtime's encoder saved to disk: read back with the same embeddings as the network
built in memory, made again when the save is damaged, built in memory where nothing can be
saved, and gone with the projector it was made from."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from smolchat.engine.vision import onnx_encoder
from smolchat.engine.vision.onnx_encoder import OnnxVisionEncoder, exported_model
from smolchat.engine.vision.projector_files import copies_of, remove_copies
from smolchat.engine.vision.tiles import cut_tiles, normalized

pytestmark = pytest.mark.skipif(not onnx_encoder.available(), reason="needs onnxruntime and onnx")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOLCHAT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def mmproj(tiny_pair, tmp_path):
    """A projector of this test's own, so that its saved encoders are too."""
    path = tmp_path / "models" / tiny_pair[1].name
    path.parent.mkdir()
    shutil.copy(tiny_pair[1], path)
    return path


def tile_batch(encoder, picture):
    from PIL import Image

    pixels = np.asarray(Image.open(picture).convert("RGB"))
    return normalized(cut_tiles(pixels, encoder.geometry), encoder.mean, encoder.std)


def in_memory(mmproj, precision, monkeypatch):
    """The same encoder, built without saving (as where the cache cannot be written)."""
    with monkeypatch.context() as m:
        m.setattr(onnx_encoder, "exported_model", lambda *a: (_ for _ in ()).throw(OSError("no room")))
        return OnnxVisionEncoder(mmproj, threads=1, precision=precision)


@pytest.mark.parametrize("precision", onnx_encoder.PRECISIONS)
def test_the_saved_encoder_reads_as_the_one_built_in_memory(home, mmproj, images, precision, monkeypatch):
    saved = OnnxVisionEncoder(mmproj, threads=1, precision=precision)
    folder = exported_model(mmproj, precision).parent
    assert folder.is_relative_to(home) and (folder / "weights.bin").stat().st_size > 0
    again = OnnxVisionEncoder(mmproj, threads=1, precision=precision)  # read back from the folder
    built = in_memory(mmproj, precision, monkeypatch)
    tiles = tile_batch(saved, images["photo"])
    first = saved.encode(tiles)
    np.testing.assert_array_equal(again.encode(tiles), first)
    np.testing.assert_allclose(built.encode(tiles), first, rtol=0, atol=1e-5)


def test_a_damaged_save_is_made_again(home, mmproj, images, monkeypatch):
    expected = in_memory(mmproj, "INT8", monkeypatch)
    model = exported_model(mmproj, "INT8")
    model.write_bytes(b"not a network")  # as after a disk error
    encoder = OnnxVisionEncoder(mmproj, threads=1, precision="INT8")
    tiles = tile_batch(encoder, images["photo"])
    np.testing.assert_allclose(encoder.encode(tiles), expected.encode(tiles), rtol=0, atol=1e-5)
    assert model.read_bytes() != b"not a network"


def test_where_nothing_can_be_saved_the_encoder_is_built_in_memory(tmp_path, mmproj, images, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made under a file")
    monkeypatch.setenv("SMOLCHAT_CACHE_DIR", str(blocker / "cache"))
    encoder = OnnxVisionEncoder(mmproj, threads=1, precision="INT8")
    assert encoder.encode(tile_batch(encoder, images["photo"])).shape[1] == encoder.tokens_per_tile


def test_saved_encoders_go_with_their_projector(home, mmproj, tmp_path):
    other = tmp_path / "other" / mmproj.name
    other.parent.mkdir()
    shutil.copy(mmproj, other)
    mine = [exported_model(mmproj, p).parent for p in onnx_encoder.PRECISIONS]
    kept = exported_model(other, "INT8").parent
    assert sorted(copies_of(mmproj)) == sorted(mine)

    remove_copies(copies_of(mmproj))
    assert not any(p.exists() for p in mine) and kept.exists()

    other.unlink()  # deleted by another tool: its save goes at the next clean-up
    remove_copies()
    assert not kept.exists()
