"""llama.cpp's compute backends: loading them, and saying which this build has.

A build of llama.cpp meant for other computers (the packaged app) carries its CPU code as
one library per instruction-set level (``libggml-cpu-haswell.so``, ``-zen4``, ...) and GPU
backends as libraries of their own; ggml picks the best one the computer can run, but only
when asked to load them. A build for this computer has them built in, and loading is a
no-op. Every SmolChat module reaches llama.cpp through ``llama_cpp`` from here, so the
backends are loaded before anything asks llama.cpp about its devices.

``SMOLCHAT_CPU_VARIANT=haswell`` (or any other tag of such a build) loads exactly that CPU
library instead: it runs SmolChat as on a computer with only that instruction set (haswell:
AVX2), to check or compare, and leaves the GPU backends out.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
from llama_cpp import _ggml  # llama-cpp-python's handle on libggml
from llama_cpp import llama_cpp as _llama_bindings

from smolchat.errors import SmolChatError

# ggml's device types (ggml-backend.h)
DEVICE_CPU, DEVICE_GPU, DEVICE_IGPU = 0, 1, 2


def _ggml_as_llama_sees_it() -> ctypes.CDLL:
    """libggml, the copy llama.cpp itself uses. A wheel cannot hold symlinks, so it carries
    libggml.so and libggml.so.0 as two copies of one file; libllama loads the .so.0 and each
    copy keeps its own list of backends. A lookup through libllama's handle searches the
    libraries it loaded, and so reaches its copy. (Windows looks only in the DLL itself, and
    has one ggml.dll.)"""
    try:
        lib = _llama_bindings._lib
        lib.ggml_backend_reg_count  # noqa: B018 (AttributeError where the lookup does not reach)
        return lib
    except AttributeError:
        return _ggml.libggml


_lib = _ggml_as_llama_sees_it()
_lib.ggml_backend_reg_count.restype = ctypes.c_size_t
_lib.ggml_backend_dev_count.restype = ctypes.c_size_t
_lib.ggml_backend_dev_get.restype = ctypes.c_void_p
_lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
_lib.ggml_backend_dev_type.restype = ctypes.c_int
_lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
_lib.ggml_backend_dev_description.restype = ctypes.c_char_p
_lib.ggml_backend_dev_description.argtypes = [ctypes.c_void_p]
_lib.ggml_backend_dev_memory.restype = None
_lib.ggml_backend_dev_memory.argtypes = [
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_size_t),
    ctypes.POINTER(ctypes.c_size_t),
]
_lib.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
_lib.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
_lib.ggml_backend_reg_name.restype = ctypes.c_char_p
_lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
_lib.ggml_backend_load_all_from_path.restype = None
_lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
_lib.ggml_backend_load.restype = ctypes.c_void_p
_lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
_lib.ggml_backend_dev_by_type.restype = ctypes.c_void_p
_lib.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
_lib.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
_lib.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_lib.ggml_backend_buft_name.restype = ctypes.c_char_p
_lib.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
# ggml_backend_buffer_type_t * (*)(ggml_backend_dev_t): a NULL-terminated list
_GET_EXTRA_BUFTS = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)

LIBRARY_DIR = Path(llama_cpp.__file__).parent / "lib"
CPU_VARIANT_VARIABLE = "SMOLCHAT_CPU_VARIANT"
_forced_cpu_variant: str | None = None  # the CPU library SMOLCHAT_CPU_VARIANT had loaded


class CpuVariantError(SmolChatError):
    """The CPU library SMOLCHAT_CPU_VARIANT names cannot be loaded."""


def _library_file(backend: str) -> str:
    """ggml's file name for a backend library: libggml-cpu-haswell.so, ggml-cpu-haswell.dll."""
    return f"ggml-{backend}.dll" if sys.platform == "win32" else f"libggml-{backend}.so"


def cpu_variants() -> list[str]:
    """The tags of the CPU libraries beside llama.cpp (haswell, zen4, ...); none where the
    CPU code is built in."""
    head, tail = _library_file("cpu-*").split("*")
    return sorted(p.name[len(head) : -len(tail)] for p in LIBRARY_DIR.glob(f"{head}*{tail}"))


@contextmanager
def _quiet_backend_log():
    """llama-cpp-python prints ggml's log until a model is loaded quietly, and takes ggml's
    info level for a warning; `info` and the About box say which library was chosen, so the
    'loaded CPU backend' line is noise there."""
    llama_log = logging.getLogger("llama-cpp-python")
    level = llama_log.level
    llama_log.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        llama_log.setLevel(level)


