"""Reading and checking GGUF files before llama.cpp sees them.

llama.cpp answers a bad file with a terse log line or, for some projector settings, by
aborting the whole process. So every file is read here first (this module is the one reader
of GGUF metadata in SmolChat) and refused with a message that says what is wrong and what
to do.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from smolchat.errors import SmolChatError

GGUF_MAGIC = b"GGUF"
PROJECTOR_ARCHITECTURE = "clip"
# SmolVLM and SmolVLM2 projectors: a SigLIP encoder with idefics3's pixel-shuffle projection.
SUPPORTED_PROJECTORS = frozenset({"idefics3"})


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
    """The key/value metadata and tensor table of one GGUF file."""

    def __init__(self, path: Path, fields: dict[str, Any], tensors: dict[str, tuple[int, ...]]):
        self.path = path
        self.fields = fields
        self.tensors = tensors  # name -> shape in ggml order (ne)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def require_int(self, key: str, what: str) -> int:
        value = self.fields.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ModelFileError(
                self.path,
                f"is missing {what} ('{key}').",
                "The file was not converted completely; get a fresh copy of the model.",
            )
        return value


class _Truncated(Exception):
    pass


class _HeaderParser:
    """A GGUF header reader that walks the bytes once.

    gguf.GGUFReader builds a numpy view per array element: 1.5 s for a SmolVLM vocabulary
    (49k tokens and as many merges). This reads the same header in about 25 ms, which matters
    when a model is loaded or a model list is shown. Value types and tensor block sizes come
    from the gguf package, so both readers agree on the format.
    """

    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise _Truncated
        value = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value[0] if len(value) == 1 else value

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise _Truncated
        text = self.buf[self.pos : self.pos + n].decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value(self, vtype: int) -> Any:
        if vtype == gguf.GGUFValueType.STRING:
            return self.string()
        if vtype == gguf.GGUFValueType.ARRAY:
            etype = self.take("<I")
            count = self.take("<Q")
            if etype == gguf.GGUFValueType.STRING:
                return [self.string() for _ in range(count)]
            fmt = _SCALAR_FORMATS[etype]
            return list(self.take(f"<{count}{fmt}")) if count else []
        return self.take("<" + _SCALAR_FORMATS[vtype])


def _scalar_formats() -> dict[int, str]:
    t = gguf.GGUFValueType
    return {
        t.UINT8: "B", t.INT8: "b", t.UINT16: "H", t.INT16: "h", t.UINT32: "I", t.INT32: "i",
        t.FLOAT32: "f", t.BOOL: "?", t.UINT64: "Q", t.INT64: "q", t.FLOAT64: "d",
    }


_SCALAR_FORMATS = _scalar_formats()


def read_metadata(path: str | os.PathLike[str]) -> GGUFMetadata:
    """Parse a GGUF file's header, refusing anything that is not a complete GGUF file."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "does not exist.", "Check the path.")
    if path.is_dir():
        raise ModelFileError(path, "is a folder, not a GGUF file.")
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(4) != GGUF_MAGIC:
                raise ModelFileError(
                    path,
                    "is not a GGUF file.",
                    "SmolChat runs llama.cpp models: pick a .gguf file (for example "
                    "SmolVLM-256M-Instruct-Q8_0.gguf).",
                )
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                fields, tensors, data_end = _parse(buf)
    except OSError as e:
        raise ModelFileError(path, f"cannot be read ({e.strerror or e}).") from e
    except _Truncated:
        raise ModelFileError(
            path,
            f"is incomplete: its header runs past the end of the file ({_megabytes(size)}).",
            "A download that stopped early looks like this; download the file again.",
        ) from None
    except (KeyError, ValueError, UnicodeError) as e:
        raise ModelFileError(path, f"is damaged: its header cannot be parsed ({e}).",
                             "Download the file again.") from e
    if data_end > size:
        raise ModelFileError(
            path,
            f"is incomplete: it should hold {_megabytes(data_end)} but has {_megabytes(size)}.",
            "A download that stopped early looks like this; download the file again.",
        )
    return GGUFMetadata(path, fields, tensors)


