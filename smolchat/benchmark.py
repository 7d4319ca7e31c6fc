"""Measuring a model pair the way users feel it: time to first token and decode speed.

One benchmark runs a conversation (a question about the images, then follow-up questions)
``runs`` times after a warm-up and reports, per turn, the medians of the four figures of
the OpenVINO SmolVLM benchmark: time to first token, time per output token, end-to-end
latency and decode throughput. Exactly ``max_tokens`` tokens are generated every turn.

The baseline is the same conversation through llama-cpp-python's own
``Llama.create_chat_completion`` with ``MTMDChatHandler``, which evaluates the whole
conversation, images included, on every turn.

Each engine is measured in a process of its own so that its peak memory is its own, and the
two take turns run by run, so that a slow minute of the machine falls on both.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
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
    images: tuple[Path, ...] = ()  # photos and PDFs
    videos: tuple[Path, ...] = ()
    fps: float = 1.0
    max_frames: int = 16
    pages: str | None = None  # a PDF's pages (1-3,5); None: all
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
    text_flash_attn: bool = True  # whether the text model ran with flash attention


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


def _report(
    engine: str, per_turn: list[list[dict]], load_s: float, vision: str, decode_threads: int, text_flash_attn: bool
) -> EngineReport:
    return EngineReport(
        engine=engine,
        turns=[_median_figures(samples) for samples in per_turn],
        peak_rss_mb=_peak_rss_mb(),
        load_s=load_s,
        ttft_s_runs=[[s["ttft_s"] for s in samples] for samples in per_turn],
        vision=vision,
        decode_threads=decode_threads,
        text_flash_attn=text_flash_attn,
    )


class SmolChatRuns:
    """The conversation through SmolChat's engine (KV prefix reuse across turns), loaded once."""

    engine_name = "smolchat"

    def __init__(self, config: BenchConfig, progress=None):
        from smolchat.budget.fit import vision_memory_rule
        from smolchat.calibrate import open_engine

        self.config, self.progress = config, progress
        started = time.perf_counter()
        self._engine = open_engine(
            config.model, config.mmproj, config.settings, fits=vision_memory_rule(config.settings)
        )
        self.load_s = time.perf_counter() - started
        plan = self._engine.vision_plan
        self.vision = f"{plan.describe()} ({plan.how})" if plan else "none"
        self.decode_threads = self._engine.decode_threads
        self.text_flash_attn = self._engine.text_flash_attn
        self._media: tuple = ()
        if (config.videos or any(p.suffix.lower() == ".pdf" for p in config.images)) and self._engine.projector_info:
            from smolchat.media import attach

            # frames and pages are decoded once, as photos are (the engine caches those): not timed
            found = attach.check(list(config.images), list(config.videos), pages=config.pages, ask_above=10**6)
            self._media = attach.content(
                found, self._engine.projector_info, fps=config.fps, max_frames=config.max_frames
            )

    def run(self, index: int) -> list[dict]:
        """One conversation from an empty cache: each turn's figures."""
        from smolchat.engine import Message, SamplingParams, TurnResult

        config, engine = self.config, self._engine
        sampling = SamplingParams(temperature=0.0, max_tokens=config.max_tokens, ignore_eos=True)
        engine.reset()
        messages, figures = [], []
        for turn in range(config.turns):
            if turn == 0 and self._media:
                messages.append(Message("user", (*self._media, question(turn, config))))
            else:
                messages.append(Message.user(question(turn, config), images=config.images if turn == 0 else ()))
            result = None
            for event in engine.run_turn(messages, sampling):
                if isinstance(event, TurnResult):
                    result = event
            assert result is not None
            messages.append(Message.assistant(result.text))
            figures.append(result.stats.as_dict())
            if self.progress:
                self.progress(f"smolchat run {index or 'warm-up'} turn {turn + 1}: TTFT {result.stats.ttft_s:.2f} s")
        return figures

    def close(self) -> None:
        self._engine.close()


class BaselineRuns:
    """The same conversation through Llama.create_chat_completion + MTMDChatHandler."""

    engine_name = "baseline"

    def __init__(self, config: BenchConfig, progress=None):
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import MTMDChatHandler

        from smolchat.engine import native
        from smolchat.engine.backends import llama_cpp
        from smolchat.engine.engine import default_threads

        native.route_native_logs()
        self.config, self.progress = config, progress
        settings = config.settings
        threads = settings.n_threads or default_threads()
        started = time.perf_counter()
        handler = MTMDChatHandler(str(config.mmproj), verbose=False) if config.mmproj else None
        self._llama = Llama(
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
        vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        # Token ids as keys: the chat handler hands them to create_completion, which reads int(key).
        self._never_end = {t: float("-inf") for t in native.end_of_turn_tokens(vocab)}
        self.load_s = time.perf_counter() - started
        self.vision = f"libmtmd F16 file as given, {threads} threads" if config.mmproj else "none"
        self.decode_threads = threads
        self.text_flash_attn = settings.flash_attn

    def run(self, index: int) -> list[dict]:
        config, llama = self.config, self._llama
        messages: list[ChatCompletionRequestMessage] = []
        figures = []
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
                    logit_bias=self._never_end,
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
            figures.append(
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
            if self.progress:
                self.progress(f"baseline run {index or 'warm-up'} turn {turn + 1}: TTFT {ttft:.2f} s")
        return figures

    def close(self) -> None:
        self._llama.close()


def _progress_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# In each measuring process: the engine it holds between runs.
_runner: SmolChatRuns | BaselineRuns | None = None


def _open_in_child(kind: str, config: BenchConfig, verbose: bool) -> None:
    global _runner
    runner = BaselineRuns if kind == "baseline" else SmolChatRuns
    _runner = runner(config, _progress_to_stderr if verbose else None)


def _run_in_child(index: int) -> list[dict]:
    assert _runner is not None
    return _runner.run(index)


def _report_from_child(per_turn: list[list[dict]]) -> EngineReport:
    assert _runner is not None
    _runner.close()
    r = _runner
    return _report(r.engine_name, per_turn, r.load_s, r.vision, r.decode_threads, r.text_flash_attn)


def run_benchmark(config: BenchConfig, *, baseline: bool = False, verbose: bool = False) -> list[EngineReport]:
    """Measure SmolChat (and the baseline), each in a process of its own so that its peak
    memory is its own, run by run in turn: whatever else slows the machine for a while (the
    page cache, a warm CPU, another program) falls on both alike."""
    kinds = ["smolchat"] + (["baseline"] if baseline else [])
    context = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        pools = {kind: stack.enter_context(ProcessPoolExecutor(max_workers=1, mp_context=context)) for kind in kinds}
        for kind, pool in pools.items():
            pool.submit(_open_in_child, kind, config, verbose).result()
        per_turn: dict[str, list[list[dict]]] = {kind: [[] for _ in range(config.turns)] for kind in kinds}
        for run in range(config.runs + 1):  # run 0 is the warm-up
            for kind, pool in pools.items():
                figures = pool.submit(_run_in_child, run).result()
                if run > 0:
                    for turn, sample in enumerate(figures):
                        per_turn[kind][turn].append(sample)
        return [pools[kind].submit(_report_from_child, per_turn[kind]).result() for kind in kinds]


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
    if config.videos or any(p.suffix.lower() == ".pdf" for p in config.images):
        from smolchat.media import attach

        attach.check(list(config.images), list(config.videos), pages=config.pages, ask_above=10**6)
    for image in config.images:
        if image.suffix.lower() != ".pdf":
            prepare_image(image)