def load() -> None:
    """Loads the backend libraries next to llama.cpp's own, where none is built in: the best
    CPU library for this CPU, or the one SMOLCHAT_CPU_VARIANT names."""
    global _forced_cpu_variant
    forced = os.environ.get(CPU_VARIANT_VARIABLE, "").strip()
    if not forced:
        if _lib.ggml_backend_reg_count() == 0:
            with _quiet_backend_log():
                _lib.ggml_backend_load_all_from_path(str(LIBRARY_DIR).encode())
        return
    variants = cpu_variants()
    if not variants:
        raise CpuVariantError(
            f"{CPU_VARIANT_VARIABLE} asks for llama.cpp's '{forced}' CPU library, but this build of llama.cpp has "
            f"its CPU code built in. Unset {CPU_VARIANT_VARIABLE}; it works with builds made for other computers, "
            "such as the packaged app's."
        )
    if forced not in variants:
        raise CpuVariantError(
            f"{CPU_VARIANT_VARIABLE}={forced}: this build of llama.cpp has no such CPU library. "
            f"It has: {', '.join(variants)}."
        )
    if _forced_cpu_variant == forced:
        return
    with _quiet_backend_log():
        loaded = _lib.ggml_backend_load(str(LIBRARY_DIR / _library_file(f"cpu-{forced}")).encode())
    if not loaded:
        raise CpuVariantError(
            f"{CPU_VARIANT_VARIABLE}={forced}: llama.cpp could not load that CPU library; this CPU may lack the "
            f"instructions it was built for. Choose another ({', '.join(variants)}) or unset {CPU_VARIANT_VARIABLE}."
        )
    _forced_cpu_variant = forced


def cpu_extra_buffer_types() -> list[str]:
    """The CPU backend's extra weight layouts ("AMX", "CPU_REPACK", ...), in the order
    llama.cpp prefers them."""
    device = _lib.ggml_backend_dev_by_type(DEVICE_CPU)
    if not device:
        return []
    reg = _lib.ggml_backend_dev_backend_reg(device)
    address = _lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts")
    if not address:
        return []
    bufts = _GET_EXTRA_BUFTS(address)(device)
    names = []
    i = 0
    while bufts and bufts[i]:
        names.append((_lib.ggml_backend_buft_name(bufts[i]) or b"").decode(errors="replace"))
        i += 1
    return names


def extra_weight_layouts_safe() -> bool:
    """Whether llama.cpp may repack weights into the CPU backend's extra layouts.

    Its AMX matrix kernels crash (SIGSEGV in ggml_backend_amx_mul_mat) on the first token with
    SmolVLM's and SmolLM2's weights on Sapphire Rapids-class CPUs (seen with Q8_0 and Q4_1;
    upstream ggml-org/llama.cpp#20824, unfixed). Where the CPU backend offers AMX, models load
    without the extra layouts, so the plain AVX-512 kernels run."""
    return not any("AMX" in name.upper() for name in cpu_extra_buffer_types())


class _WithoutExtraWeightLayouts:
    """llama.cpp's default model parameters with the extra weight layouts turned off."""

    without_extra_weight_layouts = True  # marks the defaults as already changed

    def __init__(self, defaults: Callable[[], llama_cpp.llama_model_params]) -> None:
        self._defaults = defaults

    def __call__(self) -> llama_cpp.llama_model_params:
        params = self._defaults()
        params.use_extra_bufts = False
        return params


def _avoid_amx_weights() -> None:
    """The same for models loaded by llama-cpp-python's own ``Llama`` (the benchmark's
    baseline), which takes no such option: its default model parameters change."""
    if extra_weight_layouts_safe():
        return
    bindings = _llama_bindings
    defaults = bindings.llama_model_default_params
    if getattr(defaults, "without_extra_weight_layouts", False):
        return

    without_extra_weight_layouts = _WithoutExtraWeightLayouts(defaults)
    bindings.llama_model_default_params = without_extra_weight_layouts  # what Llama() calls
    llama_cpp.llama_model_default_params = without_extra_weight_layouts  # the package's name for it


load()
_avoid_amx_weights()


@dataclass(frozen=True)
class Device:
    backend: str  # ggml's name for the backend: CPU, CUDA, Vulkan, Metal, ...
    description: str
    kind: int  # DEVICE_*
    total: int  # bytes
    free: int

    @property
    def is_gpu(self) -> bool:
        return self.kind in (DEVICE_GPU, DEVICE_IGPU)


