"""Which llama.cpp backend SmolChat computes with, as the About box and `smolchat info` say."""

from __future__ import annotations

import os
import subprocess
import sys

from smolchat.engine import backends
from smolchat.engine.backends import BuildInfo, Device, cpu_features, loaded_cpu_variant

ZEN4_INFO = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
    "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)


def test_the_notable_instruction_sets_are_read_from_llama_cpps_system_info():
    assert cpu_features(ZEN4_INFO) == ("AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16")
    assert cpu_features("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 0 | ") == ()
    assert cpu_features("CPU : NEON = 1 | ARM_FMA = 1 | DOTPROD = 1 | MATMUL_INT8 = 1 | SVE = 0 | ") == (
        "NEON",
        "ARM_FMA",
        "DOTPROD",
        "MATMUL_INT8",
    )


def test_the_cpu_library_ggml_chose_is_named_from_the_process_map():
    maps = (
        "7f01-7f02 r-xp 00000000 08:01 123 /opt/SmolChat/_internal/llama_cpp/lib/libggml-base.so.0.25.3\n"
        "7f03-7f04 r-xp 00000000 08:01 124 /opt/SmolChat/_internal/llama_cpp/lib/libggml-cpu-zen4.so\n"
    )
    assert loaded_cpu_variant(maps) == "zen4"
    assert loaded_cpu_variant("7f03-7f04 r-xp 0 0 1 /x/lib/libggml-cpu-armv8.2_2.so\n") == "armv8.2_2"
    assert loaded_cpu_variant("7f03-7f04 r-xp 0 0 1 /x/lib/libggml-cpu.so.0.25.3\n") is None  # built in


def test_the_summary_names_gpus_first_and_says_when_a_build_has_none():
    cpu = Device("CPU", "AMD EPYC", backends.DEVICE_CPU, 1, 1)
    gpu = Device("CUDA", "NVIDIA H100", backends.DEVICE_GPU, 80 << 30, 79 << 30)
    cpu_only = BuildInfo("0.3.36", ("AVX2", "AVX512"), "zen4", False, (cpu,))
    assert cpu_only.summary() == "CPU (zen4 build: AVX2, AVX512); no GPU support in this build"
    with_gpu = BuildInfo("0.3.36", ("AVX2",), None, True, (gpu, cpu))
    assert with_gpu.summary() == "CUDA: NVIDIA H100 + CPU (AVX2)"
    assert with_gpu.as_dict()["devices"][0] == dict(
        backend="CUDA", description="NVIDIA H100", total=80 << 30, free=79 << 30, gpu=True
    )
    assert BuildInfo("0.3.36", (), None, True, (cpu,)).summary() == "CPU"


def test_this_build_reports_its_cpu_and_what_it_can_offload():
    info = backends.build_info()
    assert any(d.backend == "CPU" and not d.is_gpu for d in info.devices)
    assert info.gpu_support == bool(backends.llama_cpp.llama_supports_gpu_offload())
    assert info.summary().startswith(("CPU", *{f"{d.backend}:" for d in info.gpus}))


def test_models_load_without_amx_weight_layouts_where_the_cpu_backend_offers_them():
    # llama.cpp's AMX kernels crash on the first token of SmolVLM-shaped Q8_0 and SmolLM2 Q4_1
    # models; on other CPUs the repacked layouts stay on for their speed.
    amx = any("AMX" in name.upper() for name in backends.cpu_extra_buffer_types())
    assert backends.llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is (not amx)
    assert backends.llama_cpp.llama_model_default_params().use_extra_bufts is (not amx)


def test_a_cpu_library_that_cannot_be_loaded_is_named_in_the_message():
    env = {**os.environ, backends.CPU_VARIANT_VARIABLE: "pentium4"}
    done = subprocess.run(
        [sys.executable, "-m", "smolchat", "info"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("smolchat: SMOLCHAT_CPU_VARIANT") and "Traceback" not in done.stderr
    variants = backends.cpu_variants()
    if variants:  # a build for other computers: the message lists its libraries
        assert all(variant in done.stderr for variant in variants)
    else:
        assert "built in" in done.stderr
