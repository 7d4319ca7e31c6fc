"""SmolChat starts where Python has no Unix-only modules (Windows): none is imported when a
module is, and every way of starting it (the window, each command's help) gets that far."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import smolchat
from smolchat.cli import COMMANDS

UNIX_ONLY = ("resource", "fcntl", "termios", "pwd", "grp")

# Prepended to the code run in a fresh interpreter: importing any of these fails there, as on
# Windows, also where something imported it at start-up.
WITHOUT_UNIX_MODULES = f"import sys\nfor name in {UNIX_ONLY!r}:\n    sys.modules[name] = None\n"


def python_without_unix_modules(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_UNIX_MODULES + code, *args], capture_output=True, text=True, timeout=300
    )


def smolchat_modules() -> list[str]:
    package = Path(smolchat.__file__).parent
    names = []
    for file in sorted(package.rglob("*.py")):
        parts = file.relative_to(package.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_without_unix_only_modules():
    modules = smolchat_modules()
    assert "smolchat.benchmark" in modules and "smolchat.ui.self_test" in modules
    code = f"""
import importlib, json
failed = {{}}
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = f"{{type(e).__name__}}: {{e}}"
print(json.dumps(failed))
"""
    done = python_without_unix_modules(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {}


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_the_command_line_starts_without_unix_only_modules(command):
    args = ["--help"] if command is None else [command, "--help"]
    done = python_without_unix_modules("import runpy; runpy.run_module('smolchat', run_name='__main__')", *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: smolchat {command or ''}".rstrip())


HEAVY = ("llama_cpp", "PySide6", "openvino", "onnxruntime", "onnx", "fastapi", "uvicorn")


def modules_loaded_by(code: str) -> set[str]:
    """The names of the modules a fresh interpreter holds after running ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_core_loads_neither_llama_cpp_nor_qt_nor_openvino():
    """Conversations, settings, budgets, the catalog and the memory estimate work without
    loading llama.cpp, so the window can show them before any model is loaded."""
    core = [
        "smolchat.store",
        "smolchat.store.export",
        "smolchat.settings",
        "smolchat.budget",
        "smolchat.budget.context",
        "smolchat.budget.detail",
        "smolchat.budget.fit",
        "smolchat.budget.images",
        "smolchat.models.catalog",
        "smolchat.models.formats",
        "smolchat.models.library",
        "smolchat.models.memory",
        "smolchat.models.machine",
        "smolchat.models.choice",
        "smolchat.models.hub",
        "smolchat.models.download",
        "smolchat.engine",
        "smolchat.engine.types",
        "smolchat.errors",
    ]
    loaded = modules_loaded_by("\n".join(f"import {name}" for name in core))
    assert set(core) <= loaded
    assert not loaded & set(HEAVY)


def test_conversations_settings_and_messages_load_only_the_standard_library():
    """What every start reads first (the history, the settings, a message) does not wait for
    numpy, Pillow, jinja2 or the GGUF reader either."""
    loaded = modules_loaded_by("import smolchat.store, smolchat.settings, smolchat.budget, smolchat.engine")
    assert not {name.partition(".")[0] for name in loaded} & {*HEAVY, "numpy", "PIL", "jinja2", "gguf"}


# Arguments each command parses (nothing is run).
COMMAND_LINES = {
    "ask": ["ask", "--model", "m.gguf", "What is this?"],
    "batch": ["batch", "photos", "--prompt", "Describe it.", "--model", "m.gguf"],
    "bench": ["bench", "--model", "m.gguf"],
    "budget": ["budget", "--model", "m.gguf"],
    "models": ["models", "catalog"],
    "info": ["info"],
    "serve": ["serve", "--model", "m.gguf"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_loads_only_its_own_module_and_nothing_heavy(command):
    """Naming a command imports that command's module and no other; the module itself loads
    neither llama.cpp, Qt, OpenVINO, the Hub client nor the engine until it runs."""
    loaded = modules_loaded_by(f"from smolchat import cli\nassert cli.parse({COMMAND_LINES[command]!r}).command")
    commands = {
        name for name in loaded if name.startswith("smolchat.cli.") and name[len("smolchat.cli.") :] in COMMANDS
    }
    assert commands == {f"smolchat.cli.{command}"}
    assert not loaded & {*HEAVY, "huggingface_hub", "smolchat.engine.engine", "smolchat.calibrate"}


@pytest.mark.parametrize("args", [[], ["--self-test"]])
def test_the_window_starts_without_the_command_line(args):
    """Starting the window imports no command of the command line (and so none of what they need)."""
    code = f"""
import sys, types
shown = []
app = types.ModuleType("smolchat.ui.app")
app.main = lambda self_test: shown.append(self_test) or 0
sys.modules["smolchat.ui.app"] = app
from smolchat.__main__ import main
assert main({args!r}) == 0 and shown == [{bool(args)!r}], shown
"""
    loaded = modules_loaded_by(code)
    assert not {name for name in loaded if name.startswith("smolchat.cli")}
