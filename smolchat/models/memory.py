"""How much memory a model pair will take, and whether it fits on this computer.

The one memory estimate of SmolChat. It adds up, in bytes:

- the text model's weights (the GGUF file: llama.cpp maps it and reads every page),
- the vision projector's weights, as the chosen encoder holds them,
- the KV cache: 2 (K and V) x layers x KV heads x head width x context x bytes per element,
- the text model's compute buffers,
- the vision encoder's working memory while it reads the largest image the model accepts,
- the process itself (Python and the libraries).

With GPU layers, the offloaded layers' weights and KV cache, and llama.cpp's compute buffer,
go to video memory instead. Where only file sizes are known (before a download) the shape is
taken from the SmolVLM model of that size, and ``from_metadata`` is False.

The text compute buffer counts differently in the two: llama.cpp reserves it for the worst
case (logits for a whole 512-token batch, about 100 MB with SmolVLM's 49k-token vocabulary)
but, asking for one output per batch, the engine writes only a fraction of it, and RAM holds
only pages that were written; video memory holds the whole reservation. The GPU driver's
own context is not counted: the verdict keeps 10% of the video memory free for it.

Figures marked "measured" were measured on Linux x86-64 (2-core Zen 4, llama-cpp-python
0.3.36, OpenVINO 2026.4) with SmolVLM-shaped models; ``benchmarks/memory_estimate.py``
checks the total against the peak RSS of ``smolchat bench``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass

from smolchat.engine.families import FAMILY
from smolchat.engine.gguf_info import ProjectorInfo, TextModelInfo, file_type_name
from smolchat.engine.vision import cpu as cpu_report
from smolchat.engine.vision import plan as vision_plan
from smolchat.engine.vision.plan import LLAMA_CPP, ONNXRUNTIME, OPENVINO, OWN_ENCODERS
from smolchat.errors import SmolChatError
from smolchat.models.formats import FORMATS
from smolchat.models.machine import MachineMemory
from smolchat.units import format_bytes

MiB = 1 << 20


class EstimateError(SmolChatError):
    """An estimate was asked for settings SmolChat does not know."""


# -- which vision encoder ---------------------------------------------------------------------


@dataclass(frozen=True)
class VisionChoice:
    """How the engine would read images here, as far as memory is concerned."""

    backend: str  # LLAMA_CPP, ONNXRUNTIME or OPENVINO
    precision: str  # as in EngineSettings.vision_precision
    on_gpu: bool = False  # libmtmd on a GPU build keeps the projector in video memory
    how: str = ""


def expected_vision(
    backend: str = "auto", precision: str = "auto", *, vision_on_gpu: bool = True, measure: bool = True
) -> VisionChoice:
    """The vision encoder the engine would pick on this computer, without loading a model.

    Follows Engine's own choice: a GPU build reads images on the GPU; otherwise the fastest
    measured variant (``smolchat.calibrate.plan``, which measures this computer once, about
    15 s). With ``measure=False`` nothing is measured: the choice follows the CPU report, and
    OpenVINO, the larger of the two, is assumed wherever it is installed.
    """
    from smolchat.engine.backends import llama_cpp  # loads llama.cpp: only when an estimate is made

    if vision_on_gpu and llama_cpp.llama_supports_gpu_offload():
        return VisionChoice(LLAMA_CPP, "F16", True, "GPU build")
    if measure:
        from smolchat import calibrate

        try:
            plan = calibrate.plan(backend=backend, precision=precision)
        except ValueError as e:  # OpenVINO asked for but not installed
            raise EstimateError(str(e)) from e
        return VisionChoice(plan.backend, plan.precision, False, plan.how)
    chosen = vision_plan.backends()[0] if backend == "auto" else backend
    if precision == "auto":
        precision = vision_plan.precisions(chosen, cpu_report.detect())[0]
    return VisionChoice(chosen, precision, False, "from the CPU report (not measured)")


# -- the estimate -----------------------------------------------------------------------------

# Bytes per KV cache element for llama.cpp's cache types (block size and bytes per block).
CACHE_TYPE_BYTES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}
_KV_PAD = 256  # llama.cpp rounds the context up to a multiple of this

# Python, numpy, Pillow, gguf and llama.cpp's libraries, measured in a fresh process after
# importing the engine: 53-54 MiB; a `smolchat bench` worker imports a little more. A Qt
# window adds about 35 MiB (measured offscreen): pass ``baseline`` for the window's process.
PROCESS_BASELINE = 60 * MiB
# llama.cpp's tokenizer tables (tokens, merges, piece cache): measured 9-15 MiB for 49k tokens.
VOCAB_BYTES_PER_TOKEN = 256
# Text activations RAM holds while a 512-token batch is evaluated, per batch token and model
# width: measured 16, 26 and 69 MiB for widths 576, 960 and 2048 (FFN 2.7-4x the width).
TEXT_ACTIVATIONS_PER_WIDTH = 4 * 16
# libmtmd beyond its compute buffer and the image itself: warm-up, threads, allocator;
# measured about 25 MiB with SigLIP at 512 and 378 px.
LIBMTMD_FIXED = 25 * MiB
# OpenVINO builds the encoder from the mmproj's tensors converted to F32 and keeps its own
# compiled copy: its share of the peak RSS follows the weights' F32 size W. Fitted on SigLIP
# 768 wide with 6, 12 and 24 layers (W = 0.2-0.7 GB) as a fixed part plus a factor of W;
# 1152 wide with 27 layers (SmolVLM 2.2B's shape, W = 1.7 GB) then comes within 2.5%.
OPENVINO_FIXED = 25 * MiB
# INT8 (8-bit weights): measured on SmolVLM-256M's shape (W = 370 MB), 2-core Zen 3.
OPENVINO_PER_F32_BYTE = {"BF16": 1.90, "F16": 1.90, "F32": 2.49, "INT8": 0.92}
# The compiled weights' share of their F32 size, for each of OpenVINO's precisions.
OPENVINO_COMPILED = {"BF16": 0.5, "F16": 0.5, "F32": 1.0, "INT8": 0.25}
# ONNX Runtime holds its repacked 8-bit (INT8) or F32 weights (mapped from the saved network
# and let go once repacked), and its activations (the attention scores of a tile): its share
# of the peak RSS as a fixed part and a factor of the F32 size W, measured on SmolVLM-256M's
# shape (W = 370 MB; 174 MiB in INT8 and 451 MiB in F32 beyond the runtime itself, 559 MiB
# for the whole bench at n_ctx 4096 in INT8), 2-core Zen 3.
ONNXRUNTIME_FIXED = 30 * MiB
ONNXRUNTIME_PER_F32_BYTE = {"INT8": 0.50, "F32": 1.30}
ONNXRUNTIME_HELD = {"INT8": 0.25, "F32": 1.0}

NEAREST_SHAPE_NOTE = "estimated from the file size"


@dataclass(frozen=True)
class _TextShape:
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    size_bytes: int

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


@dataclass(frozen=True)
class _VisionShape:
    n_embd: int
    image_size: int
    patch_size: int
    scale_factor: int
    preproc_image_size: int | None
    output_width: int
    size_bytes: int
    bytes_per_weight: float  # of the file's matrix weights

    @property
    def n_pos(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def tokens_per_tile(self) -> int:
        return self.n_pos // self.scale_factor**2


# The SmolVLM family's text backbones and vision towers: a size-only estimate takes the
# nearest one by parameter count; the vision output width is the text model's.
_FAMILY_TEXT = tuple(
    (
        f.text_parameters,
        _TextShape(f.text.n_embd, f.text.n_layer, f.text.n_head, f.text.n_head_kv, f.text.n_vocab or 0, 0),
    )
    for f in FAMILY
)
_FAMILY_VISION = tuple(
    (
        f.vision_parameters,
        _VisionShape(
            f.vision.n_embd,
            f.vision.image_size,
            f.vision.patch_size,
            f.vision.scale_factor,
            f.vision.preproc_image_size,
            0,
            0,
            2.0,
        ),
    )
    for f in FAMILY
)


@dataclass(frozen=True)
class Part:
    """Bytes of one part of the estimate, in RAM and in video memory."""

    ram: int
    vram: int = 0

    @property
    def total(self) -> int:
        return self.ram + self.vram


_PARTS = {
    "text_weights": "Text model weights",
    "projector_weights": "Vision projector weights",
    "kv_cache": "KV cache",
    "text_compute": "Text compute buffers",
    "vision_work": "Vision encoder working memory",
    "runtime": "Python and libraries",
}


@dataclass(frozen=True)
class MemoryEstimate:
    text_weights: Part
    projector_weights: Part
    kv_cache: Part
    text_compute: Part
    vision_work: Part
    runtime: Part
    from_metadata: bool  # False: shapes guessed from file sizes
    n_ctx: int
    vision_backend: str | None  # None: text only

    def parts(self) -> dict[str, Part]:
        return {name: getattr(self, name) for name in _PARTS}

    @property
    def ram(self) -> int:
        return sum(p.ram for p in self.parts().values())

    @property
    def vram(self) -> int:
        return sum(p.vram for p in self.parts().values())

    @property
    def total(self) -> int:
        return self.ram + self.vram

    def lines(self) -> list[str]:
        """One line per part, then the total, for a person."""
        out = []
        for name, label in _PARTS.items():
            part = getattr(self, name)
            if part.total == 0:
                continue
            if name == "kv_cache":
                label += f" ({self.n_ctx:,} tokens)"
            where = f" ({format_bytes(part.vram)} in video memory)" if part.vram else ""
            out.append(f"{label}: {format_bytes(part.total)}{where}")
        return out + [self.describe()]

    def describe(self) -> str:
        text = f"About {format_bytes(self.total)}"
        if self.vram:
            text += f": {format_bytes(self.ram)} of RAM and {format_bytes(self.vram)} of video memory"
        return text + ("" if self.from_metadata else f" ({NEAREST_SHAPE_NOTE})")

    def as_dict(self) -> dict:
        return {
            "parts": {name: {"ram": p.ram, "vram": p.vram} for name, p in self.parts().items()},
            "ram": self.ram,
            "vram": self.vram,
            "total": self.total,
            "from_metadata": self.from_metadata,
            "n_ctx": self.n_ctx,
            "vision_backend": self.vision_backend,
        }


def estimate_memory(
    text: TextModelInfo | int,
    projector: ProjectorInfo | int | None = None,
    *,
    n_ctx: int = 4096,
    n_gpu_layers: int = 0,
    cache_type: str = "f16",
    flash_attn: bool = True,
    n_batch: int = 512,
    vision_backend: str = "auto",
    vision_precision: str = "auto",
    vision_on_gpu: bool | None = None,
    image_max_tokens: int | None = None,
    text_bits_per_weight: float = 8.5,
    projector_bits_per_weight: float = 16.0,
    baseline: int = PROCESS_BASELINE,
) -> MemoryEstimate:
    """The memory a model pair takes with these settings (EngineSettings' names).

    ``text`` and ``projector``: what ``inspect_text_model`` / ``inspect_projector`` read, or
    just file sizes in bytes (before a download); then the shape is that of the SmolVLM
    model of that size, given the bits per weight of the file's format (see ``formats``).
    ``vision_backend`` / ``vision_precision`` / ``vision_on_gpu``: how images are read (see
    ``expected_vision``); "auto" and None guess it for this computer without measuring.
    """
    if cache_type.lower() not in CACHE_TYPE_BYTES:
        raise EstimateError(f"Unknown KV cache type '{cache_type}'; use one of {', '.join(CACHE_TYPE_BYTES)}.")
    if n_ctx < 1 or n_batch < 1:
        raise EstimateError("The context and the batch must hold at least one token.")
    t, text_known = _text_shape(text, text_bits_per_weight)
    n_ctx_kv = -(-n_ctx // _KV_PAD) * _KV_PAD
    ub = min(n_batch, n_ctx_kv)

    # GPU layers: llama.cpp offloads the last n blocks; n > block count also takes the output layer.
    all_layers = n_gpu_layers < 0 or n_gpu_layers > t.n_layer
    gpu_blocks = t.n_layer if all_layers else max(0, n_gpu_layers)
    embeddings = _embedding_bytes(t)
    per_block = max(0, t.size_bytes - embeddings) / t.n_layer
    offloaded = round(per_block * gpu_blocks)
    # token embeddings stay in RAM; an offloaded output layer is a copy of them (tied) or its own
    text_weights = Part(t.size_bytes - offloaded, offloaded + (embeddings if all_layers else 0))

    kv = round(2 * t.n_layer * t.n_head_kv * t.head_dim * n_ctx_kv * CACHE_TYPE_BYTES[cache_type.lower()])
    kv_gpu = kv * gpu_blocks // t.n_layer
    kv_cache = Part(kv - kv_gpu, kv_gpu)

    touched = ub * t.n_embd * TEXT_ACTIVATIONS_PER_WIDTH
    if not flash_attn:  # the attention matrix of a batch at the end of a full context
        touched += ub * n_ctx_kv * 4 * (t.n_head + 1)
    text_compute = Part(touched, _text_compute_reserved(t, ub, n_ctx_kv, flash_attn) if gpu_blocks else 0)
    runtime = Part(baseline + t.n_vocab * VOCAB_BYTES_PER_TOKEN)

    if projector is None:
        return MemoryEstimate(text_weights, Part(0), kv_cache, text_compute, Part(0), runtime, text_known, n_ctx, None)

    v, vision_known = _vision_shape(projector, projector_bits_per_weight, t.n_embd)
    if vision_backend == "auto" or vision_precision == "auto" or vision_on_gpu is None:
        guess = expected_vision(
            vision_backend, vision_precision, vision_on_gpu=vision_on_gpu is not False, measure=False
        )
        vision_backend, vision_precision, vision_on_gpu = guess.backend, guess.precision, guess.on_gpu
    if vision_backend not in (LLAMA_CPP, *OWN_ENCODERS):
        raise EstimateError(f"Unknown vision encoder '{vision_backend}'; use {LLAMA_CPP}, {ONNXRUNTIME} or {OPENVINO}.")

    if vision_backend in OWN_ENCODERS:  # they cut the tiles: libmtmd lays the prompt out only
        # libmtmd keeps a layout-only copy for prompts; our own encoder holds the weights (see above)
        precision = vision_precision.upper()
        if vision_backend == OPENVINO:
            per_f32, fixed, held = (
                OPENVINO_PER_F32_BYTE.get(precision),
                OPENVINO_FIXED,
                OPENVINO_COMPILED.get(precision),
            )
        else:
            per_f32, fixed, held = (
                ONNXRUNTIME_PER_F32_BYTE.get(precision),
                ONNXRUNTIME_FIXED,
                ONNXRUNTIME_HELD.get(precision),
            )
        if per_f32 is None or held is None:
            raise EstimateError(f"{vision_backend} does not read images in '{vision_precision}'.")
        f32_weights = v.size_bytes * 4 / v.bytes_per_weight
        compiled = round(f32_weights * held)
        encoder = fixed + round(per_f32 * f32_weights) - compiled  # beyond the weights it holds
        layout_compute = v.n_pos * v.n_embd * 4 * 2
        projector_weights = Part(_layout_bytes(v) + compiled)
        vision_work = Part(encoder + layout_compute + _own_image_bytes(v, image_max_tokens))
    else:
        weights = v.size_bytes
        if v.bytes_per_weight == 4 and vision_precision.upper() in ("F16", "BF16"):
            weights //= 2  # the engine converts an F32 projector's matrices once
        compute = _vision_compute(v, flash_attn)
        on_gpu = bool(vision_on_gpu)
        projector_weights = Part(0, weights) if on_gpu else Part(weights)
        image = _image_bytes(v, image_max_tokens)
        vision_work = Part(LIBMTMD_FIXED + image + (0 if on_gpu else compute), compute if on_gpu else 0)
    return MemoryEstimate(
        text_weights,
        projector_weights,
        kv_cache,
        text_compute,
        vision_work,
        runtime,
        text_known and vision_known,
        n_ctx,
        vision_backend,
    )


def _nearest(family, n_params: float):
    return min(family, key=lambda entry: abs(math.log(n_params / entry[0])))[1]


def _text_shape(text: TextModelInfo | int, bits_per_weight: float) -> tuple[_TextShape, bool]:
    if isinstance(text, TextModelInfo):
        return _TextShape(text.n_embd, text.n_layer, text.n_head, text.n_head_kv, text.n_vocab, text.size_bytes), True
    size = int(text)
    shape = _nearest(_FAMILY_TEXT, max(1.0, size * 8 / bits_per_weight))
    return _TextShape(shape.n_embd, shape.n_layer, shape.n_head, shape.n_head_kv, shape.n_vocab, size), False


def _bytes_per_weight(file_type: int | None) -> float:
    fmt = FORMATS.get(file_type_name(file_type) or "")
    return fmt.bits_per_weight / 8 if fmt else 2.0  # a format not named: taken as 16-bit


def _vision_shape(
    projector: ProjectorInfo | int, bits_per_weight: float, output_width: int
) -> tuple[_VisionShape, bool]:
    if isinstance(projector, ProjectorInfo):
        p = projector
        return _VisionShape(
            p.n_embd,
            p.image_size,
            p.patch_size,
            p.scale_factor,
            p.preproc_image_size,
            p.output_width,
            p.size_bytes,
            _bytes_per_weight(p.file_type),
        ), True
    size = int(projector)
    shape = _nearest(_FAMILY_VISION, max(1.0, size * 8 / bits_per_weight))
    return _VisionShape(
        shape.n_embd,
        shape.image_size,
        shape.patch_size,
        shape.scale_factor,
        shape.preproc_image_size,
        output_width,
        size,
        bits_per_weight / 8,
    ), False


def _embedding_bytes(t: _TextShape) -> int:
    """The token embedding matrix's share of the file; blocks taken as 12 x width^2 each."""
    embedding = t.n_vocab * t.n_embd
    return round(t.size_bytes * embedding / (embedding + t.n_layer * 12 * t.n_embd**2))


def _text_compute_reserved(t: _TextShape, ub: int, n_ctx: int, flash_attn: bool) -> int:
    """llama.cpp's text compute buffer as reserved (read from its log for SmolVLM's shapes):
    logits for a whole batch, or the attention mask and scores of a full context."""
    logits = ub * 4 * (t.n_vocab + 2 * t.n_embd)
    if flash_attn:
        return max(logits, ub * n_ctx * 2 + ub * t.n_embd * 16)
    return max(logits, ub * n_ctx * 4 * (t.n_head + 1) + ub * t.n_embd * 24)


def _vision_compute(v: _VisionShape, flash_attn: bool) -> int:
    """libmtmd's compute buffer for one tile (from its log): the FFN (taken as 4x the width)
    and three width-wide activations per patch; without flash attention, the scores."""
    fused = v.n_pos * 4 * 7 * v.n_embd
    if flash_attn:
        return fused
    heads = max(1, v.n_embd // 64)
    return max(fused, heads * v.n_pos**2 * 4 + 4 * v.n_pos * v.n_embd * 4)


def _max_tiles(v: _VisionShape, image_max_tokens: int | None) -> int:
    """Tiles of the largest image: a grid over the preprocessing size (without it, 2048 px),
    capped by image_max_tokens, plus the overview."""
    side = -(-(v.preproc_image_size or 2048) // v.image_size)
    grid = side * side
    if image_max_tokens is not None:
        grid = max(2, min(grid, image_max_tokens // max(1, v.tokens_per_tile)))
    return grid + 1


def _own_image_bytes(v: _VisionShape, image_max_tokens: int | None) -> int:
    """The largest image in memory at once when our own encoder reads it: the 8-bit tiles,
    the picture scaled to the preprocessing size, and the one tile normalized to F32."""
    tile = 3 * v.image_size**2
    side = v.preproc_image_size or 2048
    return _max_tiles(v, image_max_tokens) * tile + 3 * side * side + 4 * tile


def _image_bytes(v: _VisionShape, image_max_tokens: int | None) -> int:
    """The largest image in memory at once: libmtmd's F32 and 8-bit tiles, and the picture
    scaled to the preprocessing size, twice (ours and libmtmd's)."""
    tiles = _max_tiles(v, image_max_tokens)
    side = v.preproc_image_size or 2048
    return tiles * 3 * v.image_size**2 * 5 + 2 * 3 * side * side


def _layout_bytes(v: _VisionShape) -> int:
    """The layout-only copy of the projector: patch and position embeddings and the projection."""
    patch = v.patch_size**2 * 3 * v.n_embd * 2
    position = v.n_pos * v.n_embd * 4
    projection = round(v.n_embd * v.scale_factor**2 * v.output_width * v.bytes_per_weight)
    return min(v.size_bytes, patch + position + projection)


# -- the verdict ------------------------------------------------------------------------------

# Needing more than this share of the free RAM is "tight": the estimate is within about 10%
# of the measured peak, and other programs' memory moves by as much again; beyond 75% those
# two together can reach swap, which makes answers crawl.
TIGHT_RAM_SHARE = 0.75
# Video memory: the GPU driver's own context and fragmentation are not in the estimate, so
# offloaded parts must stay under 90% of the free video memory.
VRAM_BUDGET_SHARE = 0.90


class Fit(enum.Enum):
    FITS = "fits"
    TIGHT = "tight"
    DOES_NOT_FIT = "does not fit"


@dataclass(frozen=True)
class Verdict:
    fit: Fit
    message: str  # one line for a person
    ram_needed: int
    ram_available: int
    vram_needed: int = 0
    vram_budget: int | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "fit": self.fit.value}


def verdict(estimate: MemoryEstimate, machine: MachineMemory) -> Verdict:
    """Whether ``estimate`` fits on ``machine``, with a one-line message."""
    vram = estimate.vram
    if vram and not machine.has_gpu:  # a CPU build keeps every layer in RAM
        return _ram_verdict(estimate.total, machine, " (no GPU that llama.cpp can use here: all of it in RAM)")
    ram_needed = estimate.total if machine.unified else estimate.ram
    ram = _ram_verdict(ram_needed, machine, "")
    if not vram:
        return ram
    budget = vram_budget(machine)
    gpu = f"{format_bytes(vram)} of video memory ({format_bytes(budget)} usable)"
    if vram > budget:
        return Verdict(
            Fit.DOES_NOT_FIT,
            f"Does not fit on the GPU: needs about {gpu}. Offload fewer layers.",
            ram_needed,
            machine.available_ram,
            vram,
            budget,
        )
    message = ram.message.rstrip(".") + f", and {gpu}."
    return Verdict(ram.fit, message, ram_needed, machine.available_ram, vram, budget)


def vram_budget(machine: MachineMemory) -> int:
    """The video memory a model may take: its share of what the card has free (of all it has
    where the free memory is not known)."""
    free = machine.vram_free if machine.vram_free is not None else machine.vram_total
    return int((free or 0) * VRAM_BUDGET_SHARE)


def _ram_verdict(needed: int, machine: MachineMemory, note: str) -> Verdict:
    free = machine.available_ram
    need, have = format_bytes(needed), format_bytes(free)
    if needed > free:
        advice = (
            "Close other programs, or choose a smaller model, format or context."
            if needed < machine.total_ram * TIGHT_RAM_SHARE
            else "Choose a smaller model, format or context."
        )
        return Verdict(
            Fit.DOES_NOT_FIT, f"Does not fit: needs about {need}{note} but only {have} is free. {advice}", needed, free
        )
    if needed > free * TIGHT_RAM_SHARE:
        return Verdict(
            Fit.TIGHT,
            f"Tight: needs about {need} of the {have} free{note}; close other programs if the computer slows down.",
            needed,
            free,
        )
    return Verdict(Fit.FITS, f"Fits: needs about {need} of the {have} free{note}.", needed, free)
