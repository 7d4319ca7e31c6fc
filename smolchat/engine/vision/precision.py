"""Rewrite a vision projector's matrix weights in another floating-point precision.

A CPU with BF16 dot-product instructions (AVX512-BF16, AMX, Arm BF16) runs the vision
encoder's matrix products faster on BF16 weights than on F16 ones, with the same range as
F32. Most repos only publish an F16 mmproj, so SmolChat converts it once, locally, and keeps
the copy beside its other data. Only the 2-D projection weights change: biases, norms, the
patch convolution and the position embeddings stay as they are (ggml's convolution and
additions want them in F16/F32).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import gguf
import numpy as np

from smolchat.engine.gguf_info import ModelFileError

log = logging.getLogger(__name__)

# Matrix weights of the vision tower and the projector: these are what matrix products read.
_MATMUL_WEIGHT = re.compile(r"^(v\.blk\.\d+\.(attn_[qkvo]|attn_out|ffn_up|ffn_down|ffn_gate)|mm\.[\w.]+)\.weight$")
_FLOAT_TYPES = {gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.BF16}
PRECISIONS = ("F16", "BF16")
_FILE_TYPES = {"F16": gguf.LlamaFileType.MOSTLY_F16, "BF16": gguf.LlamaFileType.MOSTLY_BF16}


def converted_name(source: Path, precision: str) -> str:
    """A file name that changes whenever the source file does (size and mtime)."""
    stat = source.stat()
    tag = hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = re.sub(r"-(F16|F32|BF16|f16|f32|bf16)$", "", source.stem)
    return f"{stem}-{precision}-{tag}.gguf"


def is_converted_weight(name: str, n_dims: int) -> bool:
    return n_dims == 2 and bool(_MATMUL_WEIGHT.match(name))


def convert_mmproj(source: str | os.PathLike[str], target: str | os.PathLike[str], precision: str = "BF16") -> Path:
    """Write a copy of ``source`` whose matrix weights are in ``precision``.

    The copy is written beside ``target`` under a temporary name and renamed into place, so
    a crash or a full disk never leaves a half-written file under the final name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unsupported precision {precision!r}")
    source, target = Path(source), Path(target)
    qtype = gguf.GGMLQuantizationType[precision]
    try:
        reader = gguf.GGUFReader(source)
    except (ValueError, OSError) as e:
        raise ModelFileError(source, f"could not be read to convert it ({e}).",
                             "Download the projector again.") from e
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    writer_arch = arch.contents() if arch is not None else "clip"
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(partial, arch=writer_arch, endianess=reader.endianess)
    try:
        for field in reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue  # the writer adds these itself
            if field.name == gguf.Keys.General.FILE_TYPE:
                writer.add_file_type(_FILE_TYPES[precision])
                continue
            value_type = field.types[0]
            sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
        writer.add_string("smolchat.converted_from", source.name)

        tensors = []
        for tensor in reader.tensors:
            data = tensor.data
            kind = tensor.tensor_type
            if kind in _FLOAT_TYPES and kind != qtype and is_converted_weight(tensor.name, len(tensor.shape)):
                floats = data.astype(np.float32) if kind != gguf.GGMLQuantizationType.BF16 else \
                    gguf.quants.dequantize(data, kind)
                data = gguf.quants.quantize(floats, qtype)
                kind = qtype
            tensors.append((tensor.name, data, kind))
        for name, data, kind in tensors:
            writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, data, _ in tensors:
            writer.write_tensor_data(data)
        writer.close()
        os.replace(partial, target)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    log.info("converted %s to %s (%s)", source.name, target.name, precision)
    return target
