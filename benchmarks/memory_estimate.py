"""SmolChat's memory estimate against the peak RSS that ``smolchat bench`` measures.

On the SmolVLM-256M-shaped pair of ``smolvlm_256m_shaped.py`` (random weights, real shapes)
and its 1024x768 photo, runs ``smolchat bench --json`` for the vision encoder this computer
picks by default and for libmtmd's (``--vision llama.cpp``), at n_ctx 4096 and 16384, and
prints the estimate's parts next to the measured peak RSS.

    uv run python benchmarks/memory_estimate.py [--runs 1] [--n-ctx 4096 16384] [--out DIR]

The estimate is for the largest image the model reads (17 tiles); the photo takes 13, so the
estimate should come out a little high. Exits with 1 when any estimate is more than 20% off.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from smolchat import calibrate
from smolchat.engine.gguf_info import inspect_projector, inspect_text_model
from smolchat.engine.vision.plan import ONNXRUNTIME, projector_for
from smolchat.models.memory import MemoryEstimate, MiB, estimate_memory, expected_vision

sys.path.insert(0, str(Path(__file__).parent))
from smolvlm_256m_shaped import ensure_pair  # noqa: E402

LIMIT = 0.20
COLUMNS = (
    "vision",
    "n_ctx",
    "text",
    "mmproj",
    "KV",
    "text compute",
    "vision work",
    "runtime",
    "estimate MiB",
    "peak RSS MiB",
    "error",
)


def bench(text: Path, mmproj: Path, photo: Path, n_ctx: int, runs: int, vision: str) -> dict:
    command = [
        sys.executable,
        "-m",
        "smolchat",
        "bench",
        "--json",
        "--model",
        str(text),
        "--mmproj",
        str(mmproj),
        "--image",
        str(photo),
        "--n-ctx",
        str(n_ctx),
        "--runs",
        str(runs),
        "--turns",
        "2",
        "--max-tokens",
        "64",
        "--vision",
        vision,
    ]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def prepare_copies(mmproj: Path, file_type: int | None, vision: str) -> None:
    """Make the projector copy the engine will load (a BF16 or layout-only file) and the saved
    ONNX Runtime encoder now, so that making them once is not part of the measured peak."""
    plan = calibrate.plan(backend=vision if vision != "auto" else "auto")
    projector_for(mmproj, file_type, plan)
    if plan.backend == ONNXRUNTIME:
        from smolchat.engine.vision.onnx_encoder import exported_model

        exported_model(mmproj, plan.precision)


def row(vision: str, n_ctx: int, estimate: MemoryEstimate, measured_mib: float) -> tuple[str, ...]:
    mib = lambda n: f"{n / MiB:.0f}"  # noqa: E731
    error = estimate.total / MiB / measured_mib - 1
    return (
        vision,
        str(n_ctx),
        mib(estimate.text_weights.total),
        mib(estimate.projector_weights.total),
        mib(estimate.kv_cache.total),
        mib(estimate.text_compute.total),
        mib(estimate.vision_work.total),
        mib(estimate.runtime.total),
        mib(estimate.total),
        f"{measured_mib:.0f}",
        f"{error:+.1%}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/.models"))
    parser.add_argument("--runs", type=int, default=1, help="measured runs after the warm-up (peak RSS barely moves)")
    parser.add_argument("--n-ctx", type=int, nargs="+", default=[4096, 16384])
    args = parser.parse_args()

    text_path, mmproj_path, photo = ensure_pair(args.out)
    text, projector = inspect_text_model(text_path), inspect_projector(mmproj_path)
    rows, worst = [], 0.0
    for vision in ("auto", "llama.cpp"):
        choice = expected_vision(vision)  # what the engine will pick: measured once per computer
        prepare_copies(mmproj_path, projector.file_type, vision)
        for n_ctx in args.n_ctx:
            measured = bench(text_path, mmproj_path, photo, n_ctx, args.runs, vision)
            ran = measured["vision"].replace(",", " ").split()[:2]  # "openvino BF16, 2 threads (...)"
            if ran != [choice.backend, choice.precision]:
                print(
                    f"note: bench read images with {measured['vision']}, not {choice.backend} {choice.precision}",
                    file=sys.stderr,
                )
            estimate = estimate_memory(
                text,
                projector,
                n_ctx=n_ctx,
                vision_backend=ran[0],
                vision_precision=ran[1],
                vision_on_gpu=choice.on_gpu,
            )
            rows.append(row(f"{ran[0]} {ran[1]}", n_ctx, estimate, measured["peak_rss_mb"]))
            worst = max(worst, abs(estimate.total / MiB / measured["peak_rss_mb"] - 1))
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)

    print(
        f"{text_path.name} + {mmproj_path.name}, {photo.name} (13 tiles), 2 turns, "
        f"{args.runs} run(s) after a warm-up; sizes in MiB (estimate parts, then totals)\n"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nlargest error {worst:.1%} (limit {LIMIT:.0%})")
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())
