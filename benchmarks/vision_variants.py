"""Time to first token with an image, for every way of reading it, in one run.

On the SmolVLM-256M-shaped pair of ``smolvlm_256m_shaped.py`` and its 1024x768 photo at full
detail (13 tiles), runs ``smolchat bench`` once per variant (each in fresh processes) and
prints one Markdown table: our defaults (what the tuning measured fastest here), every
encoder/precision/flash-attention variant, and bare llama-cpp-python (MTMDChatHandler) with
its usual settings (the F16 mmproj, flash attention off).

On a CPU with more than AVX2 (AVX-512, AMX), every variant runs twice: as the CPU is, and
capped at AVX2 to stand in for a laptop. The cap reaches oneDNN (``ONEDNN_MAX_CPU_ISA``, so
OpenVINO's matrix products) and OpenVINO's own kernels where its build honours
``OV_CPU_MAX_ISA``; it does not reach ONNX Runtime's MLAS or ggml, which pick their kernels
from the CPU itself, so their capped rows are not an AVX2 laptop's. ``--avx2`` runs only
the capped pass.

    uv run python benchmarks/vision_variants.py [--runs 3] [--avx2] [--out benchmarks/.models]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from smolvlm_256m_shaped import ensure_pair  # noqa: E402

VARIANTS = [
    ("SmolChat defaults (measured fastest here)", []),
    ("SmolChat, exact vision", ["--vision-precision", "exact"]),
    ("ONNX Runtime, INT8", ["--vision", "onnxruntime", "--vision-precision", "INT8"]),
    (
        "ONNX Runtime, INT8, 1 thread",
        ["--vision", "onnxruntime", "--vision-precision", "INT8", "--vision-threads", "1"],
    ),
    ("ONNX Runtime, F32", ["--vision", "onnxruntime", "--vision-precision", "F32"]),
    ("OpenVINO, INT8 weights", ["--vision", "openvino", "--vision-precision", "INT8"]),
    ("OpenVINO, F32", ["--vision", "openvino", "--vision-precision", "F32"]),
    ("OpenVINO, BF16, 1 thread", ["--vision", "openvino", "--vision-precision", "BF16", "--vision-threads", "1"]),
    ("llama.cpp, mmproj BF16 (converted), flash attention", ["--vision", "llama.cpp", "--vision-precision", "BF16"]),
    ("llama.cpp, mmproj F16, flash attention", ["--vision", "llama.cpp", "--vision-precision", "F16"]),
    ("llama.cpp, mmproj Q8_0 (converted), flash attention", ["--vision", "llama.cpp", "--vision-precision", "Q8_0"]),
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


# Environment that caps oneDNN and OpenVINO at AVX2.
AVX2_CAP = {"ONEDNN_MAX_CPU_ISA": "AVX2", "OV_CPU_MAX_ISA": "AVX2"}


def beyond_avx2() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" avx512f", " amx_tile", " avx512_bf16"))


def bench(text: Path, mmproj: Path, photo: Path, runs: int, extra: list[str], env: dict[str, str]) -> dict:
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
        "--detail",
        "full",
        *extra,
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, **env})
    return json.loads(done.stdout)


def row(cpu: str, label: str, vision: str, turns: list[dict], rss: float) -> str:
    first, second = turns
    per_tile = first.get("encode_s_per_tile")
    return (
        f"| {cpu} | {label} | {vision} | {first['ttft_s']:.2f} | "
        f"{'-' if per_tile is None else f'{per_tile:.2f}'} | {first['decode_tok_s']:.1f} | "
        f"{second['ttft_s']:.2f} | {rss:.0f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/.models"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--avx2", action="store_true", help="only the pass capped at AVX2")
    args = parser.parse_args()
    text, mmproj, photo = ensure_pair(args.out)
    if not beyond_avx2():
        passes = [("AVX2 (this CPU)", {})]
    else:
        passes = [("AVX2 (capped)", AVX2_CAP)] if args.avx2 else [("this CPU", {}), ("AVX2 (capped)", AVX2_CAP)]

    print(
        "| CPU | variant | how images were read | TTFT s | encode s/tile | decode tok/s | turn 2 TTFT s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for cpu, env in passes:
        for label, extra in VARIANTS + [USUAL]:
            try:
                result = bench(text, mmproj, photo, args.runs, extra, env)
            except subprocess.CalledProcessError as e:  # an encoder not installed here, say
                print(f"| {cpu} | {label} | failed: {(e.stderr or '').strip().splitlines()[-1:]} | | | | | |")
                continue
            print(row(cpu, label, result["vision"], result["turns"], result["peak_rss_mb"]), flush=True)
            if "baseline" in result:
                base = result["baseline"]
                print(
                    row(
                        cpu,
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
