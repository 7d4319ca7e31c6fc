"""Start-up from source: seconds from ``python -m smolchat`` to the window on screen, and what
the light parts of the core cost to import.

Two homes are timed: an empty one (first run: the window opens on the model picker) and one
with a SmolVLM-256M-shaped model installed (the window, then the model loads behind it).
Every run starts a new process; the files stay in the page cache between runs, so this is the
start a user sees the second time, not after a reboot (``bundle_start.py`` does that for the
packaged app).

Run under a real X server: ``xvfb-run -s "-screen 0 1400x900x24" uv run python
benchmarks/cold_start.py``. To compare two checkouts, run it once with ``PYTHONPATH`` set to each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gui_session import time_to_window  # noqa: E402

LIGHT_CORE = "import smolchat.store, smolchat.settings, smolchat.budget"


def import_seconds(statement: str, runs: int) -> list[float]:
    """Whole-process seconds of ``python -c statement`` (the interpreter's own start included)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        times.append(round(time.perf_counter() - started, 3))
    return times


def home_with_model(models: Path) -> Path:
    from benchmarks.smolvlm_256m_shaped import ensure_pair

    text, mmproj, _ = ensure_pair(models)
    home = Path(tempfile.mkdtemp(prefix="smolchat-start-model-"))
    shared_cache = Path(os.environ.get("SMOLCHAT_CACHE", Path.home() / ".cache" / "SmolChat"))
    shared_cache.mkdir(parents=True, exist_ok=True)
    (home / "cache").symlink_to(shared_cache)  # the vision measurement is taken once per machine
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from smolchat.models.library import Library; "
            "Library().import_pair(sys.argv[1], sys.argv[2], name='SmolVLM-256M-shaped')",
            str(text),
            str(mmproj),
        ],
        check=True,
        env={**os.environ, "SMOLCHAT_HOME": str(home)},
    )
    return home


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", type=Path, default=ROOT / "benchmarks" / ".models")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    result: dict[str, list[float]] = {"import light core": import_seconds(LIGHT_CORE, args.runs)}
    empty = tempfile.mkdtemp(prefix="smolchat-start-empty-")
    for label, home in (
        ("window, first run", Path(empty)),
        ("window, a model installed", home_with_model(args.models)),
    ):
        os.environ["SMOLCHAT_HOME"] = str(home)
        time_to_window(1)  # not counted: the first start after a change compiles bytecode
        result[label] = time_to_window(args.runs)
    if args.json:
        print(json.dumps(result))
    else:
        for label, times in result.items():
            print(f"{label}: median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
