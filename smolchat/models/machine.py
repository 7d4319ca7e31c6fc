"""This computer's memory: RAM, and the video memory llama.cpp can use.

Read with the standard library on Linux (/proc/meminfo, and a container's cgroup limit),
macOS (sysctl, vm_stat) and Windows (GlobalMemoryStatusEx); video memory through ggml's own
device list, or nvidia-smi where the bindings do not reach it.
"""

from __future__ import annotations

import ctypes
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from smolchat.errors import SmolChatError

MiB = 1 << 20


class MemoryReadError(SmolChatError):
    """This computer's memory could not be read."""


@dataclass(frozen=True)
class MachineMemory:
    total_ram: int
    available_ram: int  # what programs can still get without swapping
    vram_total: int | None = None  # None: no GPU that this build of llama.cpp can use
    vram_free: int | None = None
    gpu_name: str = ""
    unified: bool = False  # the GPU's memory is the computer's RAM (Apple silicon, integrated GPUs)

    @property
    def has_gpu(self) -> bool:
        return self.vram_total is not None

    def as_dict(self) -> dict:
        return asdict(self)


def parse_meminfo(text: str) -> tuple[int, int]:
    """Total and available bytes from Linux's /proc/meminfo."""
    kib: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            kib[key.strip()] = int(parts[0])
    if "MemTotal" not in kib:
        raise MemoryReadError("/proc/meminfo does not say how much memory this computer has.")
    # MemAvailable counts reclaimable caches; kernels before 3.14 lack it
    available = kib.get("MemAvailable", kib.get("MemFree", 0) + kib.get("Buffers", 0) + kib.get("Cached", 0))
    return kib["MemTotal"] * 1024, available * 1024


def parse_cgroup_limit(limit_text: str, usage_text: str) -> int | None:
    """Bytes a cgroup v2 container may still use (memory.max minus memory.current), if limited."""
    limit = limit_text.strip()
    if not limit.isdigit():  # "max": no limit
        return None
    usage = usage_text.strip()
    return max(0, int(limit) - (int(usage) if usage.isdigit() else 0))


def parse_vm_stat(text: str) -> int:
    """Bytes macOS can give programs without swapping: free, inactive and speculative pages."""
    size = re.search(r"page size of (\d+) bytes", text)
    page = int(size.group(1)) if size else 4096
    pages = {m.group(1): int(m.group(2)) for m in re.finditer(r"^Pages ([\w ]+):\s+(\d+)\.?$", text, re.MULTILINE)}
    return page * sum(pages.get(k, 0) for k in ("free", "inactive", "speculative"))


def parse_nvidia_smi(text: str) -> tuple[str, int, int] | None:
    """Name, total and free bytes from ``nvidia-smi --query-gpu=name,memory.total,memory.free
    --format=csv,noheader,nounits`` (MiB; several GPUs add up, as llama.cpp spreads layers)."""
    names, total, free = [], 0, 0
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
            continue
        names.append(parts[0])
        total += int(parts[1]) * MiB
        free += int(parts[2]) * MiB
    if not names:
        return None
    return _gpu_names(names), total, free


def _gpu_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{len(names)} GPUs ({', '.join(sorted(set(names)))})"


def _run(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _linux_ram() -> tuple[int, int]:
    total, available = parse_meminfo(Path("/proc/meminfo").read_text())
    cgroup = Path("/sys/fs/cgroup")
    try:  # inside a container its cgroup's limit counts, not the host's memory
        limit, usage = (cgroup / "memory.max").read_text(), (cgroup / "memory.current").read_text()
    except OSError:
        return total, available
    room = parse_cgroup_limit(limit, usage)
    if room is None:
        return total, available
    return min(total, int(limit)), min(available, room)


def _macos_ram() -> tuple[int, int]:
    total = _run(["sysctl", "-n", "hw.memsize"]).strip()
    if not total.isdigit():
        raise MemoryReadError("macOS did not say how much memory this computer has (sysctl hw.memsize).")
    return int(total), parse_vm_stat(_run(["vm_stat"]))


def _windows_ram() -> tuple[int, int]:
    class MemoryStatusEx(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatusEx()
    status.dwLength = ctypes.sizeof(MemoryStatusEx)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        raise MemoryReadError("Windows did not say how much memory this computer has.")
    return status.ullTotalPhys, status.ullAvailPhys


def ram() -> tuple[int, int]:
    """Total and available RAM in bytes."""
    try:
        if sys.platform.startswith("linux"):
            return _linux_ram()
        if sys.platform == "darwin":
            return _macos_ram()
        if sys.platform == "win32":
            return _windows_ram()
    except (OSError, ValueError) as e:
        raise MemoryReadError(f"This computer's memory could not be read ({e}).") from e
    raise MemoryReadError(f"SmolChat cannot read the memory of a {platform.system()} computer.")


def _ggml_gpus() -> tuple[str, int, int, bool] | None:
    """Name, total and free bytes of llama.cpp's GPUs, and whether they use the computer's RAM."""
    from smolchat.engine import backends

    gpus = [d for d in backends.devices() if d.is_gpu]
    if not gpus:
        return None
    # Apple's Metal reports a GPU, but its memory is the computer's RAM
    unified = all(d.kind == backends.DEVICE_IGPU or sys.platform == "darwin" for d in gpus)
    return (
        _gpu_names([d.description or "GPU" for d in gpus]),
        sum(d.total for d in gpus),
        sum(d.free for d in gpus),
        unified,
    )


def gpu_memory() -> tuple[str, int, int, bool] | None:
    """The GPU memory llama.cpp can use here: (name, total, free, unified), or None."""
    from smolchat.engine.backends import llama_cpp  # loads llama.cpp: only when memory is read

    if not llama_cpp.llama_supports_gpu_offload():
        return None  # a CPU build: a graphics card is of no use to it
    found = _ggml_gpus()
    if found is not None:
        return found
    smi = parse_nvidia_smi(
        _run(["nvidia-smi", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"])
    )
    return (*smi, False) if smi else None


def machine_memory() -> MachineMemory:
    """This computer's RAM, and the video memory llama.cpp can use (raises MemoryReadError)."""
    total, available = ram()
    gpu = gpu_memory()
    if gpu is None:
        return MachineMemory(total, available)
    name, vram_total, vram_free, unified = gpu
    return MachineMemory(total, available, vram_total, vram_free, name, unified)
