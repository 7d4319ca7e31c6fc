"""Choosing how this machine reads images fastest, by measuring it once.

The candidates come from what the CPU reports: BF16 weights only where it has BF16
instructions, OpenVINO only where the extra is installed, thread counts from its cores.
Each candidate then reads one tile through a *probe* projector: SigLIP at SmolVLM's real
width and tile size but two layers deep, written on the spot with random weights, so the
measurement takes seconds and ranks the candidates as the full model would. Decoding speed
is measured per thread count with a probe text model of SmolVLM-256M's width. The result is
kept per CPU and library version, so it is measured once per machine.

Each candidate's embeddings of the probe tile are also compared with libmtmd's F16 ones: one
that does not agree (cosine below ``AGREEMENT_COSINE``, an 8-bit path gone wrong on this CPU,
say) is never chosen. The plan then takes the fastest candidate that agrees, that the
settings allow ("exact" leaves out the 8-bit ones) and that fits in memory beside the model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from smolchat import paths, progress
from smolchat.engine import families
from smolchat.engine.backends import llama_cpp
from smolchat.engine.families import PairShape
from smolchat.engine.vision import cpu as cpu_report
from smolchat.engine.vision import onnx_encoder, openvino_encoder
from smolchat.engine.vision.cpu import CpuReport
from smolchat.engine.vision.plan import (
    AGREEMENT_COSINE,
    BACKEND_NAMES,
    EXACT,
    LLAMA_CPP,
    ONNXRUNTIME,
    VisionPlan,
    backends,
    check_installed,
    from_cpu_report,
    is_exact,
    precisions,
)
from smolchat.engine.vision.projector_files import convert_mmproj
from smolchat.errors import SmolChatError
from smolchat.files import write_json

log = logging.getLogger(__name__)

_FORMAT = 3  # bump when what is measured changes

PROBE_NAME = "SmolChatProbe"
PROBE_VISION_LAYERS = 2  # SigLIP at its real width, few layers: enough to rank the candidates
FEWER_THREADS_WITHIN = 1.3  # on fewer threads, candidates this close to the fastest are timed again
# Where generation is timed with and without flash attention: a photo's tokens and a question.
# (With a short context flash attention can win on the same CPU where it loses here.)
LONG_CONTEXT = 1024


@dataclass
class Measurements:
    cpu: str
    vision: dict[str, float]  # "backend precision threads" -> seconds per probe tile
    decode: dict[str, float]  # "threads" -> seconds per token
    # "backend precision" -> the probe tile's cosine similarity with libmtmd's F16 embeddings
    agreement: dict[str, float] = field(default_factory=dict)
    # "flash" / "plain" -> seconds per token generated with LONG_CONTEXT tokens before it
    long_decode: dict[str, float] = field(default_factory=dict)

    def text_flash_attn(self) -> bool:
        """Flash attention for the text model unless generating without it measured faster
        (by more than the noise of a few runs)."""
        flash, plain = self.long_decode.get("flash"), self.long_decode.get("plain")
        return not (flash and plain and plain < flash * 0.97)

    def agrees(self, candidate: str) -> bool:
        """Whether a "backend precision [threads]" candidate passed the agreement gate."""
        backend, precision = candidate.split()[:2]
        return self.agreement.get(f"{backend} {precision}", 0.0) >= AGREEMENT_COSINE

    def fastest_vision(self) -> tuple[str, str, int]:
        best = min((k for k in self.vision if self.agrees(k)), key=self.vision.__getitem__)
        backend, precision, threads = best.split()
        return backend, precision, int(threads)

    def fastest_decode(self) -> int:
        return int(min(self.decode, key=self.decode.__getitem__))


def _versions() -> str:
    ov = ort = "none"
    if openvino_encoder.available():
        import openvino

        ov = openvino.__version__
    if onnx_encoder.available():
        import onnxruntime

        ort = onnxruntime.__version__
    return f"llama-cpp-python {llama_cpp.__version__}, openvino {ov}, onnxruntime {ort}, format {_FORMAT}"


def _probe_files(folder: Path) -> tuple[Path, Path, Path]:
    from smolchat.engine.synthetic import write_pair  # gguf's writer: only when probes are written

    # SmolVLM-256M's widths and tile, few layers, a minimal vocabulary, one tile per image
    family = families.SMOLVLM_256M
    probe = PairShape(
        name=PROBE_NAME,
        text=replace(family.text, n_layer=4, n_vocab=None, n_ctx_train=2048),
        vision=replace(family.vision, n_layer=PROBE_VISION_LAYERS, preproc_image_size=512),
    )
    text = folder / f"{PROBE_NAME}-F16.gguf"
    mmproj = folder / f"mmproj-{PROBE_NAME}-F16.gguf"
    image = folder / "probe.png"
    if not (text.exists() and mmproj.exists() and image.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        write_pair(folder, probe)
        noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
        Image.fromarray(noise).save(image)
    return text, mmproj, image


def tile_cosine(expected: np.ndarray, got: np.ndarray) -> float:
    """The lowest cosine similarity of two encoders' embeddings over the tiles they read."""
    expected, got = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    if expected.shape != got.shape:
        return 0.0
    cosines = [
        float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0)) for a, b in zip(expected, got)
    ]
    return min(cosines, default=0.0)


