"""Time to first token of a follow-up that resends the image: ``smolchat serve`` against
llama.cpp's own ``llama-server`` on the SmolVLM-256M-shaped pair.

Every OpenAI client resends the whole conversation, image included, on every turn. Each trial
draws a fresh 1024x768 noise photo (so no server has seen it), asks about it with streaming on,
then sends the follow-up: the same image and question, the answer it got, and a new question.
Both servers get the same requests, one after the other (never at the same time), in an order
that alternates between trials. Reported per server: time to the first answer text of the
first turn and of the follow-up, and how many prompt tokens the follow-up took from the cache.

    uv run python benchmarks/api_follow_up.py --llama-server PATH/TO/llama-server [--trials 5]
        [--detail full] [--vision llama.cpp --vision-precision F16]

llama-server always reads libmtmd's full tile grid: ``--detail full`` compares the same tokens,
and ``--vision llama.cpp --vision-precision F16`` the same encoder too.

``llama-server`` is built from the llama.cpp that llama-cpp-python's sdist vendors::

    cmake -S vendor/llama.cpp -B build -DLLAMA_BUILD_SERVER=ON -DGGML_NATIVE=ON
    cmake --build build --target llama-server -j
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx2 as httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from smolvlm_256m_shaped import ensure_pair  # noqa: E402

QUESTION = "What is in this picture?"
FOLLOW_UP = "What colour is it mostly?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def noise_photo(seed: int) -> str:
    """A data URI of a JPEG no server has read before."""
    pixels = np.random.default_rng(seed).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


@contextmanager
def running(name: str, command: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """Start a server, wait until /health says ready, stop it on the way out."""
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300  # SmolChat measures its vision encoders on first run
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"{name} stopped (exit {process.returncode}); see {log}")
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} was not ready within 300 s; see {log}")
                time.sleep(0.5)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def model_id(base: str) -> str:
    return str(httpx.get(f"{base}/v1/models", timeout=10).json()["data"][0]["id"])


def streamed_turn(base: str, messages: list[dict], max_tokens: int) -> dict:
    """One streamed chat request: seconds to the first answer text, the answer, the usage."""
    body = {
        "model": model_id(base),
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    answer: list[str] = []
    first: float | None = None
    usage: dict = {}
    timings: dict = {}
    started = time.perf_counter()
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=300) as response:
        if response.status_code != 200:
            raise SystemExit(f"{base} answered {response.status_code}: {response.read()[:500]!r}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter() - started
                    answer.append(text)
            usage = chunk.get("usage") or usage
            timings = chunk.get("timings") or timings
    total = time.perf_counter() - started
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is None:
        cached = timings.get("cache_n")
    return {
        "ttft_s": round(first if first is not None else total, 3),
        "answer": "".join(answer),
        "prompt_tokens": usage.get("prompt_tokens"),
        "cached_tokens": cached,
        "prompt_ms": timings.get("prompt_ms"),
    }


def trial(base: str, photo: str, max_tokens: int) -> dict:
    asked = {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": photo}}, {"type": "text", "text": QUESTION}],
    }
    first = streamed_turn(base, [asked], max_tokens)
    follow_up = streamed_turn(
        base,
        [asked, {"role": "assistant", "content": first["answer"]}, {"role": "user", "content": FOLLOW_UP}],
        max_tokens,
    )
    return {"first": first, "follow_up": follow_up}


def summary(trials: list[dict]) -> dict:
    def median(turn: str, key: str) -> float | None:
        values = [t[turn][key] for t in trials if t[turn][key] is not None]
        return round(statistics.median(values), 3) if values else None

    return {
        "first_ttft_s": median("first", "ttft_s"),
        "follow_up_ttft_s": median("follow_up", "ttft_s"),
        "follow_up_ttft_s_all": [t["follow_up"]["ttft_s"] for t in trials],
        "first_prompt_tokens": median("first", "prompt_tokens"),
        "follow_up_prompt_tokens": median("follow_up", "prompt_tokens"),
        "follow_up_cached_tokens": median("follow_up", "cached_tokens"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", type=Path, default=shutil.which("llama-server"))
    parser.add_argument("--models", type=Path, default=ROOT / "benchmarks" / ".models")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--vision", default="auto", help="SmolChat's vision encoder (serve --vision)")
    parser.add_argument("--vision-precision", default="auto", help="its precision (serve --vision-precision)")
    parser.add_argument(
        "--detail",
        default="balanced",
        help="SmolChat's image detail (serve --detail); llama-server always reads the full grid, as --detail full",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.llama_server or not Path(args.llama_server).exists():
        parser.error("give --llama-server (see the build steps above)")

    text, mmproj, _ = ensure_pair(args.models)
    home = Path(tempfile.mkdtemp(prefix="smolchat-api-bench-"))
    shared_cache = Path(os.environ.get("SMOLCHAT_CACHE", Path.home() / ".cache" / "SmolChat"))
    shared_cache.mkdir(parents=True, exist_ok=True)
    (home / "cache").symlink_to(shared_cache)  # the vision measurement is taken once per machine
    threads = str(args.threads)
    ports = {"smolchat": free_port(), "llama-server": free_port()}
    commands = {
        "smolchat": [
            sys.executable, "-m", "smolchat", "serve", "--model", str(text), "--mmproj", str(mmproj),
            "--n-ctx", str(args.n_ctx), "--threads", threads, "--vision-threads", threads,
            "--vision", args.vision, "--vision-precision", args.vision_precision, "--detail", args.detail,
            "--port", str(ports["smolchat"]),
        ],
        "llama-server": [
            str(args.llama_server), "-m", str(text), "--mmproj", str(mmproj), "-c", str(args.n_ctx),
            "-t", threads, "-tb", threads, "--host", "127.0.0.1", "--port", str(ports["llama-server"]),
        ],
    }  # fmt: skip
    env = {**os.environ, "SMOLCHAT_HOME": str(home)}
    results: dict[str, list[dict]] = {name: [] for name in commands}
    with ExitStack() as servers:
        bases = {
            name: servers.enter_context(running(name, command, ports[name], env, home / f"{name}.log"))
            for name, command in commands.items()
        }
        for base in bases.values():  # warm up: the first request of a process pays for allocations
            trial(base, noise_photo(10_000), args.max_tokens)
        for number in range(args.trials):
            photo = noise_photo(number)
            order = list(bases) if number % 2 == 0 else list(reversed(bases))
            for name in order:
                results[name].append(trial(bases[name], photo, args.max_tokens))

    report = {name: summary(trials) for name, trials in results.items()}
    if args.json:
        print(json.dumps({"summary": report, "trials": results}, indent=2))
        return 0
    smolchat = f"--detail {args.detail} --vision {args.vision} {args.vision_precision}"
    print(f"{args.trials} trials, 1024x768 photo, {args.threads} threads, SmolChat {smolchat}, medians")
    print(f"{'server':<14}{'first TTFT':>12}{'follow-up TTFT':>16}{'prompt':>8}{'cached':>8}")
    for name, row in report.items():
        print(
            f"{name:<14}{row['first_ttft_s']:>12}{row['follow_up_ttft_s']:>16}"
            f"{row['follow_up_prompt_tokens']!s:>8}{row['follow_up_cached_tokens']!s:>8}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