def _parse(buf: mmap.mmap) -> tuple[dict[str, Any], dict[str, tuple[int, ...]], int]:
    p = _HeaderParser(buf)
    p.pos = 4
    version = p.take("<I")
    if version not in (2, 3):
        raise ValueError(f"unsupported GGUF version {version}")
    n_tensors = p.take("<Q")
    n_kv = p.take("<Q")
    fields: dict[str, Any] = {}
    for _ in range(n_kv):
        key = p.string()
        fields[key] = p.value(p.take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = p.string()
        n_dims = p.take("<I")
        shape = tuple(p.take(f"<{n_dims}Q")) if n_dims > 1 else (p.take("<Q"),) if n_dims else ()
        ggml_type = p.take("<I")
        offset = p.take("<Q")
        infos.append((name, shape, ggml_type, offset))
    alignment = int(fields.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT))
    data_start = -(-p.pos // alignment) * alignment
    data_end = data_start
    tensors: dict[str, tuple[int, ...]] = {}
    for name, shape, ggml_type, offset in infos:
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
        n_elements = 1
        for n in shape:
            n_elements *= n
        data_end = max(data_end, data_start + offset + n_elements // block * type_size)
        tensors[name] = shape
    return fields, tensors, data_end


def inspect_text_model(path: str | os.PathLike[str]) -> TextModelInfo:
    meta = read_metadata(path)
    arch = meta.get("general.architecture")
    if arch == PROJECTOR_ARCHITECTURE:
        raise ModelFileError(
            meta.path,
            "is a vision projector (mmproj), not a text model.",
            "Use it as the projector, and as the model choose the file without 'mmproj' "
            "in its name.",
        )
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(meta.path, "does not say which architecture it is.",
                             "It is probably not a llama.cpp model.")
    n_head = meta.require_int(f"{arch}.attention.head_count", "the attention head count")
    n_head_kv = meta.get(f"{arch}.attention.head_count_kv", n_head)
    tokens = meta.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        raise ModelFileError(meta.path, "has no tokenizer.", "Get a complete copy of the model.")
    template = meta.get("tokenizer.chat_template")
    return TextModelInfo(
        path=meta.path,
        size_bytes=meta.path.stat().st_size,
        architecture=arch,
        name=str(meta.get("general.name") or meta.path.stem),
        n_embd=meta.require_int(f"{arch}.embedding_length", "the embedding width"),
        n_layer=meta.require_int(f"{arch}.block_count", "the layer count"),
        n_head=n_head,
        n_head_kv=int(n_head_kv),
        n_ctx_train=int(meta.get(f"{arch}.context_length", 0) or 0),
        n_vocab=len(tokens),
        chat_template=template if isinstance(template, str) and template else None,
        file_type=meta.get("general.file_type"),
    )


def inspect_projector(path: str | os.PathLike[str]) -> ProjectorInfo:
    meta = read_metadata(path)
    arch = meta.get("general.architecture")
    if arch != PROJECTOR_ARCHITECTURE:
        raise ModelFileError(
            meta.path,
            f"is a text model ({arch}), not a vision projector (mmproj).",
            "Use it as the model, and as the projector choose the file whose name starts "
            "with 'mmproj'.",
        )
    if not meta.get("clip.has_vision_encoder", False):
        raise ModelFileError(meta.path, "has no vision encoder, so it cannot read images.",
                             "Choose the model's image projector.")
    projector = meta.get("clip.vision.projector_type") or meta.get("clip.projector_type")
    if projector not in SUPPORTED_PROJECTORS:
        raise ModelFileError(
            meta.path,
            f"uses the projector type '{projector}', which SmolChat does not support.",
            "SmolChat runs SmolVLM and SmolVLM2 models (projector type idefics3).",
        )
    scale_factor = meta.require_int("clip.vision.projector.scale_factor", "the projector scale factor")
    image_size = meta.require_int("clip.vision.image_size", "the tile size")
    patch_size = meta.require_int("clip.vision.patch_size", "the patch size")
    # llama.cpp aborts the whole process on these, so they are caught here
    if scale_factor < 2:
        raise ModelFileError(meta.path, f"has an invalid projector scale factor ({scale_factor}).",
                             "The file is damaged or was converted wrongly.")
    # Patches per side need not fill the tile (SmolVLM-2.2B: 384 px, patch 14, so 27 patches and
    # 6 px unused), but the pixel shuffle must divide them.
    if patch_size < 1 or image_size < patch_size or (image_size // patch_size) % scale_factor != 0:
        raise ModelFileError(
            meta.path,
            f"has a tile size ({image_size}) whose patches (size {patch_size}) the scale "
            f"factor ({scale_factor}) does not divide.",
            "The file is damaged or was converted wrongly.",
        )
    n_embd = meta.require_int("clip.vision.embedding_length", "the vision width")
    n_layer = meta.require_int("clip.vision.block_count", "the vision layer count")
    n_ff = meta.require_int("clip.vision.feed_forward_length", "the vision FFN width")
    _check_idefics3_tensors(meta, n_embd, n_ff, n_layer, patch_size, scale_factor)
    output_width = meta.tensors["mm.model.fc.weight"][1]
    preproc = meta.get("clip.vision.preproc_image_size")
    return ProjectorInfo(
        path=meta.path,
        size_bytes=meta.path.stat().st_size,
        projector_type=projector,
        output_width=int(output_width),
        n_embd=n_embd,
        n_layer=n_layer,
        image_size=image_size,
        patch_size=patch_size,
        scale_factor=scale_factor,
        preproc_image_size=int(preproc) if isinstance(preproc, int) and preproc > 0 else None,
        file_type=meta.get("general.file_type"),
    )


def _check_idefics3_tensors(
    meta: GGUFMetadata, d: int, ff: int, n_layer: int, patch: int, scale: int
) -> None:
    """The tensors libmtmd's SigLIP graph uses, in the shapes it assumes.

    A missing patch embedding or attention weight crashes libmtmd, and a wrongly shaped one
    makes ggml abort the process, so both are refused here.
    """
    expected: dict[str, tuple[int, ...] | None] = {
        "v.patch_embd.weight": (patch, patch, 3, d),
        "mm.model.fc.weight": (d * scale * scale, None),  # None: any output width
    }
    for i in range(n_layer):
        b = f"v.blk.{i}."
        if b + "attn_qkv.weight" not in meta.tensors:
            for name in ("attn_q", "attn_k", "attn_v"):
                expected[b + name + ".weight"] = (d, d)
        expected[b + "attn_out.weight"] = (d, d)
        # converters disagree on which of up/down is which: libmtmd accepts either order
        up, down = meta.tensors.get(b + "ffn_up.weight"), meta.tensors.get(b + "ffn_down.weight")
        if up is None:
            _bad_tensor(meta, b + "ffn_up.weight", None)
        if down is None or {up, down} != {(d, ff), (ff, d)}:
            _bad_tensor(meta, b + "ffn_down.weight", down)
    for name, shape in expected.items():
        actual = meta.tensors.get(name)
        if actual is None or len(actual) != len(shape) or any(
            want is not None and want != got for want, got in zip(shape, actual)
        ):
            _bad_tensor(meta, name, actual)


def _bad_tensor(meta: GGUFMetadata, name: str, actual: object) -> None:
    problem = "lacks the tensor" if actual is None else f"has a wrongly shaped tensor ({list(actual)})"
    raise ModelFileError(
        meta.path,
        f"{problem} '{name}' that SmolVLM's vision encoder needs.",
        "The file is damaged or was converted wrongly; download it again.",
    )


def check_pair(text: TextModelInfo, projector: ProjectorInfo) -> None:
    """Refuse a projector that was made for another text model."""
    if projector.output_width != text.n_embd:
        raise ModelFileError(
            projector.path,
            f"belongs to a different model: this mmproj produces {projector.output_width}-wide "
            f"embeddings, but {text.path.name} expects {text.n_embd}.",
            "Use the mmproj file from the same repository as the text model.",
        )


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e7 else f"{n:,} bytes"
