"""Pictures a minute for ``smolchat batch`` on the SmolVLM-256M-shaped pair, at each detail level.

Each run answers the same folder of photos (1024x768 and 800x1200 JPEGs of noise, every one
different) with a 32-token answer, through the engine service as ``smolchat batch`` does: the
model loaded once, pictures decoded ahead on the reader thread. The rate counts answering only
(the load and the first-run measurement are left out), and ``--no-read-ahead`` shows what the
reader thread saves.

    uv run python benchmarks/batch_rate.py [--pictures 12] [--detail low] [--no-read-ahead] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from smolvlm_256m_shaped import ensure_pair  # noqa: E402


def write_photos(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    for i in range(count):
        w, h = (1024, 768) if i % 2 == 0 else (800, 1200)
        noise = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)  # smooth enough to be photo-sized
        Image.fromarray(noise).resize((w, h), Image.Resampling.BICUBIC).save(folder / f"photo-{i:03d}.jpg", quality=90)


class DecodedInline:
    """An answerer whose pictures are decoded on the job's thread, just before each answer."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def read(self, path: Path) -> Path:
        return path

    def answer(self, picture: Path, *rest):
        return self.inner.answer(self.inner.read(picture), *rest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "benchmarks" / ".models")
    parser.add_argument("--pictures", type=int, default=12)
    parser.add_argument("--vision", default="auto")
    parser.add_argument("--no-read-ahead", action="store_true", help="decode each picture on the job's own thread")
    parser.add_argument("--detail", action="append", choices=["low", "balanced", "full"], help="(default: each)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="smolchat-batch-bench-"))
    shared_cache = Path(os.environ.get("SMOLCHAT_CACHE", Path.home() / ".cache" / "SmolChat"))
    shared_cache.mkdir(parents=True, exist_ok=True)
    (home / "cache").symlink_to(shared_cache)  # the vision measurement is taken once per machine
    os.environ["SMOLCHAT_HOME"] = str(home)

    from smolchat.batch import BatchJob, ResultsFile, batch_files
    from smolchat.batch.answerers import LocalAnswerer
    from smolchat.budget.detail import Detail, max_tokens_for
    from smolchat.engine import EngineSettings, SamplingParams
    from smolchat.service import EngineService, Loaded, LoadRequest

    text, mmproj, _ = ensure_pair(args.models)
    write_photos(home / "photos", args.pictures)
    files = batch_files([home / "photos"])
    sampling = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)
    rows = []
    for detail in [Detail(d) for d in args.detail] if args.detail else Detail:
        settings = EngineSettings(
            n_ctx=8192, vision_backend=args.vision, image_max_tokens=max_tokens_for(detail, mmproj)
        )
        service = EngineService()
        try:
            loaded = service.stream(LoadRequest("bench", text, mmproj, settings)).wait()
            assert isinstance(loaded, Loaded), loaded
            answerer = LocalAnswerer(service, loaded.info)
            if args.no_read_ahead:
                answerer = DecodedInline(answerer)
            out = home / f"results-{detail.value}.jsonl"
            summary = BatchJob(
                files, ResultsFile(out), answerer, "Write alt text for this photo.", sampling=sampling
            ).run(threading.Event())
            stats = [json.loads(line)["stats"] for line in out.read_text().splitlines()]
            rows.append(
                {
                    "detail": detail.value,
                    "pictures": summary.answered,
                    "per_minute": round(60 * summary.answered / sum(summary.answer_s), 1),
                    "mean_s": round(sum(summary.answer_s) / summary.answered, 2),
                    "image_tokens": round(sum(s["image_tokens"] for s in stats) / len(stats)),
                    "cached_tokens": round(sum(s["cached_tokens"] for s in stats[1:]) / max(len(stats) - 1, 1)),
                    "vision": loaded.info.vision_plan.describe() if loaded.info.vision_plan else "none",
                }
            )
        finally:
            service.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'detail':<10}{'pictures':>9}{'per minute':>12}{'mean s':>9}{'image tok':>11}{'cached':>8}  vision")
        for r in rows:
            print(
                f"{r['detail']:<10}{r['pictures']:>9}{r['per_minute']:>12}{r['mean_s']:>9}{r['image_tokens']:>11}"
                f"{r['cached_tokens']:>8}  {r['vision']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
