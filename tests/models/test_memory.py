"""The memory estimate and the verdict a user sees before loading or downloading a model."""

from __future__ import annotations

from dataclasses import replace

import llama_cpp
import pytest

from smolchat.engine import backends
from smolchat.engine.gguf_info import file_type_name, inspect_projector, inspect_text_model
from smolchat.engine.synthetic import TINY, write_mmproj
from smolchat.errors import SmolChatError
from smolchat.models import machine as machine_module
from smolchat.models import memory
from smolchat.models.machine import (
    MachineMemory,
    parse_cgroup_limit,
    parse_meminfo,
    parse_nvidia_smi,
    parse_vm_stat,
)
from smolchat.models.memory import Fit, MemoryEstimate, Part, estimate_memory, verdict

GB = 1_000_000_000
# The real 256M pair's files (ggml-org/SmolVLM-256M-Instruct-GGUF)
TEXT_256M_Q8 = 175_054_528
MMPROJ_256M_Q8 = 103_769_856
# libmtmd on the CPU: nothing here depends on this computer
CPU_LIBMTMD = dict(vision_backend="llama.cpp", vision_precision="F16", vision_on_gpu=False)


@pytest.fixture(scope="module")
def tiny(tiny_pair):
    text, mmproj = tiny_pair
    return inspect_text_model(text), inspect_projector(mmproj)


def kv_formula(info, n_ctx: int, bytes_per_element: float = 2) -> int:
    return round(2 * info.n_layer * info.n_head_kv * info.head_dim * n_ctx * bytes_per_element)


# -- the estimate -------------------------------------------------------------------------------


def test_kv_cache_is_k_and_v_for_every_layer_head_and_position(tiny):
    text, projector = tiny
    estimate = estimate_memory(text, projector, n_ctx=4096, **CPU_LIBMTMD)
    assert estimate.kv_cache.total == kv_formula(text, 4096) > 0
    quantized = estimate_memory(text, projector, n_ctx=4096, cache_type="q8_0", **CPU_LIBMTMD)
    assert quantized.kv_cache.total == kv_formula(text, 4096, 34 / 32)


def test_kv_cache_grows_linearly_with_the_context_and_nothing_else_does(tiny):
    text, projector = tiny
    small, double, eightfold = (estimate_memory(text, projector, n_ctx=n, **CPU_LIBMTMD) for n in (2048, 4096, 16384))
    assert double.kv_cache.total == 2 * small.kv_cache.total
    assert eightfold.kv_cache.total == 8 * small.kv_cache.total
    for name in ("text_weights", "projector_weights", "vision_work", "runtime", "text_compute"):
        assert getattr(small, name) == getattr(eightfold, name), name
    assert eightfold.total - small.total == eightfold.kv_cache.total - small.kv_cache.total


def test_context_is_rounded_up_as_llama_cpp_does(tiny):
    text, _ = tiny
    assert estimate_memory(text, n_ctx=4000).kv_cache.total == kv_formula(text, 4096)


def test_weights_are_the_files(tiny):
    text, projector = tiny
    estimate = estimate_memory(text, projector, n_ctx=4096, **CPU_LIBMTMD)
    assert estimate.text_weights.total == text.size_bytes
    assert estimate.projector_weights.total == projector.size_bytes
    assert estimate.from_metadata
    assert estimate.vram == 0 and estimate.ram == estimate.total


def test_an_f32_projector_is_held_in_16_bits_once_converted(tiny, tmp_path):
    text, f16 = tiny
    f32 = inspect_projector(
        write_mmproj(tmp_path / "mmproj-f32.gguf", TINY.vision, output_width=text.n_embd, weight_type="F32")
    )
    assert (file_type_name(f16.file_type), file_type_name(f32.file_type)) == ("F16", "F32")
    estimate = estimate_memory(text, f32, n_ctx=4096, **CPU_LIBMTMD)
    assert estimate.projector_weights.total == f32.size_bytes // 2


