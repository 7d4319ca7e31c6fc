"""Time to first token with an image, for every way of reading it, in one run.

On the SmolVLM-256M-shaped pair of ``smolvlm_256m_shaped.py`` and its 1024x768 photo at full
detail (13 tiles), runs ``smolchat bench`` once per variant (each in fresh processes) and
prints one Markdown table: our defaults (what the tuning measured fastest here), every
encoder/precision/flash-attention variant, and bare llama-cpp-python (MTMDChatHandler) with
its usual settings (the F16 mmproj, flash attention off).

    uv run python benchmarks/vision_variants.py [--runs 3] [--out benchmarks/.models]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from smolvlm_256m_shaped import ensure_pair  # noqa: E402

VARIANTS = [
    ("SmolChat defaults (measured fastest here)", []),
    ("OpenVINO, F32", ["--vision", "openvino", "--vision-precision", "F32"]),
    ("OpenVINO, BF16, 1 thread", ["--vision", "openvino", "--vision-precision", "BF16", "--vision-threads", "1"]),
    ("llama.cpp, mmproj BF16 (converted), flash attention", ["--vision", "llama.cpp", "--vision-precision", "BF16"]),
    ("llama.cpp, mmproj F16, flash attention", ["--vision", "llama.cpp", "--vision-precision", "F16"]),
    (
        "llama.cpp, mmproj BF16 (converted), no flash attention",
        ["--vision", "llama.cpp", "--vision-precision", "BF16", "--no-flash-attn"],
    ),
]
# The last one also runs the baseline with the same (usual) settings.
USUAL = (
    "llama.cpp, mmproj F16, no flash attention",
    ["--vision", "llama.cpp", "--vision-precision", "F16", "--no-flash-attn", "--baseline"],
)


def bench(text: Path, mmproj: Path, photo: Path, runs: int, extra: list[str]) -> dict:
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
        "--runs",
        str(runs),
        "--turns",
        "2",
        "--max-tokens",
        "64",
        *extra,
    ]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def row(label: str, vision: str, turns: list[dict], rss: float) -> str:
    first, second = turns
    per_tile = first.get("encode_s_per_tile")
    return (
        f"| {label} | {vision} | {first['ttft_s']:.2f} | "
        f"{'-' if per_tile is None else f'{per_tile:.2f}'} | {first['decode_tok_s']:.1f} | "
        f"{second['ttft_s']:.2f} | {rss:.0f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/.models"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    text, mmproj, photo = ensure_pair(args.out)

    print("| variant | how images were read | TTFT s | encode s/tile | decode tok/s | turn 2 TTFT s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for label, extra in VARIANTS + [USUAL]:
        result = bench(text, mmproj, photo, args.runs, extra)
        print(row(label, result["vision"], result["turns"], result["peak_rss_mb"]), flush=True)
        if "baseline" in result:
            base = result["baseline"]
            print(
                row(
                    "bare llama-cpp-python (MTMDChatHandler), usual settings",
                    base["vision"],
                    base["turns"],
                    base["peak_rss_mb"],
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