@progress.hushed()
def _time_own_encoder(
    backend: str, mmproj: Path, image: Path, precision: str, threads: int
) -> tuple[float, np.ndarray]:
    """Seconds per probe tile, and the tile's embeddings."""
    from smolchat.engine.vision.tiles import cut_tiles, normalized

    if backend == ONNXRUNTIME:
        encoder: onnx_encoder.OnnxVisionEncoder | openvino_encoder.OpenVINOVisionEncoder = (
            onnx_encoder.OnnxVisionEncoder(mmproj, threads=threads, precision=precision)
        )
    else:
        encoder = openvino_encoder.OpenVINOVisionEncoder(mmproj, threads=threads, precision=precision)
    pixels = np.asarray(Image.open(image).convert("RGB"))
    tiles = normalized(cut_tiles(pixels, encoder.geometry)[:1], encoder.mean, encoder.std)
    embeddings = encoder.encode(tiles)  # also the warm-up
    runs = []
    for _ in range(3):
        began = time.perf_counter()
        encoder.encode(tiles)
        runs.append(time.perf_counter() - began)
    return min(runs), embeddings


@progress.hushed()
def _time_llama_cpp(
    text: Path, mmproj: Path, image: Path, precision: str, threads: int, *, decode: bool = True
) -> tuple[float, float, np.ndarray]:
    """Seconds per probe tile, per generated token (inf when ``decode`` is False: generation
    does not depend on the projector), and the tile's embeddings."""
    from smolchat.engine.engine import Engine
    from smolchat.engine.prompt import Message
    from smolchat.engine.types import EngineSettings, SamplingParams

    settings = EngineSettings(
        n_ctx=1024, n_threads=threads, vision_backend=LLAMA_CPP, vision_precision=precision, n_threads_vision=threads
    )
    candidate = VisionPlan(LLAMA_CPP, precision, threads, threads, "a candidate being measured")
    with Engine(text, mmproj, settings, plan=candidate) as engine:
        tile_runs = []
        for _ in range(3):  # the first run is a warm-up
            engine.reset()
            result = engine.prefill([Message.user("?", [image])])
            tile_runs.append(result.encode_s / max(1, result.image_tiles_encoded))
        embeddings = engine.encode_image(image)[:1]  # the first tile, as the other encoders read it
        if not decode:
            return min(tile_runs[1:]), float("inf"), embeddings
        engine.reset()
        sampling = SamplingParams(max_tokens=24, ignore_eos=True, temperature=0.0)
        stats = [
            event.stats for event in engine.run_turn([Message.user("Count.")], sampling) if hasattr(event, "stats")
        ][-1]
    return min(tile_runs[1:]), stats.tpot_s or float("inf"), embeddings


@progress.hushed()
def _time_decode(text: Path, threads: int) -> float:
    """Seconds per generated token on ``threads`` threads, on the probe's text model alone."""
    from smolchat.engine.engine import Engine
    from smolchat.engine.prompt import Message
    from smolchat.engine.types import EngineSettings, SamplingParams

    settings = EngineSettings(n_ctx=1024, n_threads=threads, vision_backend=LLAMA_CPP)
    sampling = SamplingParams(max_tokens=24, ignore_eos=True, temperature=0.0)
    with Engine(text, None, settings) as engine:
        stats = [
            event.stats for event in engine.run_turn([Message.user("Count.")], sampling) if hasattr(event, "stats")
        ][-1]
    return stats.tpot_s or float("inf")


@progress.hushed()
def _time_long_decode(text: Path, threads: int) -> dict[str, float]:
    """Seconds per generated token with LONG_CONTEXT tokens in the context, with flash
    attention ("flash") and without ("plain"), on the probe's text model."""
    from smolchat.engine import native

    timings = {}
    for name, flash in (("flash", True), ("plain", False)):
        model = native.TextModel(
            str(text),
            n_ctx=LONG_CONTEXT + 64,
            n_batch=512,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=0,
            flash_attn=flash,
        )
        try:
            n_vocab = llama_cpp.llama_vocab_n_tokens(model.vocab)
            batch = native.TokenBatch(512)
            context = [i % n_vocab for i in range(LONG_CONTEXT)]
            for start in range(0, LONG_CONTEXT, 512):
                if llama_cpp.llama_decode(model.ctx, batch.fill(context[start : start + 512], start, True)):
                    raise SmolChatError("llama.cpp could not evaluate the probe's context")
            runs = []
            for step in range(24):
                began = time.perf_counter()
                if llama_cpp.llama_decode(model.ctx, batch.fill([step % n_vocab], LONG_CONTEXT + step, True)):
                    raise SmolChatError("llama.cpp could not evaluate the probe's context")
                runs.append(time.perf_counter() - began)
            timings[name] = float(np.median(runs[4:]))  # the first few warm the caches
        finally:
            model.close()
    return timings


