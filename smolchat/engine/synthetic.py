"""Write SmolVLM-shaped GGUF pairs (text model + idefics3 mmproj) with random weights.

The files have the real architecture, tokenizer layout and metadata keys of SmolVLM, so
llama.cpp and libmtmd load and run them exactly as they run a downloaded model; only the
weights are noise. The self-test and the tests use the tiny shape (a few hundred KB,
answers in milliseconds); benchmarks use the SmolVLM-256M shape, whose speed matches the
real model's; the first-run measurement writes its probe models with it.

    python -m smolchat.engine.synthetic OUT_DIR --shape smolvlm-256m --text-type Q8_0
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import gguf
import numpy as np

from smolchat.engine import families
from smolchat.engine.families import PairShape, TextShape, VisionShape
from smolchat.engine.gguf_info import FILE_TYPE_NAMES
from smolchat.engine.prompt import SMOLVLM_CHAT_TEMPLATE

_LEADING_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_MAX_GRID = 6  # SmolVLM's tokenizer has <row_R_col_C> for R, C in 1..6
_IMAGE_SPECIALS = (
    ["<fake_token_around_image>", "<image>", "<global-img>"]
    + [f"<row_{r}_col_{c}>" for r in range(1, _MAX_GRID + 1) for c in range(1, _MAX_GRID + 1)]
    + ["<end_of_utterance>"]
)

TINY = PairShape(
    name="TinySmolVLM",
    text=TextShape(n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=128, n_ctx_train=4096),
    vision=VisionShape(
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_ff=48,
        image_size=32,
        patch_size=8,
        scale_factor=2,
        preproc_image_size=128,
    ),
)

SMOLVLM_256M = PairShape("SmolVLM-256M-Shaped", families.SMOLVLM_256M.text, families.SMOLVLM_256M.vision)

SHAPES = {"tiny": TINY, "smolvlm-256m": SMOLVLM_256M}

# general.file_type of the weight types this writer makes, from the GGUF reader's own table
_FILE_TYPES = {name: file_type for file_type, name in FILE_TYPE_NAMES.items() if name in ("F32", "F16", "Q8_0")}


def _byte_level_alphabet() -> list[str]:
    """The GPT-2 byte-to-unicode table: one printable character per byte value."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def build_vocab(n_vocab: int | None, base_tokenizer: Path | None = None) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges of a SmolVLM tokenizer.

    By default a minimal byte-level BPE vocabulary; with ``base_tokenizer`` (a GGUF of the
    SmolLM2 family, whose tokenizer SmolVLM extends) its real tokens and merges, so text
    tokenizes as it does for the real model. SmolVLM's image tokens are appended, and
    unused tokens fill the vocabulary up to ``n_vocab``.
    """
    if base_tokenizer is not None:
        from smolchat.engine.gguf_info import read_metadata

        meta = read_metadata(base_tokenizer)
        base = list(meta.get("tokenizer.ggml.tokens"))
        base_types = [int(t) for t in meta.get("tokenizer.ggml.token_type")]
        merges = list(meta.get("tokenizer.ggml.merges"))
    else:
        alphabet = _byte_level_alphabet()
        newline = alphabet[ord("\n")]
        # libmtmd looks "\n\n" up as ONE token when it lays out an image: it must be a merge.
        base = _LEADING_SPECIALS + alphabet + [newline + newline]
        base_types = [int(gguf.TokenType.CONTROL)] * len(_LEADING_SPECIALS) + [int(gguf.TokenType.NORMAL)] * (
            len(alphabet) + 1
        )
        merges = [f"{newline} {newline}"]
    specials = [t for t in _IMAGE_SPECIALS if t not in set(base)]
    n_needed = len(base) + len(specials)
    n_vocab = n_needed if n_vocab is None else n_vocab
    if n_vocab < n_needed:
        raise ValueError(f"this SmolVLM tokenizer needs at least {n_needed} tokens")
    fillers = [f"<unused_{i}>" for i in range(n_vocab - n_needed)]
    tokens = base + fillers + specials
    types = base_types + [int(gguf.TokenType.NORMAL)] * len(fillers) + [int(gguf.TokenType.CONTROL)] * len(specials)
    return tokens, types, merges


def _random(rng: np.random.Generator, shape: tuple[int, ...], std: float = 0.02) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float32)


def _add_weight(writer: gguf.GGUFWriter, name: str, data: np.ndarray, weight_type: str) -> None:
    """Add a 2-D weight in the requested type (norms and biases stay F32, as converters do)."""
    if weight_type == "F32":
        writer.add_tensor(name, data.astype(np.float32))
    elif weight_type == "F16":
        writer.add_tensor(name, data.astype(np.float16))
    elif weight_type == "Q8_0":
        qtype = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    else:
        raise ValueError(f"unsupported weight type {weight_type!r}")


def write_text_model(
    path: Path,
    shape: TextShape,
    *,
    weight_type: str = "F16",
    name: str = "TinySmolVLM",
    chat_template: str | None = SMOLVLM_CHAT_TEMPLATE,
    base_tokenizer: Path | None = None,
    seed: int = 0,
) -> Path:
    """A llama-architecture text model with SmolVLM's tokenizer layout and chat template."""
    rng = np.random.default_rng(seed)
    tokens, token_types, merges = build_vocab(shape.n_vocab, base_tokenizer)
    head_dim = shape.n_embd // shape.n_head
    n_embd_kv = head_dim * shape.n_head_kv

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name(name)
    w.add_file_type(_FILE_TYPES[weight_type])
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(shape.rope_freq_base)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<end_of_utterance>"))
    w.add_pad_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    ones = np.ones(shape.n_embd, dtype=np.float32)
    _add_weight(w, "token_embd.weight", _random(rng, (len(tokens), shape.n_embd)), weight_type)
    w.add_tensor("output_norm.weight", ones)
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        _add_weight(w, p + "attn_q.weight", _random(rng, (shape.n_embd, shape.n_embd)), weight_type)
        _add_weight(w, p + "attn_k.weight", _random(rng, (n_embd_kv, shape.n_embd)), weight_type)
        _add_weight(w, p + "attn_v.weight", _random(rng, (n_embd_kv, shape.n_embd)), weight_type)
        _add_weight(w, p + "attn_output.weight", _random(rng, (shape.n_embd, shape.n_embd)), weight_type)
        w.add_tensor(p + "ffn_norm.weight", ones)
        _add_weight(w, p + "ffn_gate.weight", _random(rng, (shape.n_ff, shape.n_embd)), weight_type)
        _add_weight(w, p + "ffn_up.weight", _random(rng, (shape.n_ff, shape.n_embd)), weight_type)
        _add_weight(w, p + "ffn_down.weight", _random(rng, (shape.n_embd, shape.n_ff)), weight_type)
    _write(w)
    return path


