"""Measuring a model pair the way users feel it: time to first token and decode speed.

One benchmark runs a conversation (a question about the images, then follow-up questions)
``runs`` times after a warm-up and reports, per turn, the medians of the four figures of
the OpenVINO SmolVLM benchmark: time to first token, time per output token, end-to-end
latency and decode throughput. Exactly ``max_tokens`` tokens are generated every turn.

The baseline is the same conversation through llama-cpp-python's own
``Llama.create_chat_completion`` with ``MTMDChatHandler``, which evaluates the whole
conversation, images included, on every turn.

Each engine is measured in a fresh process so that its peak memory is its own.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # llama.cpp loads only when something is measured
    from collections.abc import Iterator

    from llama_cpp.llama_types import (
        ChatCompletionRequestMessage,
        ChatCompletionRequestMessageContentPart,
        CreateChatCompletionStreamResponse,
    )

    from smolchat.engine import EngineSettings

DEFAULT_PROMPT = "What is in this picture?"
FOLLOW_UPS = (
    "What colours stand out?",
    "Is there any text in it?",
    "Describe it in one sentence.",
)


@dataclass(frozen=True)
class BenchConfig:
    model: Path
    mmproj: Path | None
    settings: EngineSettings
    images: tuple[Path, ...] = ()
    prompt: str = DEFAULT_PROMPT
    max_tokens: int = 64
    runs: int = 5
    turns: int = 2


@dataclass
class TurnFigures:
    """Medians over the measured runs of one turn."""

    ttft_s: float
    tpot_s: float
    e2e_s: float
    decode_tok_s: float
    prompt_tokens: int | None
    image_tokens: int | None
    reused_tokens: int | None
    image_tiles_encoded: int | None = None
    encode_s_per_tile: float | None = None


@dataclass
class EngineReport:
    engine: str  # "smolchat" or "baseline"
    turns: list[TurnFigures]
    peak_rss_mb: float
    load_s: float
    ttft_s_runs: list[list[float]] = field(default_factory=list)  # per turn, every run
    vision: str = ""  # how images were read: encoder, precision, threads
    decode_threads: int = 0


def question(turn: int, config: BenchConfig) -> str:
    return config.prompt if turn == 0 else FOLLOW_UPS[(turn - 1) % len(FOLLOW_UPS)]


def _peak_rss_mb() -> float:
    """The most memory this process has held in RAM, in MiB."""
    if sys.platform == "win32":
        return _windows_peak_working_set()
    import resource  # Unix only

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _windows_peak_working_set() -> float:
    import ctypes
    from ctypes import wintypes

    class ProcessMemoryCounters(ctypes.Structure):
        _fields_ = [
            ("cb", wintypes.DWORD),
            ("PageFaultCount", wintypes.DWORD),
            *(
                (name, ctypes.c_size_t)
                for name in (
                    "PeakWorkingSetSize",
                    "WorkingSetSize",
                    "QuotaPeakPagedPoolUsage",
                    "QuotaPagedPoolUsage",
                    "QuotaPeakNonPagedPoolUsage",
                    "QuotaNonPagedPoolUsage",
                    "PagefileUsage",
                    "PeakPagefileUsage",
                )
            ),
        ]

    kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined]
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.K32GetProcessMemoryInfo.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD]
    counters = ProcessMemoryCounters(cb=ctypes.sizeof(ProcessMemoryCounters))
    if not kernel32.K32GetProcessMemoryInfo(kernel32.GetCurrentProcess(), ctypes.byref(counters), counters.cb):
        raise ctypes.WinError()  # type: ignore[attr-defined]
    return counters.PeakWorkingSetSize / 2**20


def _median_figures(samples: list[dict]) -> TurnFigures:
    def med(key: str) -> float:
        values = [s[key] for s in samples if s.get(key) is not None]
        return statistics.median(values) if values else float("nan")

    last = samples[-1]
    return TurnFigures(
        ttft_s=med("ttft_s"),
        tpot_s=med("tpot_s"),
        e2e_s=med("e2e_s"),
        decode_tok_s=med("decode_tok_s"),
        prompt_tokens=last.get("prompt_tokens"),
        image_tokens=last.get("image_tokens"),
        reused_tokens=last.get("reused_tokens"),
        image_tiles_encoded=last.get("image_tiles_encoded"),
        encode_s_per_tile=(med("encode_s") / last["image_tiles_encoded"] if last.get("image_tiles_encoded") else None),
    )


def _report(engine: str, per_turn: list[list[dict]], load_s: float, vision: str, decode_threads: int) -> EngineReport:
    return EngineReport(
        engine=engine,
        turns=[_median_figures(samples) for samples in per_turn],
        peak_rss_mb=_peak_rss_mb(),
        load_s=load_s,
        ttft_s_runs=[[s["ttft_s"] for s in samples] for samples in per_turn],
        vision=vision,
        decode_threads=decode_threads,
    )


def measure_smolchat(config: BenchConfig, progress=None) -> EngineReport:
    """The conversation through SmolChat's engine (KV prefix reuse across turns)."""
    from smolchat.budget.fit import vision_memory_rule
    from smolchat.calibrate import open_engine
    from smolchat.engine import Message, SamplingParams, TurnResult

    sampling = SamplingParams(temperature=0.0, max_tokens=config.max_tokens, ignore_eos=True)
    started = time.perf_counter()
    with open_engine(config.model, config.mmproj, config.settings, fits=vision_memory_rule(config.settings)) as engine:
        load_s = time.perf_counter() - started
        plan = engine.vision_plan
        vision = f"{plan.describe()} ({plan.how})" if plan else "none"
        decode_threads = engine.decode_threads
        per_turn: list[list[dict]] = [[] for _ in range(config.turns)]
        for run in range(config.runs + 1):  # run 0 is the warm-up
            engine.reset()
            messages = []
            for turn in range(config.turns):
                images = config.images if turn == 0 else ()
                messages.append(Message.user(question(turn, config), images=images))
                result = None
                for event in engine.run_turn(messages, sampling):
                    if isinstance(event, TurnResult):
                        result = event
                assert result is not None
                messages.append(Message.assistant(result.text))
                if run > 0:
                    per_turn[turn].append(result.stats.as_dict())
                if progress:
                    progress(f"smolchat run {run or 'warm-up'} turn {turn + 1}: TTFT {result.stats.ttft_s:.2f} s")
    return _report("smolchat", per_turn, load_s, vision, decode_threads)


