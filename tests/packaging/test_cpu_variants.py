"""SmolChat on llama.cpp's AVX2 CPU library (haswell), the level most laptops have.

The rest of the suite runs on the llama.cpp built for this computer, with its fastest
instructions; llama.cpp's kernels round differently from one instruction set to the next, so
answers differ. Here the tests that run a real model run again with the wheel the apps are
built from, told to load its AVX2 library.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AVX2 = "haswell"


def x86_64_linux_with_avx2() -> bool:
    if not sys.platform.startswith("linux") or platform.machine() != "x86_64":
        return False
    return "avx2" in Path("/proc/cpuinfo").read_text().split()


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not x86_64_linux_with_avx2(), reason="the AVX2 library runs on x86-64 CPUs with AVX2"),
]


@pytest.fixture(scope="module")
def portable_python(tmp_path_factory) -> Path:
    """Python with the lock's development packages and the apps' llama.cpp wheel (built once
    and cached, as for the apps: about 40 minutes the first time)."""
    venv = tmp_path_factory.mktemp("portable") / "venv"
    script = (
        'set -euo pipefail; source packaging/common.sh; ensure_uv; wheel="$(portable_llama_wheel)"; '
        'test_environment "$1" "$wheel"'
    )
    subprocess.run(["bash", "-c", script, "bash", str(venv)], cwd=ROOT, check=True, timeout=3600)
    return venv / "bin" / "python"


def on_avx2(**extra: str) -> dict[str, str]:
    return {**os.environ, "SMOLCHAT_CPU_VARIANT": AVX2, **extra}


@pytest.mark.timeout(3900)
def test_info_says_the_avx2_library_was_loaded_as_asked(portable_python):
    done = subprocess.run(
        [str(portable_python), "-m", "smolchat", "info", "--json"],
        cwd=ROOT,
        env=on_avx2(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    llama = json.loads(done.stdout)["llama_cpp"]
    assert llama["cpu_variant"] == AVX2 and llama["cpu_variant_forced"]
    assert "AVX2" in llama["cpu_features"] and "AVX512" not in llama["cpu_features"]
    assert f"{AVX2} build chosen by SMOLCHAT_CPU_VARIANT" in llama["summary"]


@pytest.mark.timeout(3900)
def test_the_real_model_tests_pass_on_the_avx2_library(portable_python):
    for selection in (["-m", "real_model", "tests/engine", "tests/cli"], ["tests/engine/test_backends.py"]):
        done = subprocess.run(
            [str(portable_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
            cwd=ROOT,
            env=on_avx2(),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-4000:]
