"""Reading and checking GGUF files before llama.cpp sees them.

llama.cpp answers a bad file with a terse log line or, for many shape values, by aborting the
whole process (a failed assertion ends the app, not just the load). So every file is read here
first (this module is the one reader of GGUF metadata in SmolChat) and refused with a message
that says what is wrong and what to do. The checks mirror what llama.cpp and libmtmd assume:
ggml's own header rules, the generic hyperparameters llama.cpp asserts on for any architecture,
and, for a projector, every key, shape and tensor type libmtmd's SigLIP graph relies on.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import gguf
import numpy as np

from smolchat.errors import SmolChatError
from smolchat.units import format_bytes, format_two_sizes

GGUF_MAGIC = b"GGUF"
PROJECTOR_ARCHITECTURE = "clip"
# SmolVLM and SmolVLM2 projectors: a SigLIP encoder with idefics3's pixel-shuffle projection.
SUPPORTED_PROJECTORS = frozenset({"idefics3"})

_DAMAGED = "The file is damaged or was converted wrongly; download it again."

# The formats SmolChat tells apart by a file's general.file_type (llama.cpp's llama_ftype):
# the float ones, which a projector can be converted between, and Q8_0.
FILE_TYPE_NAMES: dict[int, str] = {
    gguf.LlamaFileType.ALL_F32: "F32",
    gguf.LlamaFileType.MOSTLY_F16: "F16",
    gguf.LlamaFileType.MOSTLY_BF16: "BF16",
    gguf.LlamaFileType.MOSTLY_Q8_0: "Q8_0",
}


class ModelFileError(SmolChatError):
    """A model or projector file cannot be used; the message says why and what to do."""

    def __init__(self, path: str | os.PathLike[str], problem: str, advice: str = "") -> None:
        self.path = Path(path)
        self.problem = problem
        self.advice = advice
        message = f"{self.path.name}: {problem}"
        if advice:
            message += f" {advice}"
        super().__init__(message)

    def __reduce__(self):  # keep it picklable (it crosses process boundaries)
        return (type(self), (self.path, self.problem, self.advice))


@dataclass(frozen=True)
class TextModelInfo:
    path: Path
    size_bytes: int
    architecture: str
    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ctx_train: int
    n_vocab: int
    chat_template: str | None
    file_type: int | None

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def max_gpu_layers(self) -> int:
        """Layers a GPU can take: every block plus the output layer."""
        return self.n_layer + 1


@dataclass(frozen=True)
class ProjectorInfo:
    path: Path
    size_bytes: int
    projector_type: str
    output_width: int
    n_embd: int
    n_layer: int
    image_size: int
    patch_size: int
    scale_factor: int
    preproc_image_size: int | None
    file_type: int | None

    @property
    def tokens_per_tile(self) -> int:
        return (self.image_size // self.patch_size) ** 2 // self.scale_factor**2


class GGUFMetadata:
    """The key/value metadata and tensor table of one GGUF file.

    Strings are decoded as UTF-8 (undecodable bytes replaced; in string arrays such as the
    vocabulary they are kept, so distinct tokens stay distinct). Numeric arrays are numpy arrays.
    """

    def __init__(
        self,
        path: Path,
        fields: dict[str, Any],
        field_types: dict[str, tuple[int, ...]],
        tensors: dict[str, tuple[int, ...]],
        tensor_types: dict[str, int],
    ):
        self.path = path
        self.fields = fields
        self.field_types = field_types  # key -> (value type,) or (ARRAY, element type)
        self.tensors = tensors  # name -> shape in ggml order (ne)
        self.tensor_types = tensor_types  # name -> ggml type

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def integer(self, key: str, what: str, low: int, high: int | None = None) -> int:
        """The integer value of ``key``, refused unless it is there and ``low <= value <= high``."""
        value = self.optional_integer(key, what, low, high)
        if value is None:
            raise ModelFileError(
                self.path,
                f"is missing {what} ('{key}').",
                "The file was not converted completely; get a fresh copy of the model.",
            )
        return value

    def optional_integer(self, key: str, what: str, low: int, high: int | None = None) -> int | None:
        """Like ``integer``, but None when the file does not have ``key``."""
        value = self.fields.get(key)
        if value is None:
            return None
        if not _is_int(value):
            raise ModelFileError(self.path, f"has {what} that is not a whole number ('{key}').", _DAMAGED)
        if value < low or (high is not None and value > high):
            allowed = f"at least {low}" if high is None else f"{low} to {high}"
            raise ModelFileError(
                self.path, f"has an invalid {what} ('{key}' = {value}; it must be {allowed}).", _DAMAGED
            )
        return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Truncated(Exception):
    pass


class _Damaged(Exception):
    """The header breaks the GGUF format; the message says how."""


_VT = gguf.GGUFValueType
_SCALARS = {
    _VT.UINT8: "B",
    _VT.INT8: "b",
    _VT.UINT16: "H",
    _VT.INT16: "h",
    _VT.UINT32: "I",
    _VT.INT32: "i",
    _VT.FLOAT32: "f",
    _VT.BOOL: "?",
    _VT.UINT64: "Q",
    _VT.INT64: "q",
    _VT.FLOAT64: "d",
}
_SCALAR_STRUCTS: dict[int, struct.Struct] = {vtype: struct.Struct("<" + fmt) for vtype, fmt in _SCALARS.items()}
_ARRAY_DTYPES: dict[int, np.dtype] = {vtype: np.dtype("<" + fmt.replace("?", "u1")) for vtype, fmt in _SCALARS.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# ggml's limits: tensors have at most 4 dimensions, names fit 64 bytes with their NUL, sizes are int64
_MAX_DIMS = 4
_MAX_NAME_BYTES = 63
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1
_MIN_ALIGNMENT = 32
_MAX_ITEMS = 2**30  # the most values in an array, and bytes in a string
# smallest possible header entries, to bound counts by the bytes left before allocating anything
_MIN_KV_BYTES = 8 + 4  # key length, value type
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, dimension count, type, offset


class _HeaderParser:
    """A GGUF header reader that walks the bytes once.

    gguf.GGUFReader builds a numpy view per array element: 1.5 s for a SmolVLM vocabulary
    (49k tokens and as many merges). This reads the same header in about 25 ms, which matters
    when a model is loaded or a model list is shown. Value types and tensor block sizes come
    from the gguf package, so both readers agree on the format. Every count is checked against
    the bytes left in the file before anything is read or allocated for it.
    """

    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.size = len(buf)
        self.pos = 0

    def unpack(self, fmt: struct.Struct) -> Any:
        if self.pos + fmt.size > self.size:
            raise _Truncated
        (value,) = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return value

    def fit(self, count: int, item_bytes: int) -> None:
        """Refuse ``count`` items of at least ``item_bytes`` each that cannot be in the rest of the file."""
        if count > _MAX_ITEMS:
            raise _Damaged(f"an array of {count:,} values")
        if count * item_bytes > self.size - self.pos:
            raise _Truncated

    def raw_string(self) -> bytes:
        n = self.unpack(_U64)
        end = self.pos + n
        if n > _MAX_ITEMS:
            raise _Damaged(f"a string of {n:,} bytes")
        if end > self.size:
            raise _Truncated
        data = self.buf[self.pos : end]
        self.pos = end
        return data

    def strings(self, count: int) -> list[str]:
        """``count`` strings, undecodable bytes kept (the loop of a vocabulary: kept tight)."""
        self.fit(count, 8)
        buf, pos, size, unpack_length = self.buf, self.pos, self.size, _U64.unpack_from
        out = []
        for _ in range(count):
            if pos + 8 > size:
                raise _Truncated
            (n,) = unpack_length(buf, pos)
            pos += 8
            if pos + n > size:
                raise _Damaged(f"a string of {n:,} bytes") if n > _MAX_ITEMS else _Truncated
            out.append(buf[pos : pos + n].decode("utf-8", errors="surrogateescape"))
            pos += n
        self.pos = pos
        return out

    def value(self, vtype: int) -> tuple[Any, tuple[int, ...]]:
        """A value of type ``vtype`` and its type signature: (type,) or (ARRAY, element type)."""
        if vtype == _VT.STRING:
            return self.raw_string().decode("utf-8", errors="replace"), (vtype,)
        if vtype == _VT.ARRAY:
            etype = self.unpack(_U32)
            count = self.unpack(_U64)
            if etype == _VT.STRING:
                return self.strings(count), (vtype, etype)
            dtype = _ARRAY_DTYPES.get(etype)
            if dtype is None:
                raise _Damaged(f"an array holds values of unknown type {etype}")
            self.fit(count, dtype.itemsize)
            values = np.frombuffer(self.buf, dtype, count, self.pos).copy()  # a copy: the file is closed after
            self.pos += count * dtype.itemsize
            return (values != 0 if etype == _VT.BOOL else values), (vtype, etype)
        scalar = _SCALAR_STRUCTS.get(vtype)
        if scalar is None:
            raise _Damaged(f"a value has unknown type {vtype}")
        return self.unpack(scalar), (vtype,)


def read_metadata(path: str | os.PathLike[str]) -> GGUFMetadata:
    """Parse a GGUF file's header, refusing anything that is not a complete, well-formed GGUF file."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "does not exist.", "Check the path.")
    if path.is_dir():
        raise ModelFileError(path, "is a folder, not a GGUF file.")
    size = 0
    try:
        # O_NONBLOCK: a FIFO under a model's name must not block the opening forever
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ModelFileError(path, "is not a regular file, so it cannot be a GGUF model.")
            size = info.st_size
            if os.read(fd, len(GGUF_MAGIC)) != GGUF_MAGIC:
                raise ModelFileError(
                    path,
                    "is not a GGUF file.",
                    "SmolChat runs llama.cpp models: pick a .gguf file (for example SmolVLM-256M-Instruct-Q8_0.gguf).",
                )
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as buf:
                meta, data_end = _parse(path, buf)
        finally:
            os.close(fd)
    except OSError as e:
        raise ModelFileError(path, f"cannot be read ({e.strerror or e}).") from e
    except _Truncated:
        raise ModelFileError(
            path,
            f"is incomplete: its header runs past the end of the file ({format_bytes(size)}).",
            "A download that stopped early looks like this; download the file again.",
        ) from None
    except _Damaged as e:
        raise ModelFileError(
            path, f"is damaged: its header cannot be parsed ({e}).", "Download the file again."
        ) from None
    if data_end > size:
        should_hold, has = format_two_sizes(data_end, size)
        raise ModelFileError(
            path,
            f"is incomplete: it should hold {should_hold} but has {has}.",
            "A download that stopped early looks like this; download the file again.",
        )
    return meta


