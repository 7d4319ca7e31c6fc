"""What this CPU says about itself: its name, its cores and whether it computes in BF16."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Instruction sets with BF16 dot products, as Linux's /proc/cpuinfo names them (x86: flags,
# Arm: Features).
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@dataclass(frozen=True)
class CpuReport:
    model: str
    logical_cores: int
    physical_cores: int
    bf16: bool  # the CPU reports BF16 dot-product instructions

    @property
    def key(self) -> str:
        """Identifies the CPU for cached measurements."""
        return f"{self.model}|{self.physical_cores}/{self.logical_cores}|bf16={int(self.bf16)}"

    def thread_candidates(self) -> list[int]:
        """Thread counts worth measuring: all physical cores, all logical ones, and half."""
        return sorted({max(1, self.physical_cores // 2), self.physical_cores, self.logical_cores})


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _linux(cpuinfo: str, logical: int) -> CpuReport:
    model, flags = "", set()
    cores: set[tuple[str, str]] = set()
    physical_id = "0"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "CPU part") and not model:
            model = value
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    # A process may be allowed fewer cores than the machine has; never count more than that.
    physical = min(len(cores), logical) if cores else logical
    return CpuReport(model or platform.processor() or "unknown", logical, physical, bool(flags & _BF16_FLAGS))


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def detect() -> CpuReport:
    logical = _available_cores()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        return _linux(cpuinfo.read_text(errors="replace"), logical)
    if platform.system() == "Darwin":
        physical = int(_sysctl("hw.physicalcpu") or logical)
        return CpuReport(
            _sysctl("machdep.cpu.brand_string") or platform.machine(),
            logical,
            min(physical, logical),
            _sysctl("hw.optional.arm.FEAT_BF16") == "1",
        )
    # Windows and others report no instruction sets here: the measurement decides.
    return CpuReport(platform.processor() or platform.machine() or "unknown", logical, logical, False)
