"""Local copies of a vision projector (mmproj) that read images faster or use less memory.

- In another precision: a CPU with BF16 dot-product instructions (AVX512-BF16, AMX, Arm
  BF16) runs the encoder's matrix products faster on BF16 weights than on F16 ones, with the
  range of F32; CPUs with 8-bit dot products may run Q8_0 faster still (measured, not
  assumed: on AVX2 alone ggml's Q8_0 is slower than F16). Most repos publish only an F16
  mmproj, so SmolChat converts it once. Only the 2-D projection weights change: biases,
  norms, the patch convolution and the position embeddings stay as they are (ggml's
  convolution and additions want them in F16/F32).
- For layout only: when SmolChat's own encoder (ONNX Runtime, OpenVINO) reads the images,
  libmtmd still lays prompts out (tiles, image tokens), which needs the projector's metadata
  but none of its transformer layers. A copy without them saves their memory (170 MB for
  SmolVLM-256M, 800 MB for 2.2B).

- As an exported encoder: ONNX Runtime reads a network saved to disk faster (0.15 s against
  2.5 s to build it) and in less memory (its weights are mapped from the file and let go once
  it has repacked them, where weights handed over from Python stay held twice). A folder per
  source and precision, kept with the other caches: it can be made again.

Copies are written under a temporary name and renamed into place, so a crash or a full disk
never leaves a half-written file under the final name. Each copy records (in its metadata) the
file it was made from, so that copies of files that are gone or changed can be found and deleted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import gguf
import numpy as np

from smolchat import paths
from smolchat.engine.gguf_info import ModelFileError, read_metadata

log = logging.getLogger(__name__)

# Matrix weights of the vision tower and the projector: these are what matrix products read.
_MATMUL_WEIGHT = re.compile(r"^(v\.blk\.\d+\.(attn_[qkvo]|attn_out|ffn_up|ffn_down|ffn_gate)|mm\.[\w.]+)\.weight$")
_FLOAT_TYPES = {gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.BF16}
PRECISIONS = ("F16", "BF16", "Q8_0")
_FILE_TYPES = {
    "F16": gguf.LlamaFileType.MOSTLY_F16,
    "BF16": gguf.LlamaFileType.MOSTLY_BF16,
    "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}
_LAYER_COUNT = "clip.vision.block_count"
_SOURCE = "smolchat.copy_of_path"  # the path of the file a copy was made from
LAYOUT = "layout"
COPY_KINDS = (LAYOUT, *PRECISIONS)


def _source_tag(source: Path) -> str:
    stat = source.stat()
    return hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def _stem(source: Path) -> str:
    return re.sub(r"-(F16|F32|BF16|f16|f32|bf16)$", "", source.stem)


def copy_name(source: Path, kind: str) -> str:
    """A file name for a copy of ``source`` that changes whenever the source does."""
    return f"{_stem(source)}-{kind}-{_source_tag(source)}.gguf"


PARTIAL = ".partial"  # in the name of a copy or folder still being written
EXPORT_SOURCE_FILE = "source.txt"  # in an exported encoder's folder: the path it was made from


def _export_folder() -> Path:
    return paths.cache_dir() / "exported-encoders"


def export_path(source: str | os.PathLike[str], kind: str) -> Path:
    """The folder for an encoder of ``kind`` exported from ``source`` (a name that changes
    whenever the source does, and with ``kind``, which names the format's version too)."""
    source = Path(source)
    return _export_folder() / f"{_stem(source)}-{kind}-{_source_tag(source)}"


def _exports_of(source: Path) -> list[Path]:
    tag = _source_tag(source)
    folder = _export_folder()
    return sorted(p for p in folder.glob(f"*-{tag}") if p.is_dir()) if folder.is_dir() else []


def _export_orphaned(folder: Path) -> bool:
    if PARTIAL in folder.name:  # left by an export that was killed; a recent one may still be going
        try:
            return time.time() - folder.stat().st_mtime > 3600
        except OSError:
            return False
    try:
        source = Path((folder / EXPORT_SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return True
    try:
        return not folder.name.endswith(f"-{_source_tag(source)}")
    except OSError:  # the source is gone
        return True


def copy_path(source: Path, kind: str) -> Path:
    """Where SmolChat keeps its copy of ``source`` of ``kind`` (a precision, or LAYOUT)."""
    return _copy_folder(kind) / copy_name(source, kind)


def _copy_folder(kind: str) -> Path:
    # layout-only copies are quick to make again; converted ones are worth keeping
    return paths.cache_dir() / "layout-only" if kind == LAYOUT else paths.data_dir() / "converted"


def copies_of(source: Path) -> list[Path]:
    """The copies SmolChat keeps of ``source`` as it is now (none once it is gone)."""
    try:
        return [p for kind in COPY_KINDS if (p := copy_path(source, kind)).exists()] + _exports_of(source)
    except OSError:
        return []


def remove_copies(copies: Iterable[Path] = ()) -> None:
    """Delete ``copies``, and every copy kept whose source is gone or has changed since it
    was made (nothing will ask for it again). A copy that cannot be deleted now (open on
    Windows) is left for the next time."""
    folders = {_copy_folder(kind) for kind in COPY_KINDS}
    doomed = set(copies) | {copy for folder in folders for copy in folder.glob("*.gguf") if _orphaned(copy)}
    exports = _export_folder()
    if exports.is_dir():
        doomed |= {folder for folder in exports.iterdir() if folder.is_dir() and _export_orphaned(folder)}
    for copy in sorted(doomed):
        try:
            if copy.is_dir():
                shutil.rmtree(copy)
            else:
                copy.unlink(missing_ok=True)
        except OSError as e:
            log.info("could not delete %s now: %s", copy, e)


def _orphaned(copy: Path) -> bool:
    try:
        source = read_metadata(copy).get(_SOURCE)
    except ModelFileError:
        return False  # not a copy SmolChat can read: leave it
    if not isinstance(source, str):
        return False  # made before copies recorded their source
    try:
        return copy.name not in {copy_name(Path(source), kind) for kind in COPY_KINDS}
    except OSError:  # the source is gone
        return True


def is_converted_weight(name: str, n_dims: int) -> bool:
    return n_dims == 2 and bool(_MATMUL_WEIGHT.match(name))


def _rewrite(
    source: Path,
    target: Path,
    *,
    fields: dict[str, tuple[object, gguf.GGUFValueType]],
    tensor: Callable[[str, np.ndarray, gguf.GGMLQuantizationType], tuple[np.ndarray, gguf.GGMLQuantizationType] | None],
) -> Path:
    """Copy ``source`` to ``target`` with ``fields`` replaced or added and each tensor passed
    through ``tensor`` (which returns its new data and type, or None to leave it out)."""
    try:
        reader = gguf.GGUFReader(source)
    except (ValueError, OSError) as e:
        raise ModelFileError(source, f"could not be read to copy it ({e}).", "Download the projector again.") from e
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    origin = os.path.abspath(source)  # as named (a snapshot's link, say): copy_name() must give the same name again
    try:
        origin.encode("utf-8")
        fields = {**fields, _SOURCE: (origin, gguf.GGUFValueType.STRING)}
    except UnicodeEncodeError:  # a path that is not UTF-8 is not recorded: the copy goes only with its model
        pass
    partial = target.with_name(target.name + PARTIAL)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(partial, arch=arch.contents() if arch else "clip", endianess=reader.endianess)
    try:
        for field in reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue  # the writer adds these itself
            value_type = field.types[0]
            sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
            value = field.contents()
            if field.name in fields:
                value, value_type = fields[field.name]
            writer.add_key_value(field.name, value, value_type, sub_type=sub_type)
        for name, (value, value_type) in fields.items():
            if reader.get_field(name) is None:
                writer.add_key_value(name, value, value_type)
        kept = []
        for t in reader.tensors:
            result = tensor(t.name, t.data, t.tensor_type)
            if result is not None:
                kept.append((t.name, *result))
        for name, data, kind in kept:
            writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, data, _ in kept:
            writer.write_tensor_data(data)
        writer.close()
        os.replace(partial, target)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return target


def convert_mmproj(source: str | os.PathLike[str], target: str | os.PathLike[str], precision: str = "BF16") -> Path:
    """Write a copy of ``source`` whose matrix weights are in ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unsupported precision {precision!r}")
    source, target = Path(source), Path(target)
    qtype = gguf.GGMLQuantizationType[precision]

    def convert(name: str, data: np.ndarray, kind: gguf.GGMLQuantizationType):
        if qtype == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32:
            return data, kind  # Q8_0 comes in blocks of 32 along a row
        if kind in _FLOAT_TYPES and kind != qtype and is_converted_weight(name, data.ndim):
            floats = gguf.quants.dequantize(data, kind) if kind == gguf.GGMLQuantizationType.BF16 else data
            return gguf.quants.quantize(np.asarray(floats, np.float32), qtype), qtype
        return data, kind

    _rewrite(
        source,
        target,
        tensor=convert,
        fields={
            gguf.Keys.General.FILE_TYPE: (int(_FILE_TYPES[precision]), gguf.GGUFValueType.UINT32),
            "smolchat.converted_from": (source.name, gguf.GGUFValueType.STRING),
        },
    )
    log.info("converted %s to %s (%s)", source.name, target.name, precision)
    return target


def layout_only_mmproj(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Write a copy of ``source`` without its transformer layers: libmtmd lays prompts out
    with it exactly as with the original, but must not encode images with it."""
    source, target = Path(source), Path(target)
    _rewrite(
        source,
        target,
        tensor=lambda name, data, kind: None if name.startswith("v.blk.") else (data, kind),
        fields={
            _LAYER_COUNT: (0, gguf.GGUFValueType.UINT32),
            "smolchat.layout_only_copy_of": (source.name, gguf.GGUFValueType.STRING),
        },
    )
    return target
