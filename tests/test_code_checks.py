"""The checks the build holds the code to, run with the tests so that a change that breaks one
fails where it is made: the import contracts (arrows point down, Qt only in the window), the
linter and the formatter, the type checker on the core packages. Their rules are in
pyproject.toml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command: str | Path) -> subprocess.CompletedProcess:
    # the checkout itself first on the path: the checks read this tree, not an installed copy
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(c) for c in command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_imports_keep_to_the_layers_and_only_the_window_imports_qt():
    result = run(BIN / "lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("check", [("check",), ("format", "--check")], ids=["lint", "format"])
def test_ruff_finds_nothing(check):
    result = run(sys.executable, "-m", "ruff", *check, "--no-cache", ".")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_core_type_checks():
    result = run(sys.executable, "-m", "mypy")  # the packages and rules: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
