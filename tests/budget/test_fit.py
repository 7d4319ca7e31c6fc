"""Context sizes and GPU layers chosen from the memory that is free."""

from __future__ import annotations

import llama_cpp

from smolchat.budget.fit import NO_GPU_BUILD, largest_context, suggest_gpu_layers
from smolchat.engine import inspect_projector, inspect_text_model
from smolchat.models.machine import MachineMemory
from smolchat.models.memory import Fit, estimate_memory, verdict

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
    suggestion = suggest_gpu_layers(text, projector, MachineMemory(32 * GB, 16 * GB, 8 * GB, 8 * GB, "GPU"),
                                    n_ctx=4096, **CPU)
    if not llama_cpp.llama_supports_gpu_offload():
        assert suggestion.layers == 0 and suggestion.message == NO_GPU_BUILD
    else:
        assert suggestion.layers == text.max_gpu_layers