MEASURING = "Measuring how fast this computer reads images (once, about 20 s)"


def measure(cpu: CpuReport, folder: Path) -> Measurements:
    """Time every candidate on the probe models, and check its embeddings against libmtmd's
    F16 ones (a few seconds in all)."""
    text, mmproj, image = _probe_files(folder)
    vision: dict[str, float] = {}
    decode: dict[str, float] = {}
    agreement: dict[str, float] = {}
    started = time.perf_counter()
    reference: np.ndarray | None = None
    threads_first = sorted(cpu.thread_candidates(), reverse=True)  # the reference on all cores
    first: dict[str, float] = {}  # each candidate's time on all threads, "backend precision" -> s

    def worth_timing(candidate: str, threads: int) -> bool:
        """On fewer threads, only the candidates near the fastest on all of them are timed again:
        the ranking of backends holds from one thread count to the next, and each timing costs
        seconds of the first start."""
        if threads == threads_first[0]:
            return True
        return candidate in first and first[candidate] <= FEWER_THREADS_WITHIN * min(first.values())

    others = [(b, p) for b in backends() if b != LLAMA_CPP for p in precisions(b, cpu)]
    steps = len(threads_first) * (len(precisions(LLAMA_CPP, cpu)) + len(others)) + 1
    step = 0

    def timing(backend: str, precision: str, threads: int) -> None:
        """Say which candidate is timed now (those passed over count as done)."""
        nonlocal step
        threads_text = f"{threads} thread{'s' if threads != 1 else ''}"
        progress.report(f"{MEASURING}: {BACKEND_NAMES[backend]} {precision} on {threads_text}", step, steps)
        step += 1

    for threads in threads_first:
        for precision in precisions(LLAMA_CPP, cpu):
            timing(LLAMA_CPP, precision, threads)
            if not worth_timing(f"{LLAMA_CPP} {precision}", threads):
                if str(threads) not in decode:  # generation's own thread count is still measured
                    decode[str(threads)] = _time_decode(text, threads)
                continue
            probe = mmproj
            if precision != "F16":
                probe = folder / f"mmproj-{PROBE_NAME}-{precision}.gguf"
                if not probe.exists():
                    convert_mmproj(mmproj, probe, precision)
            tile_s, token_s, embeddings = _time_llama_cpp(
                text, probe, image, precision, threads, decode=str(threads) not in decode
            )
            vision[f"{LLAMA_CPP} {precision} {threads}"] = tile_s
            first.setdefault(f"{LLAMA_CPP} {precision}", tile_s)
            decode[str(threads)] = min(decode.get(str(threads), token_s), token_s)
            if reference is None:
                reference = embeddings  # libmtmd, F16: the first candidate measured
            agreement.setdefault(f"{LLAMA_CPP} {precision}", tile_cosine(reference, embeddings))
        for backend, precision in others:
            timing(backend, precision, threads)
            if not worth_timing(f"{backend} {precision}", threads):
                continue
            try:
                tile_s, embeddings = _time_own_encoder(backend, mmproj, image, precision, threads)
            except Exception as e:  # a runtime that cannot run here is simply not a candidate
                log.warning("%s %s on %d threads failed: %s", backend, precision, threads, e)
                continue
            vision[f"{backend} {precision} {threads}"] = tile_s
            first.setdefault(f"{backend} {precision}", tile_s)
            if reference is not None:  # libmtmd measured first, on every thread count
                agreement.setdefault(f"{backend} {precision}", tile_cosine(reference, embeddings))
    log.info(
        "measured vision encoders in %.1f s: %s",
        time.perf_counter() - started,
        ", ".join(f"{k}: {v * 1000:.0f} ms" for k, v in sorted(vision.items(), key=lambda kv: kv[1])),
    )
    refused = [f"{k} ({c:.4f})" for k, c in agreement.items() if c < AGREEMENT_COSINE]
    if refused:
        log.warning("vision encoders that disagree with libmtmd here, never chosen: %s", ", ".join(refused))
    result = Measurements(cpu.key, vision, decode, agreement)
    progress.report(f"{MEASURING}: generation with a long conversation", step, steps)
    result.long_decode = _time_long_decode(text, result.fastest_decode())
    progress.report(MEASURING, steps, steps)
    log.info("generation with %d tokens before it: %s", LONG_CONTEXT, result.long_decode)
    return result


