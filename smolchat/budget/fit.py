"""Context sizes and GPU layers that fit this computer, from the one memory estimate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smolchat.engine.gguf_info import ProjectorInfo, TextModelInfo
from smolchat.models.machine import MachineMemory
from smolchat.models.memory import VRAM_BUDGET_SHARE, Fit, estimate_memory, verdict, vram_budget
from smolchat.units import format_bytes

if TYPE_CHECKING:
    from smolchat.engine import EngineSettings, ModelInfo
    from smolchat.engine.vision.plan import VisionPlan

CONTEXT_STEP = 256  # llama.cpp pads the context to this anyway
NO_GPU_BUILD = (
    "This build of llama.cpp has no GPU support, so every layer runs on the CPU. "
    "Install a GPU build (see the README) to use a graphics card."
)


def memory_settings(model: ModelInfo) -> dict:
    """``estimate_memory``'s settings for a loaded model: its GPU layers, attention, image
    cap, and how it reads images."""
    s, plan = model.settings, model.vision_plan
    return dict(
        n_gpu_layers=s.n_gpu_layers,
        flash_attn=s.flash_attn,
        image_max_tokens=s.image_max_tokens,
        vision_backend=plan.backend if plan else "llama.cpp",
        vision_precision=plan.precision if plan else "F16",
        vision_on_gpu=bool(plan and plan.how == "GPU build"),
    )


def largest_context(text: TextModelInfo, projector: ProjectorInfo | None, machine: MachineMemory, **settings) -> int:
    """The largest context (a multiple of 256, at most what the model was trained for) whose
    memory still fits what is free; 0 when not even the smallest does. ``settings`` are
    ``estimate_memory``'s (n_gpu_layers, cache_type, vision_backend, ...)."""

    def fits(n_ctx: int) -> bool:
        return verdict(estimate_memory(text, projector, n_ctx=n_ctx, **settings), machine).fit is not Fit.DOES_NOT_FIT

    low, high = 0, max(text.n_ctx_train, CONTEXT_STEP) // CONTEXT_STEP
    while low < high:  # the largest number of steps that fits
        middle = (low + high + 1) // 2
        if fits(middle * CONTEXT_STEP):
            low = middle
        else:
            high = middle - 1
    return low * CONTEXT_STEP


@dataclass(frozen=True)
class GpuLayers:
    layers: int  # to offload: 0 .. block count + 1 (the output layer)
    message: str


def suggest_gpu_layers(
    text: TextModelInfo, projector: ProjectorInfo | None, machine: MachineMemory, *, n_ctx: int, **settings
) -> GpuLayers:
    """The most layers whose video memory stays within the verdict's share of what the card has
    free (``settings`` may name n_gpu_layers: it is what is being chosen, so it is ignored)."""
    from smolchat.engine.backends import llama_cpp  # loads llama.cpp: only when layers are chosen

    settings.pop("n_gpu_layers", None)
    if not llama_cpp.llama_supports_gpu_offload():
        return GpuLayers(0, NO_GPU_BUILD)
    if machine.vram_free is None:
        return GpuLayers(0, "No graphics card that llama.cpp can use was found; every layer runs on the CPU.")
    budget = vram_budget(machine)

    def vram(layers: int) -> int:
        return estimate_memory(text, projector, n_ctx=n_ctx, n_gpu_layers=layers, **settings).vram

    low, high = 0, text.max_gpu_layers
    while low < high:
        middle = (low + high + 1) // 2
        if vram(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    if low == text.max_gpu_layers:
        return GpuLayers(low, f"All {low} layers fit on {machine.gpu_name or 'the GPU'}.")
    return GpuLayers(
        low,
        f"{low} of {text.max_gpu_layers} layers fit in {VRAM_BUDGET_SHARE:.0%} of the free "
        f"video memory of {machine.gpu_name or 'the GPU'}.",
    )


def vision_memory_rule(
    settings: EngineSettings, machine: MachineMemory | None = None
) -> Callable[[TextModelInfo, ProjectorInfo, VisionPlan], str | None]:
    """The vision plan's memory rule with these settings (``calibrate.open_engine``'s ``fits``):
    a vision encoder whose estimate, with the model, its context and everything else, does not
    fit in the RAM free now is passed over for the next fastest. Says why a plan does not fit,
    or None. The RAM is read once, before the model loads."""
    from smolchat.models.machine import MemoryReadError, machine_memory

    try:
        have = machine or machine_memory()
    except MemoryReadError:
        return lambda text, projector, plan: None  # nothing to weigh against

    def check(text: TextModelInfo, projector: ProjectorInfo, plan: VisionPlan) -> str | None:
        estimate = estimate_memory(
            text,
            projector,
            n_ctx=settings.n_ctx,
            n_gpu_layers=settings.n_gpu_layers,
            flash_attn=settings.flash_attn,
            n_batch=settings.n_batch,
            image_max_tokens=settings.image_max_tokens,
            vision_backend=plan.backend,
            vision_precision=plan.precision,
            vision_on_gpu=False,
        )
        result = verdict(estimate, have)
        if result.fit is not Fit.DOES_NOT_FIT:
            return None
        return (
            f"needs about {format_bytes(result.ram_needed)} with the model and its context, "
            f"and {format_bytes(have.available_ram)} is free"
        )

    return check