def test_text_only_has_no_vision_part(tiny):
    text, projector = tiny
    alone = estimate_memory(text, None, n_ctx=4096)
    assert alone.projector_weights.total == 0 and alone.vision_work.total == 0
    assert alone.vision_backend is None
    paired = estimate_memory(text, projector, n_ctx=4096, **CPU_LIBMTMD)
    assert paired.total > alone.total
    assert not any("Vision" in line for line in alone.lines())


def test_an_estimate_from_file_sizes_says_so():
    estimate = estimate_memory(TEXT_256M_Q8, MMPROJ_256M_Q8, n_ctx=4096, projector_bits_per_weight=8.5, **CPU_LIBMTMD)
    assert not estimate.from_metadata
    assert "estimated from the file size" in estimate.describe()
    assert estimate.text_weights.total == TEXT_256M_Q8
    # SmolVLM-256M's text model: 30 layers, 3 KV heads of 64
    assert estimate.kv_cache.total == 2 * 30 * 3 * 64 * 4096 * 2
    # about 0.6 GB, as measured for this shape (benchmarks/memory_estimate.py)
    assert 0.4 * GB < estimate.total < 0.9 * GB


def test_file_sizes_pick_the_model_of_that_size():
    # SmolVLM 2.2B at Q4_K_M: 1.7B parameters, 24 layers with 32 KV heads
    large = estimate_memory(1_055_000_000, n_ctx=4096, text_bits_per_weight=4.85)
    assert large.kv_cache.total == 2 * 24 * 32 * 64 * 4096 * 2
    small = estimate_memory(TEXT_256M_Q8, n_ctx=4096)
    assert large.kv_cache.total > 8 * small.kv_cache.total