def write_mmproj(
    path: Path,
    shape: VisionShape,
    *,
    output_width: int,
    weight_type: str = "F16",
    name: str = "TinySmolVLM",
    projector_type: str = "idefics3",
    tensor_edits: Mapping[str, np.ndarray | None] = {},
    seed: int = 1,
) -> Path:
    """An idefics3 vision projector: a SigLIP encoder plus the pixel-shuffle projection.

    ``output_width`` is the embedding width of the text model it belongs to.
    ``tensor_edits`` replaces tensors by name (numpy shapes), or leaves them out (None).
    """
    rng = np.random.default_rng(seed)
    d, ff = shape.n_embd, shape.n_ff
    n_patches = (shape.image_size // shape.patch_size) ** 2

    w = gguf.GGUFWriter(str(path), arch="clip")
    w.add_name(name)
    w.add_file_type(_FILE_TYPES[weight_type])
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_text_encoder", False)
    w.add_string("clip.projector_type", projector_type)
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", shape.image_size)
    w.add_uint32("clip.vision.patch_size", shape.patch_size)
    w.add_uint32("clip.vision.embedding_length", d)
    w.add_uint32("clip.vision.feed_forward_length", ff)
    w.add_uint32("clip.vision.block_count", shape.n_layer)
    w.add_uint32("clip.vision.attention.head_count", shape.n_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_uint32("clip.vision.projection_dim", output_width)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_uint32("clip.vision.projector.scale_factor", shape.scale_factor)
    if shape.preproc_image_size is not None:
        w.add_uint32("clip.vision.preproc_image_size", shape.preproc_image_size)

    def vector(n: int, value: float | None = None) -> np.ndarray:
        if value is not None:
            return np.full(n, value, dtype=np.float32)
        return _random(rng, (n,))

    def put(name: str, data: np.ndarray, data_type: str = "F32") -> None:
        if name in tensor_edits:  # tests write damaged projectors this way
            edited = tensor_edits[name]
            if edited is None:
                return
            data = edited
        _add_weight(w, name, data, data_type)

    p = shape.patch_size
    # the patch convolution's rows (patch_size wide) are too short to quantize
    put("v.patch_embd.weight", _random(rng, (d, 3, p, p)), "F32" if weight_type == "F32" else "F16")
    put("v.patch_embd.bias", vector(d))
    put("v.position_embd.weight", _random(rng, (n_patches, d)))
    for i in range(shape.n_layer):
        b = f"v.blk.{i}."
        put(b + "ln1.weight", vector(d, 1.0))
        put(b + "ln1.bias", vector(d, 0.0))
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            put(b + proj + ".weight", _random(rng, (d, d)), weight_type)
            put(b + proj + ".bias", vector(d))
        put(b + "ln2.weight", vector(d, 1.0))
        put(b + "ln2.bias", vector(d, 0.0))
        put(b + "ffn_up.weight", _random(rng, (ff, d)), weight_type)
        put(b + "ffn_up.bias", vector(ff))
        put(b + "ffn_down.weight", _random(rng, (d, ff)), weight_type)
        put(b + "ffn_down.bias", vector(d))
    put("v.post_ln.weight", vector(d, 1.0))
    put("v.post_ln.bias", vector(d, 0.0))
    merged = d * shape.scale_factor**2
    put("mm.model.fc.weight", _random(rng, (output_width, merged)), weight_type)
    _write(w)
    return path


def _write(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_pair(
    out_dir: Path,
    shape: PairShape = TINY,
    *,
    text_type: str = "F16",
    mmproj_type: str = "F16",
    base_tokenizer: Path | None = None,
) -> tuple[Path, Path]:
    """Write ``{name}-{text_type}.gguf`` and ``mmproj-{name}-{mmproj_type}.gguf`` into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = write_text_model(
        out_dir / f"{shape.name}-{text_type}.gguf",
        shape.text,
        weight_type=text_type,
        name=shape.name,
        base_tokenizer=base_tokenizer,
    )
    mmproj = write_mmproj(
        out_dir / f"mmproj-{shape.name}-{mmproj_type}.gguf",
        shape.vision,
        output_width=shape.text.n_embd,
        weight_type=mmproj_type,
        name=shape.name,
    )
    return text, mmproj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--text-type", choices=sorted(_FILE_TYPES), default="F16")
    parser.add_argument("--mmproj-type", choices=("F16", "F32"), default="F16")
    parser.add_argument(
        "--tokenizer-from",
        type=Path,
        metavar="GGUF",
        help="take the tokenizer of this GGUF (e.g. SmolLM2-135M-Instruct) instead of a minimal one",
    )
    args = parser.parse_args(argv)
    text, mmproj = write_pair(
        args.out_dir,
        SHAPES[args.shape],
        text_type=args.text_type,
        mmproj_type=args.mmproj_type,
        base_tokenizer=args.tokenizer_from,
    )
    print(text)
    print(mmproj)
    return 0


__all__ = [
    "PairShape",
    "TextShape",
    "VisionShape",
    "TINY",
    "SMOLVLM_256M",
    "SHAPES",
    "build_vocab",
    "write_text_model",
    "write_mmproj",
    "write_pair",
]

if __name__ == "__main__":
    raise SystemExit(main())