def devices() -> list[Device]:
    """The devices llama.cpp can compute on, CPU included."""
    found = []
    for i in range(_lib.ggml_backend_dev_count()):
        device = _lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        _lib.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
        backend = _lib.ggml_backend_reg_name(_lib.ggml_backend_dev_backend_reg(device)) or b"?"
        description = _lib.ggml_backend_dev_description(device) or b""
        found.append(
            Device(
                backend.decode(errors="replace"),
                description.decode(errors="replace").strip(),
                _lib.ggml_backend_dev_type(device),
                total.value,
                free.value,
            )
        )
    return found


@dataclass(frozen=True)
class BuildInfo:
    """Which llama.cpp this is and what it computes with."""

    llama_cpp_python: str
    cpu_features: tuple[str, ...]  # the instruction sets the CPU code in use was compiled for
    cpu_variant: str | None  # which of a packaged build's CPU libraries was loaded
    gpu_support: bool  # built with a GPU backend (CUDA, Vulkan, Metal, ...)
    devices: tuple[Device, ...]
    cpu_variant_forced: bool = False  # chosen by SMOLCHAT_CPU_VARIANT rather than for this CPU

    @property
    def gpus(self) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.is_gpu)

    def headline(self) -> str:
        """'llama.cpp (llama-cpp-python 0.3.36): <summary>', as `info` and the About box say it."""
        return f"llama.cpp (llama-cpp-python {self.llama_cpp_python}): {self.summary()}"

    def summary(self) -> str:
        """One line: e.g. 'CPU (zen4 build: AVX512, AVX512_BF16, ...)' or 'CUDA: NVIDIA H100 + CPU'."""
        cpu = "CPU"
        details = []
        if self.cpu_variant:
            forced = f" chosen by {CPU_VARIANT_VARIABLE}" if self.cpu_variant_forced else ""
            details.append(f"{self.cpu_variant} build{forced}")
        if self.cpu_features:
            details.append(", ".join(self.cpu_features))
        if details:
            cpu += f" ({': '.join(details)})"
        gpus = [f"{d.backend}: {d.description}" for d in self.gpus]
        if gpus:
            return " + ".join([*gpus, cpu])
        return cpu + ("" if self.gpu_support else "; no GPU support in this build")

    def as_dict(self) -> dict:
        return dict(
            llama_cpp_python=self.llama_cpp_python,
            cpu_features=list(self.cpu_features),
            cpu_variant=self.cpu_variant,
            cpu_variant_forced=self.cpu_variant_forced,
            gpu_support=self.gpu_support,
            devices=[
                dict(backend=d.backend, description=d.description, total=d.total, free=d.free, gpu=d.is_gpu)
                for d in self.devices
            ],
            summary=self.summary(),
            headline=self.headline(),
        )


# The instruction sets worth naming: the ones that set how fast llama.cpp runs on a CPU.
_NOTABLE = (
    "AVX2",
    "AVX512",
    "AVX512_VNNI",
    "AVX512_BF16",
    "AVX_VNNI",
    "AMX_INT8",
    "AMX_BF16",
    "NEON",
    "ARM_FMA",
    "DOTPROD",
    "MATMUL_INT8",
    "SVE",
    "SME",
)


def cpu_features(system_info: str) -> tuple[str, ...]:
    """The notable features in llama.cpp's system-info line ('CPU : AVX2 = 1 | ...')."""
    on = {name for name, value in re.findall(r"(\w+) = (\d+)", system_info) if value != "0"}
    return tuple(f for f in _NOTABLE if f in on)


def loaded_cpu_variant(maps: str | None = None) -> str | None:
    """The tag of the CPU library ggml chose (libggml-cpu-<tag>.so), read from what the
    process has mapped; None where the CPU code is built in, or the system cannot tell."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return None
    found = re.search(r"ggml-cpu-([\w.]+?)\.(?:so|dll|dylib)", maps)
    return found.group(1) if found else None


def build_info() -> BuildInfo:
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return BuildInfo(
        llama_cpp.__version__,
        cpu_features(info),
        _forced_cpu_variant or loaded_cpu_variant(),
        bool(llama_cpp.llama_supports_gpu_offload()),
        tuple(devices()),
        cpu_variant_forced=_forced_cpu_variant is not None,
    )


__all__ = [
    "llama_cpp",
    "load",
    "cpu_variants",
    "CPU_VARIANT_VARIABLE",
    "CpuVariantError",
    "cpu_extra_buffer_types",
    "extra_weight_layouts_safe",
    "devices",
    "Device",
    "BuildInfo",
    "build_info",
    "cpu_features",
    "loaded_cpu_variant",
    "LIBRARY_DIR",
    "DEVICE_GPU",
    "DEVICE_IGPU",
]