def _saved() -> tuple[Path, dict]:
    store = paths.cache_dir() / "tuning.json"
    try:
        return store, json.loads(store.read_text())
    except (OSError, ValueError):
        return store, {}


def cached_measurements(cpu: CpuReport | None = None) -> Measurements | None:
    """This machine's measurements if they were taken already (nothing is measured)."""
    cpu = cpu or cpu_report.detect()
    saved = _saved()[1].get(f"{cpu.key} | {_versions()}")
    return Measurements(**saved) if saved else None


def probe_seconds_per_tile(plan: VisionPlan, projector_layers: int) -> float | None:
    """A first estimate of a projector's seconds per tile with ``plan``: the probe's time,
    scaled from its layers to the projector's (the encoder's layers are nearly all its time)."""
    m = cached_measurements()
    probe = m.vision.get(f"{plan.backend} {plan.precision} {plan.threads}") if m else None
    return probe * projector_layers / PROBE_VISION_LAYERS if probe else None


def measurements(cpu: CpuReport | None = None) -> Measurements:
    """This machine's measurements, from the cache or measured now."""
    cpu = cpu or cpu_report.detect()
    store, saved = _saved()
    key = f"{cpu.key} | {_versions()}"
    if key in saved:
        return Measurements(**saved[key])
    result = measure(cpu, paths.cache_dir() / "probe")
    saved[key] = asdict(result)
    write_json(store, saved)
    return result


# Whether a plan's encoder fits in memory beside the model: None if it does, else why not.
MemoryCheck = Callable[[VisionPlan], "str | None"]


def plan(
    *,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    decode_threads: int | None = None,
    cpu: CpuReport | None = None,
    fits: MemoryCheck | None = None,
) -> VisionPlan:
    """The fastest way to read images here; what is given explicitly is kept, and the rest is
    the fastest measured variant that agrees with it and with libmtmd's embeddings.

    ``precision`` "exact" takes the fastest variant that is not 8-bit. ``fits`` weighs
    memory: a variant it refuses is passed over for the next fastest, and the plan says so."""
    cpu = cpu or cpu_report.detect()
    check_installed(backend)
    if backend != "auto" and precision not in ("auto", EXACT) and threads and decode_threads:
        return VisionPlan(backend, precision, threads, decode_threads, "from the settings")
    try:
        m = measurements(cpu)
    except (OSError, SmolChatError) as e:  # a full disk, say: go by what the CPU reports
        log.warning("could not measure this computer, going by its CPU report: %s", e)
        return from_cpu_report(
            cpu,
            backends()[0] if backend == "auto" else backend,
            precision=precision,
            threads=threads,
            decode_threads=decode_threads,
            how=f"from the CPU report (not measured: {e})",
        )
    chosen_precision = precision not in ("auto", EXACT)

    def allowed(key: str) -> bool:
        k_backend, k_precision, k_threads = key.split()
        return (
            (backend == "auto" or k_backend == backend)
            and (k_precision == precision if chosen_precision else precision != EXACT or is_exact(k_precision))
            and (not threads or int(k_threads) == threads)
            and (chosen_precision or m.agrees(key))  # a precision asked for by name is kept as asked
        )

    explicit = backend != "auto" or precision != "auto" or bool(threads)
    how = "settings, the rest measured on this computer" if explicit else "measured on this computer"
    decode = decode_threads or m.fastest_decode()
    text_flash_attn = m.text_flash_attn()
    passed_over: list[str] = []
    for key in sorted((k for k in m.vision if allowed(k)), key=m.vision.__getitem__):
        k_backend, k_precision, k_threads = key.split()
        candidate = VisionPlan(k_backend, k_precision, int(k_threads), decode, how, text_flash_attn)
        reason = fits(candidate) if fits else None
        if reason is None:
            if passed_over:
                candidate = replace(candidate, how=f"{how}; {'; '.join(passed_over)}")
            return candidate
        passed_over.append(f"{candidate.describe()} would be faster but {reason}")
    # nothing measured fits the request (say F32 weights for libmtmd), or nothing fits in memory:
    # libmtmd as asked, whose F16 weights take the least memory of the full-precision variants
    fast_backend = LLAMA_CPP if backend == "auto" else backend
    fast_precision = precision if chosen_precision else precisions(fast_backend, cpu)[0]
    if passed_over:
        how = f"{how}; {'; '.join(passed_over)}"
    return VisionPlan(fast_backend, fast_precision, threads or cpu.physical_cores, decode, how, text_flash_attn)
