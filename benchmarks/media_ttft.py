"""Time to first token for a clip and a PDF on the SmolVLM-256M-shaped pair, at each detail
level, cold and with the attachment read while the question is typed (as the window does).

The clip: 12 s at 25 fps (a square crossing the frame), read at 1 frame a second: 12 frames of
one tile each. The document: 3 letter-size pages with text. Cold: the engine starts empty and
reads everything after Enter. Read while typing: ``Engine.prefill`` runs on the attachment
first (as the composer does), then the question is sent and only its text is left to read.

    uv run python benchmarks/media_ttft.py [--runs 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from smolvlm_256m_shaped import ensure_pair  # noqa: E402

QUESTION = "What happens here, and what does it say?"


def write_media(folder: Path) -> tuple[Path, Path]:
    from PIL import Image, ImageDraw

    from tests.media.clips import write_clip

    clip = write_clip(folder / "square.mp4", seconds=12, fps=25, size=(640, 360))
    pages = []
    for number in range(1, 4):
        page = Image.new("RGB", (850, 1100), "white")
        draw = ImageDraw.Draw(page)
        for line in range(30):
            draw.text(
                (60, 60 + 32 * line), f"Page {number}, line {line + 1}: invoice item {line * 7} EUR", fill="black"
            )
        pages.append(page)
    pdf = folder / "invoice.pdf"
    pages[0].save(pdf, save_all=True, append_images=pages[1:])
    return clip, pdf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "benchmarks" / ".models")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--vision", default="auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="smolchat-media-bench-"))
    shared_cache = Path(os.environ.get("SMOLCHAT_CACHE", Path.home() / ".cache" / "SmolChat"))
    shared_cache.mkdir(parents=True, exist_ok=True)
    (home / "cache").symlink_to(shared_cache)  # the vision measurement is taken once per machine
    os.environ["SMOLCHAT_HOME"] = str(home)

    from smolchat.budget.detail import Detail, max_tokens_for
    from smolchat.calibrate import open_engine
    from smolchat.engine import EngineSettings, Message, SamplingParams, TurnResult
    from smolchat.media import attach

    text, mmproj, _ = ensure_pair(args.models)
    clip, pdf = write_media(home)
    sampling = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    rows = []
    for detail in Detail:
        settings = EngineSettings(
            n_ctx=8192, vision_backend=args.vision, image_max_tokens=max_tokens_for(detail, mmproj)
        )
        with open_engine(text, mmproj, settings) as engine:
            vision = engine.vision_plan.describe() if engine.vision_plan else "none"
            for name, found in (("12 s clip", attach.check([], [clip])), ("3-page PDF", attach.check([pdf]))):
                media = attach.content(found, engine.projector_info)
                typed = [Message("user", (*media, QUESTION))]
                figures: dict[str, list[float]] = {"cold": [], "read while typing": []}
                tiles = 0
                for _ in range(args.runs + 1):  # the first is a warm-up
                    engine.reset()
                    cold = next(e for e in engine.run_turn(typed, sampling) if isinstance(e, TurnResult))
                    engine.reset()
                    engine.prefill([Message("user", (*media, QUESTION[:10]))])  # typing has begun
                    warm = next(e for e in engine.run_turn(typed, sampling) if isinstance(e, TurnResult))
                    figures["cold"].append(cold.stats.ttft_s)
                    figures["read while typing"].append(warm.stats.ttft_s)
                    tiles = cold.stats.image_tiles_encoded
                rows.append(
                    {
                        "detail": detail.value,
                        "attachment": name,
                        "tiles": tiles,
                        "prompt_tokens": cold.stats.prompt_tokens,
                        "vision": vision,
                        **{k: round(statistics.median(v[1:]), 2) for k, v in figures.items()},
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"TTFT in seconds, median of {args.runs} after a warm-up")
    print(f"{'detail':<10}{'attachment':<13}{'tiles':>6}{'tokens':>8}{'cold':>8}{'typing':>8}  vision")
    for r in rows:
        print(
            f"{r['detail']:<10}{r['attachment']:<13}{r['tiles']:>6}{r['prompt_tokens']:>8}"
            f"{r['cold']:>8}{r['read while typing']:>8}  {r['vision']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
