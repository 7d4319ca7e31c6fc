"""A vision plan: which encoder reads images, in which precision, on how many threads.

The engine runs the plan it is handed; choosing one by measuring this computer is
``smolchat.calibrate``'s work. What is here measures nothing: the plan type, the backends
and precisions worth considering on a CPU, a plan from the CPU's own report, and the
projector file libmtmd loads for a plan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from smolchat.engine.gguf_info import file_type_name
from smolchat.engine.vision import onnx_encoder, openvino_encoder
from smolchat.engine.vision.cpu import CpuReport
from smolchat.engine.vision.projector_files import LAYOUT, PRECISIONS, convert_mmproj, copy_path, layout_only_mmproj

log = logging.getLogger(__name__)

OPENVINO = "openvino"
ONNXRUNTIME = "onnxruntime"
LLAMA_CPP = "llama.cpp"
BACKENDS = (OPENVINO, ONNXRUNTIME, LLAMA_CPP)  # unmeasured, the first installed is taken
BACKEND_NAMES = {OPENVINO: "OpenVINO", ONNXRUNTIME: "ONNX Runtime", LLAMA_CPP: "llama.cpp"}  # for a person
# Encoders SmolChat builds itself from the mmproj: libmtmd then only lays prompts out.
OWN_ENCODERS = (ONNXRUNTIME, OPENVINO)
NOT_MEASURED = "from the CPU report (not measured)"

# 8-bit vision: weights in 8 bits (INT8: per output row, with activations quantized as they
# come where the encoder does that; Q8_0: ggml's blocks of 32). Offered only where measured
# faster here and where its embeddings agree with libmtmd's F16 encoder (AGREEMENT_COSINE).
EIGHT_BIT = ("INT8", "Q8_0")
# "exact": whichever full-precision variant is fastest (F32, F16, BF16), never an 8-bit one.
EXACT = "exact"
# The agreement gate: cosine similarity of each tile's embeddings with libmtmd's F16 ones.
AGREEMENT_COSINE = 0.995


@dataclass(frozen=True)
class VisionPlan:
    """How the vision encoder runs, and how many threads generation uses."""

    backend: str  # ONNXRUNTIME, OPENVINO or LLAMA_CPP
    precision: str  # the vision weights' (llama.cpp) or compute (OpenVINO) precision
    threads: int  # vision encoder
    decode_threads: int  # text generation
    how: str = "measured on this computer"
    # Flash attention for the text model, where the settings allow it: on CPUs it can make
    # each generated token slower once the context holds an image's tokens.
    text_flash_attn: bool = True

    def describe(self) -> str:
        return f"{self.backend} {self.precision}, {self.threads} thread{'s' if self.threads != 1 else ''}"


def precisions(backend: str, cpu: CpuReport) -> list[str]:
    """Precisions worth trying, the first the one to take unmeasured: BF16 only where the CPU
    computes in it; 8-bit ones last, as they must be measured faster to be chosen."""
    if backend == ONNXRUNTIME:
        return ["F32", "INT8"]
    if backend == OPENVINO:
        return ["BF16", "F32", "INT8"] if cpu.bf16 else ["F32", "INT8"]
    return ["BF16", "F16", "Q8_0"] if cpu.bf16 else ["F16", "Q8_0"]


def is_exact(precision: str) -> bool:
    return precision not in EIGHT_BIT


def backends() -> list[str]:
    """The encoders installed here (each measured before one is chosen)."""
    installed = {ONNXRUNTIME: onnx_encoder.available(), OPENVINO: openvino_encoder.available()}
    return [b for b in BACKENDS if installed.get(b, True)]


def check_installed(backend: str) -> None:
    if backend == OPENVINO and not openvino_encoder.available():
        raise ValueError("OpenVINO is not installed: pip install 'smolchat[openvino]'")
    if backend == ONNXRUNTIME and not onnx_encoder.available():
        raise ValueError("ONNX Runtime is not installed: pip install 'smolchat[onnxruntime]'")


def from_cpu_report(
    cpu: CpuReport,
    backend: str,
    *,
    precision: str = "auto",
    threads: int | None = None,
    decode_threads: int | None = None,
    how: str = NOT_MEASURED,
) -> VisionPlan:
    """A plan without measuring: what is given, and for the rest the first precision worth
    trying with ``backend`` on this CPU and its physical cores (never an 8-bit one)."""
    check_installed(backend)
    return VisionPlan(
        backend,
        precisions(backend, cpu)[0] if precision in ("auto", EXACT) else precision,
        threads or cpu.physical_cores,
        decode_threads or cpu.physical_cores,
        how,
    )


def projector_for(path: Path, file_type: int | None, plan: VisionPlan) -> tuple[Path, bool]:
    """The projector file libmtmd should load for ``plan``, made once if needed, and whether
    it is a layout-only copy (OpenVINO reads the images; libmtmd only lays prompts out).

    For libmtmd itself: the file, or a copy in the plan's precision (F16 <-> BF16, or Q8_0
    from either; quantized files stay as they are) kept in the data folder."""
    if plan.backend in OWN_ENCODERS:
        target = copy_path(path, LAYOUT)
        if not target.exists():
            layout_only_mmproj(path, target)
        return target, True
    current = file_type_name(file_type)
    # quantized projectors stay as they are; float ones are converted between F16 and BF16
    if current not in ("F32", "F16", "BF16") or current == plan.precision or plan.precision not in PRECISIONS:
        return path, False
    target = copy_path(path, plan.precision)
    if not target.exists():
        log.info("converting %s to %s for this CPU (once)", path.name, plan.precision)
        convert_mmproj(path, target, plan.precision)
    return target, False
