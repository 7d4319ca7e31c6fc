"""Bad model files are refused before llama.cpp sees them, with a message a person can act on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smolchat.engine import (
    Engine,
    ModelFileError,
    inspect_projector,
    inspect_text_model,
)
from smolchat.testing.gguf_pair import TINY, VisionShape, write_mmproj


def _cut(src: Path, dst: Path, n_bytes: int) -> Path:
    dst.write_bytes(src.read_bytes()[:n_bytes])
    return dst


def test_not_a_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("this is not a model")
    with pytest.raises(ModelFileError, match="is not a GGUF file"):
        Engine(fake)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.touch()
    with pytest.raises(ModelFileError, match="is not a GGUF file"):
        inspect_text_model(empty)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        Engine(tmp_path / "nowhere.gguf")


def test_truncated_download_is_named_as_such(tiny_pair, tmp_path):
    text, mmproj = tiny_pair
    half = _cut(text, tmp_path / "half.gguf", text.stat().st_size // 2)
    with pytest.raises(ModelFileError, match="is incomplete.*download the file again"):
        Engine(half, mmproj)
    header_only = _cut(mmproj, tmp_path / "header.gguf", 600)
    with pytest.raises(ModelFileError, match="is incomplete"):
        Engine(text, header_only)


def test_projector_given_as_model(tiny_pair):
    text, mmproj = tiny_pair
    with pytest.raises(ModelFileError, match="is a vision projector \\(mmproj\\), not a text model"):
        Engine(mmproj, text)


def test_text_model_given_as_projector(tiny_pair):
    text, _ = tiny_pair
    with pytest.raises(ModelFileError, match="is a text model \\(llama\\), not a vision projector"):
        Engine(text, text)


def test_projector_of_another_model(tiny_pair, tmp_path):
    text, _ = tiny_pair
    other = write_mmproj(tmp_path / "mmproj-other.gguf", TINY.vision, output_width=96)
    with pytest.raises(ModelFileError, match="belongs to a different model") as info:
        Engine(text, other)
    assert "96" in str(info.value) and "64" in str(info.value)


def test_unsupported_projector(tmp_path):
    gemma = write_mmproj(tmp_path / "mmproj-gemma.gguf", TINY.vision, output_width=64, projector_type="gemma3")
    with pytest.raises(ModelFileError, match="projector type 'gemma3'.*SmolVLM"):
        inspect_projector(gemma)


def test_projector_settings_that_would_abort_llama_cpp(tmp_path):
    # llama.cpp aborts the whole process on a scale factor of 1: it must never get there
    bad = VisionShape(n_embd=32, n_layer=1, n_head=4, n_ff=48, image_size=32, patch_size=8,
                      scale_factor=1, preproc_image_size=None)
    path = write_mmproj(tmp_path / "mmproj-bad.gguf", bad, output_width=64)
    with pytest.raises(ModelFileError, match="invalid projector scale factor"):
        inspect_projector(path)


@pytest.mark.parametrize(
    "edits, expected",
    [
        ({"v.patch_embd.weight": None}, "lacks the tensor 'v.patch_embd.weight'"),
        ({"v.blk.1.attn_k.weight": None}, "lacks the tensor 'v.blk.1.attn_k.weight'"),
        ({"mm.model.fc.weight": np.zeros((64, 64), np.float32)}, "wrongly shaped tensor .* 'mm.model.fc.weight'"),
        ({"v.blk.0.ffn_down.weight": np.zeros((32, 32), np.float32)}, "wrongly shaped .* 'v.blk.0.ffn_down.weight'"),
    ],
)
def test_damaged_projectors_that_would_crash_libmtmd(tiny_pair, tmp_path, edits, expected):
    # libmtmd segfaults on the first two and ggml aborts the process on the others
    path = write_mmproj(tmp_path / "mmproj-damaged.gguf", TINY.vision, output_width=64, tensor_edits=edits)
    with pytest.raises(ModelFileError, match=expected):
        Engine(tiny_pair[0], path)


def test_metadata_of_a_good_pair(tiny_pair):
    text, mmproj = tiny_pair
    info = inspect_text_model(text)
    assert (info.architecture, info.n_embd, info.n_layer, info.max_gpu_layers) == ("llama", 64, 2, 3)
    assert info.chat_template and "<image>" in info.chat_template
    projector = inspect_projector(mmproj)
    assert projector.projector_type == "idefics3"
    assert projector.output_width == info.n_embd
    assert projector.tokens_per_tile == 4
