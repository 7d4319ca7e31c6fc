"""``smolchat bench``: time to first token and decode speed, turn by turn."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from smolchat.benchmark import (
    DEFAULT_PROMPT,
    BenchConfig,
    EngineReport,
    run_benchmark,
    validate,
)
from smolchat.cli.options import add_media_options, add_model_options, engine_settings, model_files

HELP = "measure time to first token and decode speed over a conversation"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help=HELP, description=HELP.capitalize() + ".")
    add_model_options(p)
    p.add_argument(
        "--image",
        "-i",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="an image or a PDF for the first question (repeat for several)",
    )
    add_media_options(p)
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"the first question (default: {DEFAULT_PROMPT!r})")
    p.add_argument(
        "--max-tokens", type=int, default=64, metavar="N", help="tokens generated per turn, exactly (default 64)"
    )
    p.add_argument("--runs", type=int, default=5, metavar="N", help="measured runs after one warm-up (default 5)")
    p.add_argument(
        "--turns", type=int, default=2, metavar="N", help="turns per run: the question, then follow-ups (default 2)"
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also measure llama-cpp-python's create_chat_completion with MTMDChatHandler "
        "(images at full detail for both, since it cannot read them at less)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.turns < 1 or args.max_tokens < 2:
        raise SystemExit("smolchat bench: --runs and --turns must be at least 1, --max-tokens at least 2")
    if args.baseline and (args.video or any(p.suffix.lower() == ".pdf" for p in args.image)):
        raise SystemExit("smolchat bench: --baseline reads photos only (llama-cpp-python takes no clips or PDFs)")
    if args.baseline and args.image_max_tokens is None:
        args.detail = "full"  # MTMDChatHandler cannot cap tiles: compare reading the same tiles
    model, mmproj = model_files(args)
    config = BenchConfig(
        model=model,
        mmproj=mmproj,
        images=tuple(args.image),
        videos=tuple(args.video),
        fps=args.fps,
        max_frames=args.max_frames,
        pages=args.pages,
        prompt=args.prompt,
        max_tokens=args.max_tokens,
        runs=args.runs,
        turns=args.turns,
        settings=engine_settings(args, mmproj),
    )
    validate(config)
    reports = run_benchmark(config, baseline=args.baseline, verbose=args.verbose > 0)
    if args.json:
        print(json.dumps(as_json(config, reports), indent=2))
    else:
        print(format_table(config, reports))
    return 0


def as_json(config: BenchConfig, reports: list[EngineReport]) -> dict:
    ours, *others = reports
    settings = config.settings
    out = {
        "turns": [_turn_json(t) for t in ours.turns],
        "peak_rss_mb": round(ours.peak_rss_mb, 1),
        "load_s": round(ours.load_s, 3),
        "model": str(config.model),
        "mmproj": str(config.mmproj) if config.mmproj else None,
        "images": [str(p) for p in config.images],
        "videos": [str(p) for p in config.videos],
        "vision": ours.vision,
        "decode_threads": ours.decode_threads,
        "text_flash_attn": ours.text_flash_attn,
        "settings": {
            "n_ctx": settings.n_ctx,
            "n_gpu_layers": settings.n_gpu_layers,
            "flash_attn": settings.flash_attn,
            "image_max_tokens": settings.image_max_tokens,
            "max_tokens": config.max_tokens,
            "runs": config.runs,
            "turns": config.turns,
        },
        "ttft_s_runs": ours.ttft_s_runs,
    }
    for other in others:
        out[other.engine] = {
            "turns": [_turn_json(t) for t in other.turns],
            "peak_rss_mb": round(other.peak_rss_mb, 1),
            "load_s": round(other.load_s, 3),
            "ttft_s_runs": other.ttft_s_runs,
            "vision": other.vision,
        }
    return out


def _turn_json(turn) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in turn.__dict__.items()}


def format_table(config: BenchConfig, reports: list[EngineReport]) -> str:
    s = config.settings
    head = (
        f"{config.model.name}"
        + (f" + {config.mmproj.name}" if config.mmproj else "")
        + f" · {len(config.images)} image(s) · n_ctx {s.n_ctx}"
        + f" · flash attention {'on' if s.flash_attn else 'off'}"
        + f" · {config.max_tokens} tokens/turn · median of {config.runs} runs after a warm-up"
    )
    cols = (
        "engine",
        "turn",
        "TTFT s",
        "TPOT ms",
        "E2E s",
        "decode tok/s",
        "prompt",
        "image",
        "reused",
        "tiles",
        "encode s/tile",
    )
    rows = []
    for r in reports:
        for i, t in enumerate(r.turns, start=1):
            rows.append(
                (
                    r.engine,
                    str(i),
                    f"{t.ttft_s:.2f}",
                    f"{t.tpot_s * 1000:.1f}",
                    f"{t.e2e_s:.2f}",
                    f"{t.decode_tok_s:.1f}",
                    _n(t.prompt_tokens),
                    _n(t.image_tokens),
                    _n(t.reused_tokens),
                    _n(t.image_tiles_encoded),
                    "-" if t.encode_s_per_tile is None else f"{t.encode_s_per_tile:.2f}",
                )
            )
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    memory = " · ".join(f"{r.engine} {r.peak_rss_mb:.0f} MB (load {r.load_s:.2f} s)" for r in reports)
    how = [
        f"{r.engine}: images read by {r.vision}; generation on {r.decode_threads} threads"
        + ("" if r.text_flash_attn else ", without flash attention")
        for r in reports
    ]
    return "\n".join([head, "", line(cols), *(line(row) for row in rows), "", *how, f"peak RSS: {memory}"])


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