def measure_baseline(config: BenchConfig, progress=None) -> EngineReport:
    """The same conversation through Llama.create_chat_completion + MTMDChatHandler."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    from smolchat.engine import native
    from smolchat.engine.backends import llama_cpp
    from smolchat.engine.engine import default_threads

    native.route_native_logs()
    settings = config.settings
    threads = settings.n_threads or default_threads()
    started = time.perf_counter()
    handler = MTMDChatHandler(str(config.mmproj), verbose=False) if config.mmproj else None
    llama = Llama(
        str(config.model),
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        n_ubatch=settings.n_batch,
        n_threads=threads,
        n_threads_batch=settings.n_threads_batch or threads,
        n_gpu_layers=settings.n_gpu_layers,
        flash_attn=settings.flash_attn,
        chat_handler=handler,
        verbose=False,
    )
    try:
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        # Token ids as keys: the chat handler hands them to create_completion, which reads int(key).
        never_end = {t: float("-inf") for t in native.end_of_turn_tokens(vocab)}
        load_s = time.perf_counter() - started
        per_turn: list[list[dict]] = [[] for _ in range(config.turns)]
        for run in range(config.runs + 1):
            messages: list[ChatCompletionRequestMessage] = []
            for turn in range(config.turns):
                parts: list[ChatCompletionRequestMessageContentPart] = []
                if turn == 0:
                    parts += [{"type": "image_url", "image_url": {"url": p.resolve().as_uri()}} for p in config.images]
                parts.append({"type": "text", "text": question(turn, config)})
                messages.append({"role": "user", "content": parts})
                t0 = time.perf_counter()
                first = None
                answer = ""
                # stream=True returns chunks; the annotation is the union of both return types
                chunks = cast(
                    "Iterator[CreateChatCompletionStreamResponse]",
                    llama.create_chat_completion(
                        messages=messages,
                        max_tokens=config.max_tokens,
                        temperature=0.0,
                        logit_bias=never_end,
                        stream=True,
                    ),
                )
                for chunk in chunks:
                    content = chunk["choices"][0]["delta"].get("content")
                    delta = content if isinstance(content, str) else None
                    if delta is not None and first is None:
                        first = time.perf_counter()
                    answer += delta or ""
                end = time.perf_counter()
                ttft = (first or end) - t0
                tpot = (end - (first or end)) / max(1, config.max_tokens - 1)
                # The chat template takes content parts from every role; llama_types allows them
                # for the user's messages only.
                reply = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
                messages.append(cast("ChatCompletionRequestMessage", reply))
                if run > 0:
                    per_turn[turn].append(
                        {
                            "ttft_s": ttft,
                            "tpot_s": tpot,
                            "e2e_s": end - t0,
                            "decode_tok_s": 1 / tpot if tpot else None,
                            # the KV cache then holds the prompt and all but the last answer token
                            "prompt_tokens": llama.n_tokens - (config.max_tokens - 1),
                            "image_tokens": None,
                            "reused_tokens": 0,
                        }
                    )
                if progress:
                    progress(f"baseline run {run or 'warm-up'} turn {turn + 1}: TTFT {ttft:.2f} s")
    finally:
        llama.close()
    vision = f"libmtmd F16 file as given, {threads} threads" if config.mmproj else "none"
    return _report("baseline", per_turn, load_s, vision, threads)


def _progress_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _measure_in_child(kind: str, config: BenchConfig, verbose: bool) -> EngineReport:
    measure = measure_baseline if kind == "baseline" else measure_smolchat
    return measure(config, _progress_to_stderr if verbose else None)


def run_benchmark(config: BenchConfig, *, baseline: bool = False, verbose: bool = False) -> list[EngineReport]:
    """Measure SmolChat (and the baseline), each in a fresh process."""
    kinds = ["smolchat"] + (["baseline"] if baseline else [])
    reports = []
    context = multiprocessing.get_context("spawn")
    for kind in kinds:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            reports.append(pool.submit(_measure_in_child, kind, config, verbose).result())
    return reports


def validate(config: BenchConfig) -> None:
    """Refuse bad files here, before any measuring process starts."""
    from smolchat.engine.gguf_info import check_pair, inspect_projector, inspect_text_model
    from smolchat.engine.images import prepare_image

    text = inspect_text_model(config.model)
    if config.mmproj is not None:
        check_pair(text, inspect_projector(config.mmproj))
    elif config.images:
        from smolchat.engine import EngineError

        raise EngineError("Images need the model's vision projector: add --mmproj.")
    for image in config.images:
        prepare_image(image)