def test_gpu_layers_move_weights_and_kv_cache_to_video_memory(tiny):
    text, projector = tiny
    cpu = estimate_memory(text, projector, n_ctx=4096, **CPU_LIBMTMD)
    half = estimate_memory(text, projector, n_ctx=4096, n_gpu_layers=text.n_layer // 2, **CPU_LIBMTMD)
    full = estimate_memory(text, projector, n_ctx=4096, n_gpu_layers=-1, **CPU_LIBMTMD)
    assert cpu.vram == 0
    assert 0 < half.kv_cache.vram == half.kv_cache.ram
    assert full.kv_cache.ram == 0 and full.kv_cache.vram == cpu.kv_cache.total
    assert 0 < half.text_weights.vram < full.text_weights.vram
    assert full.ram < half.ram < cpu.ram
    # the token embeddings stay in RAM, and the output layer on the GPU is a copy of them
    assert full.text_weights.ram > 0
    assert full.text_weights.total > cpu.text_weights.total
    # the vision encoder is not moved by text layers
    assert full.projector_weights == cpu.projector_weights


def test_libmtmd_on_a_gpu_holds_the_projector_in_video_memory(tiny):
    text, projector = tiny
    estimate = estimate_memory(
        text, projector, n_ctx=4096, vision_backend="llama.cpp", vision_precision="F16", vision_on_gpu=True
    )
    assert estimate.projector_weights == Part(0, projector.size_bytes)


def test_openvino_grows_with_the_projector_faster_than_libmtmd(tiny):
    text, projector = tiny
    openvino = dict(vision_backend="openvino", vision_precision="BF16", vision_on_gpu=False)
    libmtmd = estimate_memory(text, projector, n_ctx=4096, **CPU_LIBMTMD)
    ov = estimate_memory(text, projector, n_ctx=4096, **openvino)
    # a projector 100 MB larger: libmtmd holds 100 MB more, OpenVINO several times that
    bigger = replace(projector, size_bytes=projector.size_bytes + 100_000_000)
    libmtmd_growth = estimate_memory(text, bigger, n_ctx=4096, **CPU_LIBMTMD).total - libmtmd.total
    ov_growth = estimate_memory(text, bigger, n_ctx=4096, **openvino).total - ov.total
    assert libmtmd_growth == 100_000_000
    assert ov_growth > 3 * libmtmd_growth
    f32 = estimate_memory(
        text, bigger, n_ctx=4096, vision_backend="openvino", vision_precision="F32", vision_on_gpu=False
    )
    assert f32.total > estimate_memory(text, bigger, n_ctx=4096, **openvino).total


def test_capping_image_tokens_lowers_the_vision_working_memory(tiny):
    text, projector = tiny
    full = estimate_memory(text, projector, n_ctx=4096, **CPU_LIBMTMD)
    capped = estimate_memory(text, projector, n_ctx=4096, image_max_tokens=2 * projector.tokens_per_tile, **CPU_LIBMTMD)
    assert capped.vision_work.total < full.vision_work.total


def test_flash_attention_off_needs_the_attention_scores():
    on = estimate_memory(TEXT_256M_Q8, n_ctx=16384)
    off = estimate_memory(TEXT_256M_Q8, n_ctx=16384, flash_attn=False)
    assert off.text_compute.total > on.text_compute.total + 100 * 2**20


def test_unknown_settings_are_refused_with_a_message(tiny):
    text, projector = tiny
    with pytest.raises(SmolChatError, match="cache type"):
        estimate_memory(text, n_ctx=4096, cache_type="q3_weird")
    with pytest.raises(SmolChatError, match="vision encoder"):
        estimate_memory(text, projector, n_ctx=4096, vision_backend="cuda", vision_precision="F16", vision_on_gpu=False)


def test_the_parts_read_as_lines(tiny):
    text, projector = tiny
    estimate = estimate_memory(text, projector, n_ctx=4096, **CPU_LIBMTMD)
    lines = estimate.lines()
    assert any(line.startswith("KV cache (4,096 tokens): ") for line in lines)
    assert lines[-1].startswith("About ")
    assert estimate.as_dict()["total"] == estimate.total


def test_expected_vision_follows_what_is_asked_without_measuring():
    choice = memory.expected_vision("llama.cpp", "F16", measure=False)
    if llama_cpp.llama_supports_gpu_offload():
        assert choice.on_gpu
    else:
        assert (choice.backend, choice.precision, choice.on_gpu) == ("llama.cpp", "F16", False)
    guess = memory.expected_vision(measure=False)
    assert guess.backend in ("llama.cpp", "openvino") and guess.precision


# -- the verdict ------------------------------------------------------------------------------


def estimate_of(ram: int, vram: int = 0) -> MemoryEstimate:
    zero = Part(0)
    return MemoryEstimate(Part(ram, vram), zero, zero, zero, zero, zero, True, 4096, None)


def machine(available: float, total: float = 32 * GB, vram_free: float | None = None, **kw) -> MachineMemory:
    if vram_free is None:
        return MachineMemory(int(total), int(available), **kw)
    return MachineMemory(int(total), int(available), int(2 * vram_free), int(vram_free), "GPU", **kw)


def test_verdict_fits_with_room_to_spare():
    v = verdict(estimate_of(900_000_000), machine(14.2 * GB))
    assert v.fit is Fit.FITS
    assert v.message == "Fits: needs about 900 MB of the 14.2 GB free."


def test_verdict_is_tight_above_three_quarters_of_the_free_memory():
    assert verdict(estimate_of(int(0.74 * 8 * GB)), machine(8 * GB)).fit is Fit.FITS
    tight = verdict(estimate_of(int(0.8 * 8 * GB)), machine(8 * GB))
    assert tight.fit is Fit.TIGHT and tight.message.startswith("Tight:")


def test_verdict_does_not_fit_beyond_the_free_memory():
    v = verdict(estimate_of(3 * GB), machine(2 * GB, total=16 * GB))
    assert v.fit is Fit.DOES_NOT_FIT
    assert "3.0 GB" in v.message and "2.0 GB" in v.message and "Close other programs" in v.message
    hopeless = verdict(estimate_of(20 * GB), machine(2 * GB, total=16 * GB))
    assert "Close other programs" not in hopeless.message
    assert hopeless.as_dict()["fit"] == "does not fit"


def test_verdict_keeps_video_memory_under_90_percent_of_what_is_free():
    fits = verdict(estimate_of(GB, vram=int(0.85 * 8 * GB)), machine(16 * GB, vram_free=8 * GB))
    assert fits.fit is Fit.FITS and "video memory" in fits.message
    assert fits.vram_budget == int(0.9 * 8 * GB)
    too_much = verdict(estimate_of(GB, vram=int(0.95 * 8 * GB)), machine(16 * GB, vram_free=8 * GB))
    assert too_much.fit is Fit.DOES_NOT_FIT and "Offload fewer layers" in too_much.message


def test_without_a_usable_gpu_the_offloaded_part_counts_as_ram():
    v = verdict(estimate_of(2 * GB, vram=5 * GB), machine(6 * GB))
    assert v.fit is Fit.DOES_NOT_FIT and v.ram_needed == 7 * GB and "no GPU" in v.message


def test_unified_memory_counts_the_gpu_part_in_ram_too():
    v = verdict(estimate_of(2 * GB, vram=3 * GB), machine(6 * GB, vram_free=6 * GB, unified=True))
    assert v.ram_needed == 5 * GB and v.fit is Fit.TIGHT


# -- reading this computer ------------------------------------------------------------------

MEMINFO = """MemTotal:       24684152 kB
MemFree:        23641860 kB
MemAvailable:   24270480 kB
Buffers:           71428 kB
Cached:           846244 kB
SwapTotal:             0 kB
HugePages_Total:       0
"""


def test_meminfo_gives_total_and_available_bytes():
    assert parse_meminfo(MEMINFO) == (24684152 * 1024, 24270480 * 1024)
    old_kernel = MEMINFO.replace("MemAvailable:   24270480 kB\n", "")
    assert parse_meminfo(old_kernel)[1] == (23641860 + 71428 + 846244) * 1024
    with pytest.raises(SmolChatError):
        parse_meminfo("MemFree: 1 kB\n")


def test_cgroup_limit():
    assert parse_cgroup_limit("max\n", "123\n") is None
    assert parse_cgroup_limit("4294967296\n", "1073741824\n") == 3 * 2**30


def test_vm_stat_counts_free_inactive_and_speculative_pages():
    text = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               10000.
Pages active:                            200000.
Pages inactive:                           30000.
Pages speculative:                         5000.
Pages wired down:                         90000.
"""
    assert parse_vm_stat(text) == (10000 + 30000 + 5000) * 16384


def test_nvidia_smi_adds_up_gpus():
    assert parse_nvidia_smi("NVIDIA GeForce RTX 4070, 12282, 11000\n") == (
        "NVIDIA GeForce RTX 4070",
        12282 * 2**20,
        11000 * 2**20,
    )
    name, total, free = parse_nvidia_smi("A, 1000, 500\nB, 2000, 1500\n")
    assert (total, free) == (3000 * 2**20, 2000 * 2**20) and name.startswith("2 GPUs")
    assert parse_nvidia_smi("") is None
    assert parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the driver.") is None


def test_machine_memory_reads_this_computer():
    m = machine_module.machine_memory()
    assert 256 * 2**20 < m.total_ram < 2**50
    assert 0 < m.available_ram <= m.total_ram
    if not llama_cpp.llama_supports_gpu_offload():
        assert m.vram_total is None and not m.has_gpu
    else:
        assert m.vram_total is None or m.vram_total > 0
    assert verdict(estimate_of(1), m).fit is Fit.FITS


def test_llama_cpp_lists_its_devices_with_their_memory():
    devices = backends.devices()
    assert devices, "llama-cpp-python's libggml handle is where the GPU's memory is read"
    cpu = [d for d in devices if d.backend == "CPU"]
    assert cpu and cpu[0].total > 0 and not cpu[0].is_gpu
    if not llama_cpp.llama_supports_gpu_offload():
        assert machine_module.gpu_memory() is None
