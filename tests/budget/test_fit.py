"""Context sizes and GPU layers chosen from the memory that is free."""

from __future__ import annotations

import llama_cpp

from smolchat.budget.fit import NO_GPU_BUILD, largest_context, suggest_gpu_layers
from smolchat.engine.gguf_info import inspect_projector, inspect_text_model
from smolchat.models.machine import MachineMemory
from smolchat.models.memory import VRAM_BUDGET_SHARE, Fit, estimate_memory, verdict

GB = 1_000_000_000
CPU = dict(vision_backend="llama.cpp", vision_precision="F16", vision_on_gpu=False)


def test_the_largest_context_is_the_last_that_fits(tiny_pair):
    text, projector = inspect_text_model(tiny_pair[0]), inspect_projector(tiny_pair[1])
    at = {n: estimate_memory(text, projector, n_ctx=n, **CPU).total for n in (1024, 2048)}
    per_token = (at[2048] - at[1024]) / 1024
    # free memory for about 1,700 tokens: 1,536 is the largest multiple of 256 that fits
    machine = MachineMemory(32 * GB, int(at[1024] + 700 * per_token))
    n_ctx = largest_context(text, projector, machine, **CPU)
    assert n_ctx == 1536
    assert verdict(estimate_memory(text, projector, n_ctx=n_ctx, **CPU), machine).fit is not Fit.DOES_NOT_FIT
    assert verdict(estimate_memory(text, projector, n_ctx=n_ctx + 256, **CPU), machine).fit is Fit.DOES_NOT_FIT
    assert largest_context(text, projector, MachineMemory(32 * GB, 16 * GB), **CPU) == text.n_ctx_train
    assert largest_context(text, projector, MachineMemory(GB, 1000), **CPU) == 0


def test_gpu_layers_on_this_build(tiny_pair):
    text, projector = inspect_text_model(tiny_pair[0]), inspect_projector(tiny_pair[1])
    suggestion = suggest_gpu_layers(
        text, projector, MachineMemory(32 * GB, 16 * GB, 8 * GB, 8 * GB, "GPU"), n_ctx=4096, **CPU
    )
    if not llama_cpp.llama_supports_gpu_offload():
        assert suggestion.layers == 0 and suggestion.message == NO_GPU_BUILD
    else:
        assert suggestion.layers == text.max_gpu_layers


def test_the_suggested_gpu_layers_are_the_most_the_verdict_lets_fit(tiny_pair, monkeypatch):
    # a GPU build of llama.cpp, which this computer may not have: only the question is answered so
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    text, projector = inspect_text_model(tiny_pair[0]), inspect_projector(tiny_pair[1])
    all_but_two = estimate_memory(text, projector, n_ctx=4096, n_gpu_layers=text.max_gpu_layers - 2, **CPU).vram
    card = MachineMemory(32 * GB, 16 * GB, 2 * all_but_two, int(all_but_two / VRAM_BUDGET_SHARE) + 2, "GPU")
    suggestion = suggest_gpu_layers(text, projector, card, n_ctx=4096, **CPU)
    assert suggestion.layers == text.max_gpu_layers - 2
    assert suggestion.message.startswith(f"{suggestion.layers} of {text.max_gpu_layers} layers fit in 90% ")

    def verdict_with(layers: int) -> Fit:
        return verdict(estimate_memory(text, projector, n_ctx=4096, n_gpu_layers=layers, **CPU), card).fit

    assert verdict_with(suggestion.layers) is Fit.FITS
    assert verdict_with(suggestion.layers + 1) is Fit.DOES_NOT_FIT
