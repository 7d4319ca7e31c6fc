"""Choosing how this machine reads images fastest, by measuring it once.

The candidates come from what the CPU reports: BF16 weights only where it has BF16
instructions, OpenVINO only where the extra is installed, thread counts from its cores.
Each candidate then reads one tile through a *probe* projector: SigLIP at SmolVLM's real
width and tile size but two layers deep, written on the spot with random weights, so the
measurement takes seconds and ranks the candidates as the full model would. Decoding speed
is measured per thread count with a probe text model of SmolVLM-256M's width. The result is
kept per CPU and library version, so it is measured once per machine.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from smolchat import paths
from smolchat.engine import families
from smolchat.engine.backends import llama_cpp
from smolchat.engine.families import PairShape
from smolchat.engine.vision import cpu as cpu_report
from smolchat.engine.vision import openvino_encoder
from smolchat.engine.vision.cpu import CpuReport
from smolchat.engine.vision.plan import (
    LLAMA_CPP,
    OPENVINO,
    VisionPlan,
    backends,
    check_installed,
    from_cpu_report,
    precisions,
)
from smolchat.engine.vision.projector_files import convert_mmproj
from smolchat.errors import SmolChatError
from smolchat.files import write_json

log = logging.getLogger(__name__)

_FORMAT = 1  # bump when what is measured changes

PROBE_NAME = "SmolChatProbe"
PROBE_VISION_LAYERS = 2  # SigLIP at its real width, few layers: enough to rank the candidates


@dataclass
class Measurements:
    cpu: str
    vision: dict[str, float]  # "backend precision threads" -> seconds per probe tile
    decode: dict[str, float]  # "threads" -> seconds per token

    def fastest_vision(self) -> tuple[str, str, int]:
        best = min(self.vision, key=self.vision.__getitem__)
        backend, precision, threads = best.split()
        return backend, precision, int(threads)

    def fastest_decode(self) -> int:
        return int(min(self.decode, key=self.decode.__getitem__))


def _versions() -> str:
    ov = "none"
    if openvino_encoder.available():
        import openvino

        ov = openvino.__version__
    return f"llama-cpp-python {llama_cpp.__version__}, openvino {ov}, format {_FORMAT}"


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


def _time_openvino(mmproj: Path, image: Path, precision: str, threads: int) -> float:
    from smolchat.engine.vision.tiles import cut_tiles, normalized

    encoder = openvino_encoder.OpenVINOVisionEncoder(mmproj, threads=threads, precision=precision)
    pixels = np.asarray(Image.open(image).convert("RGB"))
    tiles = normalized(cut_tiles(pixels, encoder.geometry)[:1], encoder.mean, encoder.std)
    encoder.encode(tiles)  # warm-up
    runs = []
    for _ in range(3):
        began = time.perf_counter()
        encoder.encode(tiles)
        runs.append(time.perf_counter() - began)
    return min(runs)


def _time_llama_cpp(text: Path, mmproj: Path, image: Path, precision: str, threads: int) -> tuple[float, float]:
    """Seconds per probe tile, and per generated token."""
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
        engine.reset()
        sampling = SamplingParams(max_tokens=24, ignore_eos=True, temperature=0.0)
        stats = [
            event.stats for event in engine.run_turn([Message.user("Count.")], sampling) if hasattr(event, "stats")
        ][-1]
    return min(tile_runs[1:]), stats.tpot_s or float("inf")


def measure(cpu: CpuReport, folder: Path) -> Measurements:
    """Time every candidate on the probe models (a few seconds in all)."""
    text, mmproj, image = _probe_files(folder)
    vision: dict[str, float] = {}
    decode: dict[str, float] = {}
    started = time.perf_counter()
    for threads in cpu.thread_candidates():
        for precision in precisions(LLAMA_CPP, cpu):
            probe = mmproj
            if precision != "F16":
                probe = folder / f"mmproj-{PROBE_NAME}-{precision}.gguf"
                if not probe.exists():
                    convert_mmproj(mmproj, probe, precision)
            tile_s, token_s = _time_llama_cpp(text, probe, image, precision, threads)
            vision[f"{LLAMA_CPP} {precision} {threads}"] = tile_s
            decode[str(threads)] = min(decode.get(str(threads), token_s), token_s)
        if openvino_encoder.available():
            for precision in precisions(OPENVINO, cpu):
                try:
                    vision[f"{OPENVINO} {precision} {threads}"] = _time_openvino(mmproj, image, precision, threads)
                except Exception as e:  # an OpenVINO that cannot run here is simply not a candidate
                    log.warning("OpenVINO %s on %d threads failed: %s", precision, threads, e)
    log.info(
        "measured vision encoders in %.1f s: %s",
        time.perf_counter() - started,
        ", ".join(f"{k}: {v * 1000:.0f} ms" for k, v in sorted(vision.items(), key=lambda kv: kv[1])),
    )
    return Measurements(cpu.key, vision, decode)


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


def plan(
    *,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    decode_threads: int | None = None,
    cpu: CpuReport | None = None,
) -> VisionPlan:
    """The fastest way to read images here; what is given explicitly is kept, and the rest is
    the fastest measured variant that agrees with it."""
    cpu = cpu or cpu_report.detect()
    check_installed(backend)
    if backend != "auto" and precision != "auto" and threads and decode_threads:
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
    matching = {
        key: seconds
        for key, seconds in m.vision.items()
        if (backend == "auto" or key.split()[0] == backend)
        and (precision == "auto" or key.split()[1] == precision)
        and (not threads or int(key.split()[2]) == threads)
    }
    if matching:
        fast_backend, fast_precision, fast_threads = min(matching, key=matching.__getitem__).split()
    else:  # a combination that was not measured (say F32 weights for libmtmd): as asked
        fast_backend = LLAMA_CPP if backend == "auto" else backend
        fast_precision = precisions(fast_backend, cpu)[0] if precision == "auto" else precision
        fast_threads = str(threads or cpu.physical_cores)
    explicit = backend != "auto" or precision != "auto" or threads
    return VisionPlan(
        backend=fast_backend,
        precision=fast_precision,
        threads=int(fast_threads),
        decode_threads=decode_threads or m.fastest_decode(),
        how="settings, the rest measured on this computer" if explicit else "measured on this computer",
    )
