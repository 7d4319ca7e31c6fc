"""Bad model files are refused before llama.cpp sees them, with a message a person can act on."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from smolchat.engine.engine import Engine
from smolchat.engine.gguf_info import ModelFileError, inspect_projector, inspect_text_model
from smolchat.engine.synthetic import TINY, TextShape, VisionShape, write_mmproj, write_text_model
from tests.engine.test_gguf_fuzz import VT, layout, load_in_child, put, string_payload, with_key, with_value


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


def test_a_few_bytes(tmp_path):
    few = tmp_path / "few.gguf"
    few.write_bytes(b"GG")
    with pytest.raises(ModelFileError, match="few.gguf: is not a GGUF file"):
        inspect_projector(few)
    few.write_bytes(b"GGUF\x03\0")
    with pytest.raises(ModelFileError, match="few.gguf: is incomplete"):
        inspect_projector(few)


def test_a_folder(tmp_path):
    folder = tmp_path / "model.gguf"
    folder.mkdir()
    with pytest.raises(ModelFileError, match="model.gguf: is a folder"):
        inspect_text_model(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    pipe = tmp_path / "mmproj-pipe.gguf"
    os.mkfifo(pipe)
    with pytest.raises(ModelFileError, match="mmproj-pipe.gguf: is not a regular file"):
        inspect_projector(pipe)


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


def test_names_from_a_file_are_shortened_in_messages(tiny_pair, tmp_path):
    odd = write_mmproj(tmp_path / "mmproj-odd.gguf", TINY.vision, output_width=64, projector_type="x" * 100_000)
    with pytest.raises(ModelFileError, match="projector type 'x{40}…'") as info:
        inspect_projector(odd)
    assert len(str(info.value)) < 300
    long_key = "clip.vision." + "k" * 100_000 + "_epsilon"
    once, twice = tmp_path / "mmproj-once.gguf", tmp_path / "mmproj-twice.gguf"
    for source, target in ((tiny_pair[1], once), (once, twice)):
        data = source.read_bytes()
        target.write_bytes(with_key(data, layout(data, source), long_key, VT.FLOAT32, struct.pack("<f", -1)))
    for damaged, problem in (
        (once, "normalization epsilon \\('clip.vision.k{28}…' = -1.0\\)"),
        (twice, "the key 'clip.vision.k{28}…' appears twice"),
    ):
        with pytest.raises(ModelFileError, match=problem) as info:
            inspect_projector(damaged)
        assert len(str(info.value)) < 300


def test_projector_settings_that_would_abort_llama_cpp(tmp_path):
    # llama.cpp aborts the whole process on a scale factor of 1: it must never get there
    bad = VisionShape(
        n_embd=32, n_layer=1, n_head=4, n_ff=48, image_size=32, patch_size=8, scale_factor=1, preproc_image_size=None
    )
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


# -- damaged headers ---------------------------------------------------------------------------


def _header_edit(tiny_pair, tmp_path, role: str, edit) -> Path:
    source = tiny_pair[0] if role == "text" else tiny_pair[1]
    data = source.read_bytes()
    damaged = tmp_path / f"damaged-{source.name}"
    damaged.write_bytes(edit(data, layout(data, source)))
    return damaged


@pytest.mark.parametrize(
    "role, edit, problem",
    [
        # these made the reader itself fail with ZeroDivisionError, TypeError or struct.error
        (
            "text",
            lambda d, w: with_key(d, w, "general.alignment", VT.UINT32, struct.pack("<I", 0)),
            "data alignment \\(0\\) is not a 32-bit power of two",
        ),
        (
            "mmproj",
            lambda d, w: with_key(d, w, "general.alignment", VT.FLOAT32, struct.pack("<f", 32)),
            "data alignment \\(not a whole number\\)",
        ),
        ("mmproj", lambda d, w: with_key(d, w, "general.alignment", VT.STRING, string_payload("32")), "data alignment"),
        (
            "text",
            lambda d, w: put(d, w.entries["tokenizer.ggml.token_type"].array_count_at, "Q", 2**60 - 7),
            "is damaged: its header cannot be parsed \\(an array of 1,152,921,504,606,846,969 values\\)",
        ),
        (
            "mmproj",
            lambda d, w: put(d, w.entries["clip.vision.image_mean"].array_count_at, "Q", 1),
            "is (damaged|incomplete)",
        ),
        # llama.cpp maps the data straight from the file and aborts unless it is 32-byte aligned
        (
            "text",
            lambda d, w: with_key(d, w, "general.alignment", VT.UINT32, struct.pack("<I", 1)),
            "data alignment \\(1\\) is not a 32-bit power of two of at least 32",
        ),
    ],
    ids=[
        "alignment 0",
        "alignment as a float",
        "alignment as a string",
        "array count near 2^60",
        "array of one value",
        "alignment 1",
    ],
)
def test_damaged_headers_are_refused(tiny_pair, tmp_path, role, edit, problem):
    damaged = _header_edit(tiny_pair, tmp_path, role, edit)
    inspect = inspect_text_model if role == "text" else inspect_projector
    with pytest.raises(ModelFileError, match=f"^{damaged.name}: .*{problem}"):
        inspect(damaged)


# -- values llama.cpp or libmtmd abort the process on -------------------------------------------
# Each builder writes a damaged copy of one file of the tiny pair into a folder and returns it.


def _role(key: str) -> str:
    return "mmproj" if key.startswith("clip.") else "text"


def _source(pair: tuple[Path, Path], role: str) -> Path:
    return pair[0] if role == "text" else pair[1]


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _set(key: str, value: float):
    def build(pair, folder):
        source = _source(pair, _role(key))
        return _written(folder / f"set-{source.name}", with_value(source, key, value))

    return build


def _add(key: str, value_type: int, payload: bytes):
    def build(pair, folder):
        data = pair[0].read_bytes()
        return _written(folder / "added-key.gguf", with_key(data, layout(data, pair[0]), key, value_type, payload))

    return build


def _key_type(key: str, value_type: int):
    def build(pair, folder):
        source = _source(pair, _role(key))
        data = source.read_bytes()
        return _written(
            folder / f"retyped-{source.name}", put(data, layout(data, source).entries[key].type_at, "I", value_type)
        )

    return build


def _tensor_type(role: str, tensor: str, ggml_type: int):
    def build(pair, folder):
        source = _source(pair, role)
        data = source.read_bytes()
        info = next(t for t in layout(data, source).tensors if t.name == tensor)
        return _written(folder / f"retyped-{source.name}", put(data, info.type_at, "I", ggml_type))

    return build


def _as_f16(role: str, tensor: str):
    """A copy with one F32 tensor stored as F16 (its size changes, so the file is rewritten)."""

    def build(pair, folder):
        reader = gguf.GGUFReader(_source(pair, role))
        target = folder / f"f16-{_source(pair, role).name}"
        writer = gguf.GGUFWriter(target, arch=reader.get_field("general.architecture").contents())
        for field in reader.fields.values():
            if not field.name.startswith("GGUF.") and field.name != "general.architecture":
                sub_type = field.types[-1] if field.types[0] == VT.ARRAY else None
                writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub_type)
        for t in reader.tensors:
            if t.name == tensor:
                writer.add_tensor(t.name, np.asarray(t.data, np.float16))
            else:
                writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return target

    return build


def _duplicate_token(pair, folder) -> Path:
    """The text model with its token "b" renamed "a": two tokens with the same text."""
    field = gguf.GGUFReader(pair[0]).fields["tokenizer.ggml.tokens"]
    b = next(i for i in field.data if bytes(field.parts[i]) == b"b")
    at = field.offset + sum(part.nbytes for part in field.parts[:b])
    data = pair[0].read_bytes()
    return _written(folder / "duplicate-token.gguf", data[:at] + b"a" + data[at + 1 :])


def _grouped_heads(pair, folder) -> Path:
    """A consistent text model whose 3 key/value heads cannot serve 4 query heads evenly."""
    return write_text_model(folder / "kv3.gguf", TextShape(n_embd=64, n_layer=2, n_head=4, n_head_kv=3, n_ff=128))


# Each of these aborts or crashes the whole process inside llama.cpp or libmtmd when loaded:
# case -> (which file, builder, the problem the message names)
ABORTING = {
    "block_count 0": ("text", _set("llama.block_count", 0), "invalid layer count"),
    "block_count 2^31-1": ("text", _set("llama.block_count", 2**31 - 1), "invalid layer count"),
    "duplicate token": ("text", _duplicate_token, "1 token\\(s\\) appear twice"),
    "unknown RoPE scaling": (
        "text",
        _add("llama.rope.scaling.type", VT.STRING, string_payload("bogus")),
        "unknown RoPE scaling \\('bogus'\\)",
    ),
    "2000 experts": ("text", _add("llama.expert_count", VT.UINT32, struct.pack("<I", 2000)), "invalid expert count"),
    "experts used without experts": (
        "text",
        _add("llama.expert_used_count", VT.UINT32, struct.pack("<I", 2)),
        "impossible mixture-of-experts setup",
    ),
    "negative experts used per layer": (
        "text",
        _add("llama.expert_used_count", VT.ARRAY, struct.pack("<IQii", VT.INT32, 2, -1, 0)),
        "impossible mixture-of-experts setup",
    ),
    "more prediction layers than layers": (
        "text",
        _add("llama.nextn_predict_layers", VT.UINT32, struct.pack("<I", 5)),
        "invalid number of next-token prediction layers",
    ),
    "3 key/value heads for 4 heads": (
        "text",
        _grouped_heads,
        "3 key/value heads, which do not divide its 4 attention heads",
    ),
    "weights as I16": (
        "text",
        _tensor_type("text", "token_embd.weight", gguf.GGMLQuantizationType.I16),
        "stores the tensor 'token_embd.weight' as I16",
    ),
    "norm as F16": (
        "text",
        _as_f16("text", "blk.0.attn_norm.weight"),
        "stores the tensor 'blk.0.attn_norm.weight' as F16",
    ),
    "negative norm epsilon": (
        "text",
        _set("llama.attention.layer_norm_rms_epsilon", -1.0),
        "invalid normalization epsilon",
    ),
    "vision head_count 0": (
        "mmproj",
        _set("clip.vision.attention.head_count", 0),
        "invalid vision attention head count",
    ),
    "vision head_count 2^31-1": (
        "mmproj",
        _set("clip.vision.attention.head_count", 2**31 - 1),
        "invalid vision attention head count",
    ),
    "vision head_count 3": (
        "mmproj",
        _set("clip.vision.attention.head_count", 3),
        "3 vision attention heads of size 10, which do not make up its width \\(32\\)",
    ),
    "vision block_count 2^31-1": (
        "mmproj",
        _set("clip.vision.block_count", 2**31 - 1),
        "invalid vision layer count .* it must be 1 to 2",
    ),
    "tile size as a signed integer": (
        "mmproj",
        _key_type("clip.vision.image_size", VT.INT32),
        "stores 'clip.vision.image_size' as the wrong kind of value",
    ),
    "position embedding as F16": (
        "mmproj",
        _as_f16("mmproj", "v.position_embd.weight"),
        "stores the tensor 'v.position_embd.weight' as F16",
    ),
    "vision norm epsilon NaN": (
        "mmproj",
        _set("clip.vision.attention.layer_norm_epsilon", float("nan")),
        "invalid normalization epsilon",
    ),
    "preprocessing size 2^31-1": (
        "mmproj",
        _set("clip.vision.preproc_image_size", 2**31 - 1),
        "preprocessing size \\(2147483647\\)",
    ),
}


@pytest.mark.parametrize(
    "role, build, problem",
    [
        ("text", _key_type("llama.context_length", VT.INT32), "stores 'llama.context_length' as the wrong kind"),
        ("mmproj", _set("clip.vision.projection_dim", 2**32 - 1), "'clip.vision.projection_dim' = 4294967295"),
    ],
    ids=["text key of another type", "projector value beyond 32-bit signed"],
)
def test_files_llama_cpp_would_not_load_are_refused_up_front(tiny_pair, tmp_path, role, build, problem):
    """So the model list shows them as unusable instead of failing when they are loaded."""
    damaged = build(tiny_pair, tmp_path)
    inspect = inspect_text_model if role == "text" else inspect_projector
    with pytest.raises(ModelFileError, match=f"^{damaged.name}: .*{problem}"):
        inspect(damaged)


@pytest.mark.parametrize("case", ABORTING)
def test_values_that_abort_llama_cpp_are_refused(tiny_pair, tmp_path, case):
    role, build, problem = ABORTING[case]
    damaged = build(tiny_pair, tmp_path)
    inspect = inspect_text_model if role == "text" else inspect_projector
    with pytest.raises(ModelFileError, match=f"^{damaged.name}: .*{problem}"):
        inspect(damaged)


def test_a_process_given_those_files_survives(tiny_pair, images, tmp_path):
    pairs, damaged = [], []
    for i, (role, build, _) in enumerate(ABORTING.values()):
        folder = tmp_path / str(i)
        folder.mkdir()
        damaged.append(build(tiny_pair, folder))
        pairs.append((damaged[-1], tiny_pair[1]) if role == "text" else (tiny_pair[0], damaged[-1]))
    outcomes = load_in_child(pairs, images["small"], tmp_path, max_crashes=len(pairs))
    unsafe = [
        f"{case}: {outcome}"
        for case, path, outcome in zip(ABORTING, damaged, outcomes)
        if not outcome.startswith(f"refused: {path.name}: ")
    ]
    assert not unsafe, "\n".join(unsafe)