def _parse(path: Path, buf: mmap.mmap) -> tuple[GGUFMetadata, int]:
    """The metadata, and where the last tensor's data ends. The rules are ggml's own: whatever
    passes here, ggml's reader accepts too."""
    p = _HeaderParser(buf)
    p.pos = len(GGUF_MAGIC)
    version = p.unpack(_U32)
    if version not in (2, 3):
        raise _Damaged(f"unsupported GGUF version {version}")
    n_tensors = p.unpack(_U64)
    n_kv = p.unpack(_U64)
    p.fit(n_kv, _MIN_KV_BYTES)
    fields: dict[str, Any] = {}
    field_types: dict[str, tuple[int, ...]] = {}
    seen: set[bytes] = set()
    for _ in range(n_kv):
        raw_key = p.raw_string()
        if not raw_key or raw_key in seen:
            raise _Damaged("an empty key" if not raw_key else f"the key '{_shown(_text(raw_key))}' appears twice")
        seen.add(raw_key)
        key = _text(raw_key)
        fields[key], field_types[key] = p.value(p.unpack(_U32))
    alignment = _alignment(fields, field_types)

    p.fit(n_tensors, _MIN_TENSOR_INFO_BYTES)
    infos = []
    seen.clear()
    for _ in range(n_tensors):
        raw_name = p.raw_string()
        name = _text(raw_name)
        if len(raw_name) > _MAX_NAME_BYTES:
            raise _Damaged(f"the tensor name '{_shown(name)}' is too long")
        if raw_name in seen:
            raise _Damaged(f"the tensor '{name}' appears twice")
        seen.add(raw_name)
        n_dims = p.unpack(_U32)
        if n_dims > _MAX_DIMS:
            raise _Damaged(f"the tensor '{name}' has {n_dims} dimensions")
        shape = tuple(p.unpack(_U64) for _ in range(n_dims))
        infos.append((name, shape, p.unpack(_U32), p.unpack(_U64)))
    data_start = -(-p.pos // alignment) * alignment if n_tensors else p.pos

    tensors: dict[str, tuple[int, ...]] = {}
    tensor_types: dict[str, int] = {}
    expected_offset = data_end = 0
    for name, shape, ggml_type, offset in infos:
        n_bytes = _tensor_bytes(name, shape, ggml_type)
        if offset != expected_offset:  # ggml wants the tensors' data packed in order, each aligned
            raise _Damaged(f"the data of tensor '{name}' is not where the tensors before it end")
        expected_offset += -(-n_bytes // alignment) * alignment
        data_end = data_start + offset + n_bytes
        tensors[name], tensor_types[name] = shape, ggml_type
    return GGUFMetadata(path, fields, field_types, tensors, tensor_types), max(data_end, data_start)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _alignment(fields: dict[str, Any], field_types: dict[str, tuple[int, ...]]) -> int:
    """ggml reads a 32-bit power of two; llama.cpp maps tensor data straight from the file and
    aborts unless it starts on a multiple of 32 bytes, which only an alignment of 32 or more ensures."""
    key = gguf.Keys.General.ALIGNMENT
    if key not in fields:
        return gguf.GGUF_DEFAULT_ALIGNMENT
    value = fields[key]
    if field_types[key] != (_VT.UINT32,) or value < _MIN_ALIGNMENT or value & (value - 1):
        shown = value if _is_int(value) else "not a whole number"
        raise _Damaged(f"its data alignment ({shown}) is not a 32-bit power of two of at least {_MIN_ALIGNMENT}")
    return value


def _tensor_bytes(name: str, shape: tuple[int, ...], ggml_type: int) -> int:
    try:
        kind = gguf.GGMLQuantizationType(ggml_type)
        block, type_size = gguf.GGML_QUANT_SIZES[kind]
    except (ValueError, KeyError):
        raise _Damaged(f"the tensor '{name}' has an unknown type ({ggml_type})") from None
    n_elements = 1
    for n in shape:
        n_elements *= n
        if n > _INT64_MAX or n_elements > _INT64_MAX:
            raise _Damaged(f"the tensor '{name}' has an impossible shape {list(shape)}")
    if (shape[0] if shape else 1) % block:
        raise _Damaged(f"the rows of tensor '{name}' do not fill whole {kind.name} blocks")
    return n_elements // block * type_size


# Weights ggml computes with: matrices in any type its matrix product has CPU kernels for;
# vectors (norms, biases), which it adds and multiplies element by element, in F32 only, as
# every converter writes them. Anything else aborts the process in the middle of a turn.
_MATRIX_TYPES = frozenset(gguf.GGMLQuantizationType) - {
    gguf.GGMLQuantizationType[name] for name in ("Q8_1", "Q8_K", "I8", "I16", "I32", "I64", "F64")
}
_F32 = frozenset({gguf.GGMLQuantizationType.F32})


def _check_key_types(meta: GGUFMetadata, kinds: dict[str, frozenset[tuple[int, ...]]]) -> None:
    for key, allowed in kinds.items():
        if key in meta.field_types and meta.field_types[key] not in allowed:
            raise ModelFileError(meta.path, f"stores '{key}' as the wrong kind of value.", _DAMAGED)


def _check_norm_epsilons(meta: GGUFMetadata, prefix: str) -> None:
    """ggml's normalizations assert that their epsilon is not negative (NaN fails that too)."""
    for key, value in meta.fields.items():
        if key.startswith(prefix) and key.endswith("_epsilon") and isinstance(value, float) and not value >= 0:
            raise ModelFileError(
                meta.path, f"has an invalid normalization epsilon ('{_shown(key)}' = {value}).", _DAMAGED
            )


def _check_tensor_type(meta: GGUFMetadata, name: str, allowed: frozenset[int], user: str) -> None:
    if meta.tensor_types[name] not in allowed:
        kind = gguf.GGMLQuantizationType(meta.tensor_types[name]).name
        raise ModelFileError(
            meta.path, f"stores the tensor '{name}' as {kind}, which {user} cannot compute with.", _DAMAGED
        )


# -- text models -------------------------------------------------------------------------------

# llama.cpp asserts on these for any architecture while it reads the hyperparameters
_LLAMA_MAX_LAYERS = 512
_LLAMA_MAX_EXPERTS = 1024
_ROPE_SCALING_TYPES = frozenset({"none", "linear", "yarn", "longrope"})
# llama.cpp refuses a model whose generic keys hold another kind of value: key -> the kinds it takes
_SCALAR_U32 = frozenset({(_VT.UINT32,)})
_PER_LAYER_U32 = frozenset({(_VT.UINT32,), (_VT.ARRAY, _VT.UINT32), (_VT.ARRAY, _VT.INT32)})
_LLAMA_KEY_TYPES = {
    **dict.fromkeys(
        [
            f"{{arch}}.{name}"
            for name in (
                "context_length",
                "embedding_length",
                "block_count",
                "vocab_size",
                "rope.dimension_count",
                "attention.key_length",
                "attention.value_length",
                "expert_count",
                "expert_group_count",
                "expert_group_used_count",
                "nextn_predict_layers",
            )
        ]
        + ["general.file_type"]
        + [
            f"tokenizer.ggml.{name}_token_id"
            for name in (
                "bos",
                "eos",
                "eot",
                "eom",
                "unknown",
                "seperator",
                "padding",
                "mask",
                "fim_pre",
                "fim_suf",
                "fim_mid",
                "fim_pad",
                "fim_rep",
                "fim_sep",
                "prefix",
                "suffix",
                "middle",
            )
        ],
        _SCALAR_U32,
    ),
    **dict.fromkeys(
        [
            f"{{arch}}.{name}"
            for name in ("feed_forward_length", "attention.head_count", "attention.head_count_kv", "expert_used_count")
        ],
        _PER_LAYER_U32,
    ),
    **dict.fromkeys(
        [
            f"{{arch}}.{name}"
            for name in (
                "rope.freq_base",
                "rope.scaling.factor",
                "attention.layer_norm_epsilon",
                "attention.layer_norm_rms_epsilon",
            )
        ],
        frozenset({(_VT.FLOAT32,)}),
    ),
    **dict.fromkeys(
        [
            "general.name",
            "{arch}.rope.scaling.type",
            "tokenizer.ggml.model",
            "tokenizer.ggml.pre",
            "tokenizer.chat_template",
        ],
        frozenset({(_VT.STRING,)}),
    ),
    **dict.fromkeys([f"tokenizer.ggml.add_{name}_token" for name in ("bos", "eos", "sep")], frozenset({(_VT.BOOL,)})),
    "tokenizer.ggml.token_type": frozenset({(_VT.ARRAY, _VT.INT32)}),
    "tokenizer.ggml.scores": frozenset({(_VT.ARRAY, _VT.FLOAT32), (_VT.ARRAY, _VT.INT32)}),
    "tokenizer.ggml.merges": frozenset({(_VT.ARRAY, _VT.STRING)}),
}
# sub-stacks that must not have more layers than the model: key suffix -> what it counts
_SUB_LAYER_COUNTS = {
    "nextn_predict_layers": "next-token prediction layers",
    "posnet.block_count": "PosNet layers",
    "convnext.block_count": "ConvNeXt layers",
}


def inspect_text_model(path: str | os.PathLike[str]) -> TextModelInfo:
    meta = read_metadata(path)
    arch = meta.get(gguf.Keys.General.ARCHITECTURE)
    if arch == PROJECTOR_ARCHITECTURE:
        raise ModelFileError(
            meta.path,
            "is a vision projector (mmproj), not a text model.",
            "Use it as the projector, and as the model choose the file without 'mmproj' in its name.",
        )
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(
            meta.path, "does not say which architecture it is.", "It is probably not a llama.cpp model."
        )
    _check_key_types(meta, {key.format(arch=arch): kinds for key, kinds in _LLAMA_KEY_TYPES.items()})
    n_vocab = _check_vocabulary(meta)
    for name, shape in meta.tensors.items():
        _check_tensor_type(meta, name, _F32 if len(shape) <= 1 else _MATRIX_TYPES, "llama.cpp")
    n_layer = meta.integer(f"{arch}.block_count", "layer count", 1, _LLAMA_MAX_LAYERS)
    n_embd = meta.integer(f"{arch}.embedding_length", "embedding width", 1)
    n_head, n_head_kv = _attention_heads(meta, arch, n_embd, n_layer)
    for suffix, what in _SUB_LAYER_COUNTS.items():
        meta.optional_integer(f"{arch}.{suffix}", f"number of {what}", 0, n_layer)
    _check_experts(meta, arch)
    _check_norm_epsilons(meta, f"{arch}.")
    rope_scaling = meta.get(f"{arch}.rope.scaling.type")
    if rope_scaling is not None and rope_scaling not in _ROPE_SCALING_TYPES:
        raise ModelFileError(meta.path, f"asks for an unknown RoPE scaling ('{_shown(rope_scaling)}').", _DAMAGED)
    n_ctx_train = meta.get(f"{arch}.context_length")
    template = meta.get(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    name = meta.get(gguf.Keys.General.NAME)
    return TextModelInfo(
        path=meta.path,
        size_bytes=meta.path.stat().st_size,
        architecture=arch,
        name=name if isinstance(name, str) and name else meta.path.stem,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ctx_train=n_ctx_train if _is_int(n_ctx_train) and n_ctx_train > 0 else 0,
        n_vocab=n_vocab,
        chat_template=template if isinstance(template, str) and template else None,
        file_type=_file_type(meta),
    )


def _check_vocabulary(meta: GGUFMetadata) -> int:
    """The vocabulary size, once the token list is one llama.cpp can hold."""
    tokens = meta.get(gguf.Keys.Tokenizer.LIST)
    if meta.field_types.get(gguf.Keys.Tokenizer.LIST) != (_VT.ARRAY, _VT.STRING) or not tokens:
        raise ModelFileError(meta.path, "has no tokenizer.", "Get a complete copy of the model.")
    # llama.cpp names empty tokens "[EMPTY_<id>]" and aborts when two tokens have the same text
    words = {token or f"[EMPTY_{i}]" for i, token in enumerate(tokens)}
    if len(words) != len(tokens):
        raise ModelFileError(
            meta.path, f"has a vocabulary in which {len(tokens) - len(words)} token(s) appear twice.", _DAMAGED
        )
    # tokenizing a prompt aborts when the model asks for a special token it does not have
    for flag, id_key, what in (
        (gguf.Keys.Tokenizer.ADD_BOS, gguf.Keys.Tokenizer.BOS_ID, "beginning-of-text"),
        (gguf.Keys.Tokenizer.ADD_EOS, gguf.Keys.Tokenizer.EOS_ID, "end-of-text"),
        (gguf.Keys.Tokenizer.ADD_SEP, gguf.Keys.Tokenizer.SEP_ID, "separator"),
    ):
        if meta.get(flag) is True:
            meta.integer(id_key, f"{what} token id", 0, len(tokens) - 1)
    return len(tokens)


def _attention_heads(meta: GGUFMetadata, arch: str, n_embd: int, n_layer: int) -> tuple[int, int]:
    """Query and key/value head counts (the largest per layer), checked as attention uses them:
    key/value heads are shared by whole groups of query heads."""
    n_head = meta.integer(f"{arch}.attention.head_count", "attention head count", 1, n_embd)
    key = f"{arch}.attention.head_count_kv"
    kv = meta.get(key, n_head)
    per_layer = kv.tolist() if isinstance(kv, np.ndarray) and kv.dtype.kind in "iu" else None
    if per_layer is not None:  # hybrid models: 0 for layers without attention
        if len(per_layer) != n_layer or any(v != 0 and (v < 0 or n_head % v) for v in per_layer) or not any(per_layer):
            raise ModelFileError(
                meta.path,
                f"has per-layer key/value head counts that do not fit its {n_head} attention heads ('{key}').",
                _DAMAGED,
            )
        return n_head, max(per_layer)
    n_head_kv = meta.integer(key, "key/value head count", 1, n_head)
    if n_head % n_head_kv:
        raise ModelFileError(
            meta.path, f"has {n_head_kv} key/value heads, which do not divide its {n_head} attention heads.", _DAMAGED
        )
    return n_head, n_head_kv


def _check_experts(meta: GGUFMetadata, arch: str) -> None:
    """Mixture-of-experts counts, as llama.cpp asserts on them for every architecture."""
    n_expert = meta.optional_integer(f"{arch}.expert_count", "expert count", 0, _LLAMA_MAX_EXPERTS) or 0
    used_key = f"{arch}.expert_used_count"
    used = meta.get(used_key)
    if isinstance(used, np.ndarray) and used.dtype.kind in "iu":  # per layer, read as unsigned: the largest
        used = max((v % 2**32 for v in used.tolist()), default=0)
    else:
        used = meta.optional_integer(used_key, "count of experts used per token", 0) or 0
    groups = meta.optional_integer(f"{arch}.expert_group_count", "expert group count", 0) or 0
    groups_used = meta.optional_integer(f"{arch}.expert_group_used_count", "count of expert groups used", 0) or 0
    if n_expert:
        consistent = (
            0 < used <= n_expert
            and groups < n_expert
            and (groups <= 1 or (n_expert % groups == 0 and 0 < groups_used < groups))
        )
    else:
        consistent = used == 0 and groups == 0
    if not consistent:
        raise ModelFileError(
            meta.path,
            f"has an impossible mixture-of-experts setup ({n_expert} experts, {used} used per token, "
            f"{groups} groups, {groups_used} used).",
            _DAMAGED,
        )


# -- projectors --------------------------------------------------------------------------------

# libmtmd reads these keys without checking their type, and aborts the process when it differs
_LIBMTMD_KEY_TYPES = {
    **dict.fromkeys(
        [
            "general.name",
            "general.description",
            "clip.projector_type",
            "clip.vision.projector_type",
            "clip.vision.mm_patch_merge_type",
        ],
        _VT.STRING,
    ),
    **dict.fromkeys(
        [
            "clip.has_vision_encoder",
            "clip.has_audio_encoder",
            "clip.has_gen_audio_encoder",
            "clip.use_gelu",
            "clip.use_silu",
        ],
        _VT.BOOL,
    ),
    **dict.fromkeys(
        [
            f"clip.vision.{name}"
            for name in (
                "embedding_length",
                "feed_forward_length",
                "block_count",
                "projection_dim",
                "attention.head_count",
                "attention.head_count_kv",
                "attention.head_dim",
                "image_size",
                "patch_size",
                "projector.scale_factor",
                "preproc_image_size",
            )
        ]
        + ["clip.minicpmv_query_num"],
        _VT.UINT32,
    ),
    "clip.vision.attention.layer_norm_epsilon": _VT.FLOAT32,
    "clip.minicpmv_version": _VT.INT32,
}
# libmtmd refuses larger tiles (the patch count per tile would overflow)
_MAX_TILE_SIZE = 8192
# a preprocessing size cuts an image into at most this many tiles per side
_MAX_TILES_PER_SIDE = 16
_CONV_TYPES = frozenset({gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16})


def inspect_projector(path: str | os.PathLike[str]) -> ProjectorInfo:
    meta = read_metadata(path)
    arch = meta.get(gguf.Keys.General.ARCHITECTURE)
    if arch != PROJECTOR_ARCHITECTURE:
        raise ModelFileError(
            meta.path,
            f"is a text model ({_shown(arch)}), not a vision projector (mmproj).",
            "Use it as the model, and as the projector choose the file whose name starts with 'mmproj'.",
        )
    _check_key_types(meta, {key: frozenset({(kind,)}) for key, kind in _LIBMTMD_KEY_TYPES.items()})
    for key, kind in _LIBMTMD_KEY_TYPES.items():
        if kind == _VT.UINT32:  # libmtmd reads them into signed 32-bit integers
            meta.optional_integer(key, "value", 0, _INT32_MAX)
    _check_libmtmd_requirements(meta)
    if meta.get("clip.has_vision_encoder") is not True:
        raise ModelFileError(
            meta.path, "has no vision encoder, so it cannot read images.", "Choose the model's image projector."
        )
    if meta.get("clip.has_audio_encoder") or meta.get("clip.has_gen_audio_encoder"):
        raise ModelFileError(meta.path, "also holds an audio encoder, which SmolVLM projectors do not have.", _DAMAGED)
    projector = meta.get("clip.projector_type") or meta.get("clip.vision.projector_type")
    if projector not in SUPPORTED_PROJECTORS:
        raise ModelFileError(
            meta.path,
            f"uses the projector type '{_shown(projector)}', which SmolChat does not support.",
            "SmolChat runs SmolVLM and SmolVLM2 models (projector type idefics3).",
        )
    shape = _vision_shape(meta)
    _check_norm_epsilons(meta, "clip.vision.")
    _check_idefics3_tensors(meta, shape)
    return ProjectorInfo(
        path=meta.path,
        size_bytes=meta.path.stat().st_size,
        projector_type=projector,
        output_width=meta.tensors["mm.model.fc.weight"][1],
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        scale_factor=shape.scale_factor,
        preproc_image_size=shape.preproc_image_size or None,
        file_type=_file_type(meta),
    )


def _check_libmtmd_requirements(meta: GGUFMetadata) -> None:
    """What libmtmd refuses to load a vision projector without (besides the shape values)."""
    v = "clip.vision."
    meta.integer(v + "projection_dim", "projection width", 0)
    if not isinstance(meta.get(v + "attention.layer_norm_epsilon"), float):
        raise ModelFileError(
            meta.path, f"is missing the normalization epsilon ('{v}attention.layer_norm_epsilon').", _DAMAGED
        )
    for key in (v + "image_mean", v + "image_std"):
        if meta.field_types.get(key) != (_VT.ARRAY, _VT.FLOAT32) or len(meta.fields[key]) < 3:
            raise ModelFileError(meta.path, f"lacks the three colour channels of '{key}'.", _DAMAGED)


@dataclass(frozen=True)
class _VisionShape:
    n_embd: int
    n_ff: int
    n_layer: int
    head_dim: int
    n_head_kv: int
    image_size: int
    patch_size: int
    scale_factor: int
    preproc_image_size: int


def _vision_shape(meta: GGUFMetadata) -> _VisionShape:
    """The encoder's hyperparameters, each in the range libmtmd's graph and image slicing work with."""
    v = "clip.vision."
    n_embd = meta.integer(v + "embedding_length", "vision width", 1)
    n_ff = meta.integer(v + "feed_forward_length", "vision FFN width", 1)
    # every layer's tensors must be there (checked below); counting them first bounds the checks
    layers_present = len({name.split(".")[2] for name in meta.tensors if name.startswith("v.blk.")})
    n_layer = meta.integer(v + "block_count", "vision layer count", 1, max(1, layers_present))
    n_head = meta.integer(v + "attention.head_count", "vision attention head count", 1, n_embd)
    head_dim = meta.optional_integer(v + "attention.head_dim", "vision attention head size", 1) or n_embd // n_head
    if head_dim * n_head != n_embd:
        raise ModelFileError(
            meta.path,
            f"has {n_head} vision attention heads of size {head_dim}, which do not make up its width ({n_embd}).",
            _DAMAGED,
        )
    n_head_kv = meta.optional_integer(v + "attention.head_count_kv", "vision key/value head count", 1, n_head) or n_head
    if n_head % n_head_kv:
        raise ModelFileError(
            meta.path,
            f"has {n_head_kv} vision key/value heads, which do not divide its {n_head} attention heads.",
            _DAMAGED,
        )
    image_size = meta.integer(v + "image_size", "tile size", 1, _MAX_TILE_SIZE)
    patch_size = meta.integer(v + "patch_size", "patch size", 1, image_size)
    scale_factor = meta.integer(v + "projector.scale_factor", "projector scale factor", 2)
    # Patches per side need not fill the tile (SmolVLM-2.2B: 384 px, patch 14, so 27 patches and
    # 6 px unused), but the pixel shuffle must divide them.
    if (image_size // patch_size) % scale_factor:
        raise ModelFileError(
            meta.path,
            f"has a tile size ({image_size}) whose patches (size {patch_size}) the scale "
            f"factor ({scale_factor}) does not divide.",
            _DAMAGED,
        )
    # images are scaled to this size, then cut into tiles; 0 (or no key): by their own size
    preproc = meta.optional_integer(v + "preproc_image_size", "preprocessing size", 0) or 0
    largest = min(_MAX_TILE_SIZE, _MAX_TILES_PER_SIDE * image_size)
    if preproc and not image_size <= preproc <= largest:
        raise ModelFileError(
            meta.path,
            f"has a preprocessing size ({preproc}) that does not fit its {image_size} px tiles "
            f"(it must be {image_size} to {largest}).",
            _DAMAGED,
        )
    return _VisionShape(n_embd, n_ff, n_layer, head_dim, n_head_kv, image_size, patch_size, scale_factor, preproc)


def _check_idefics3_tensors(meta: GGUFMetadata, s: _VisionShape) -> None:
    """The tensors libmtmd's SigLIP graph uses, exactly: each one present, in the shape and type
    the graph assumes, and no other vision tensor (libmtmd would pick up optional ones).

    A missing patch embedding or attention weight crashes libmtmd, and a wrongly shaped or
    typed one makes ggml abort the process, so all of them are refused here.
    """
    d, p = s.n_embd, s.patch_size
    n_patches = (s.image_size // p) ** 2
    expected: dict[str, tuple[tuple[int | None, ...], frozenset[int]]] = {
        "v.patch_embd.weight": ((p, p, 3, d), _CONV_TYPES),
        "v.patch_embd.bias": ((d,), _F32),
        "v.position_embd.weight": ((d, n_patches), _F32),
        "v.post_ln.weight": ((d,), _F32),
        "v.post_ln.bias": ((d,), _F32),
        "mm.model.fc.weight": ((d * s.scale_factor**2, None), _MATRIX_TYPES),  # None: any output width
    }
    kv_width = s.head_dim * s.n_head_kv
    for i in range(s.n_layer):
        b = f"v.blk.{i}."
        if b + "attn_qkv.weight" in meta.tensors:  # fused: libmtmd cuts it into three d-wide parts
            projections = {"attn_qkv": 3 * d}
        else:
            projections = {"attn_q": d, "attn_k": kv_width, "attn_v": kv_width}
        # converters disagree on which of up/down is which: libmtmd accepts either order
        up = meta.tensors.get(b + "ffn_up.weight")
        ff_in, ff_out = (s.n_ff, d) if up is not None and up[:1] == (s.n_ff,) else (d, s.n_ff)
        matrices = {
            **{name: (d, width) for name, width in projections.items()},
            "attn_out": (d, d),
            "ffn_up": (ff_in, ff_out),
            "ffn_down": (ff_out, ff_in),
        }
        for name, (width_in, width_out) in matrices.items():
            expected[f"{b}{name}.weight"] = ((width_in, width_out), _MATRIX_TYPES)
            expected[f"{b}{name}.bias"] = ((width_out,), _F32)
        for norm in ("ln1", "ln2"):
            expected[f"{b}{norm}.weight"] = ((d,), _F32)
            expected[f"{b}{norm}.bias"] = ((d,), _F32)
    for name, (shape, types) in expected.items():
        actual = meta.tensors.get(name)
        if actual is None:
            _bad_tensor(meta, f"lacks the tensor '{name}' that SmolVLM's vision encoder needs.")
        padded = actual + (1,) * (_MAX_DIMS - len(actual))
        wanted = shape + (1,) * (_MAX_DIMS - len(shape))
        if any(got < 1 if want is None else got != want for want, got in zip(wanted, padded)):
            _bad_tensor(meta, f"has a wrongly shaped tensor ({list(actual)}) '{name}' in its vision encoder.")
        _check_tensor_type(meta, name, types, "its vision encoder")
    for name in meta.tensors:
        if name.startswith(("v.", "mm.")) and name not in expected:
            _bad_tensor(meta, f"has a tensor '{name}' that SmolVLM's vision encoder does not have.")


def _bad_tensor(meta: GGUFMetadata, problem: str) -> NoReturn:
    raise ModelFileError(meta.path, problem, _DAMAGED)


def file_type_name(file_type: int | None) -> str | None:
    """The format a ``general.file_type`` value names ("F16", "Q8_0", ...), None for one not
    in ``FILE_TYPE_NAMES``."""
    return FILE_TYPE_NAMES.get(file_type) if file_type is not None else None


def _file_type(meta: GGUFMetadata) -> int | None:
    value = meta.get(gguf.Keys.General.FILE_TYPE)
    return value if _is_int(value) else None


def check_pair(text: TextModelInfo, projector: ProjectorInfo) -> None:
    """Refuse a projector that was made for another text model."""
    if projector.output_width != text.n_embd:
        raise ModelFileError(
            projector.path,
            f"belongs to a different model: this mmproj produces {projector.output_width}-wide "
            f"embeddings, but {text.path.name} expects {text.n_embd}.",
            "Use the mmproj file from the same repository as the text model.",
        )


def _shown(value: object) -> str:
    """A name from the file as a message shows it: short, whatever the file holds."""
    text = value if isinstance(value, str) else "none" if value is None else "not a name"
    return text if len(text) <= 40 else text[:40] + "…"
