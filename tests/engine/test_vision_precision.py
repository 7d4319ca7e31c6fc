"""8-bit vision and the plan's choice: every precision offered agrees with libmtmd's F16
encoder (the agreement gate), an 8-bit path is chosen only where it measured faster and
agreed, "exact" keeps it one setting away, and the plan weighs memory."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from smolchat.budget.fit import vision_memory_rule
from smolchat.calibrate import open_engine, tuning
from smolchat.calibrate.tuning import Measurements, tile_cosine
from smolchat.engine import EngineSettings, Message
from smolchat.engine.engine import Engine
from smolchat.engine.gguf_info import inspect_projector, inspect_text_model
from smolchat.engine.vision import cpu as cpu_report
from smolchat.engine.vision.cpu import CpuReport
from smolchat.engine.vision.plan import (
    AGREEMENT_COSINE,
    LLAMA_CPP,
    ONNXRUNTIME,
    OPENVINO,
    VisionPlan,
    backends,
    is_exact,
    precisions,
)
from smolchat.models.machine import MachineMemory
from smolchat.models.memory import estimate_memory
from smolchat.settings import ModelSettings
from tests.helpers import answer

AVX2_LAPTOP = CpuReport("Simulated AVX2 laptop (no AVX-512, no BF16)", logical_cores=4, physical_cores=2, bf16=False)
BF16_SERVER = CpuReport("Simulated AVX512-BF16 server", logical_cores=4, physical_cores=2, bf16=True)
GiB = 1 << 30


def offered() -> list[tuple[str, str]]:
    """Every encoder and precision the plan may choose on some CPU."""
    return sorted({(b, p) for b in backends() for cpu in (AVX2_LAPTOP, BF16_SERVER) for p in precisions(b, cpu)})


def settings_for(backend: str, precision: str, **extra) -> EngineSettings:
    return EngineSettings(vision_backend=backend, vision_precision=precision, n_threads_vision=2, **extra)


@pytest.fixture(scope="module")
def libmtmd_f16(tiny_pair, images):
    with Engine(*tiny_pair, settings_for(LLAMA_CPP, "F16")) as engine:
        return {name: engine.encode_image(images[name]) for name in ("photo", "second")}


@pytest.mark.parametrize("backend, precision", offered())
def test_every_offered_precision_agrees_with_libmtmd_on_the_tiny_pair(
    tiny_pair, images, libmtmd_f16, backend, precision
):
    """The gate: each tile's embeddings within cosine AGREEMENT_COSINE of libmtmd's F16 ones,
    cut into the same tiles."""
    with Engine(*tiny_pair, settings_for(backend, precision)) as engine:
        assert (engine.vision_plan.backend, engine.vision_plan.precision) == (backend, precision)
        for name, expected in libmtmd_f16.items():
            got = engine.encode_image(images[name])
            assert got.shape == expected.shape
            assert tile_cosine(expected, got) >= AGREEMENT_COSINE, (name, tile_cosine(expected, got))


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    """SigLIP at SmolVLM-256M's real width and tile, two layers deep (the tuning's probe, which
    reads one tile and its overview), and a photo-like picture: smooth gradients and edges."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("shaped")
    text, mmproj, _ = tuning._probe_files(folder)
    y, x = np.mgrid[0:768, 0:1024]
    rgb = np.stack([x * 255 // 1023, y * 255 // 767, ((x // 128 + y // 128) % 2) * 200 + 20], axis=-1)
    photo = folder / "photo.png"
    Image.fromarray(rgb.astype(np.uint8)).save(photo)
    return text, mmproj, photo


@pytest.mark.parametrize("backend, precision", [p for p in offered() if not is_exact(p[1])])
def test_eight_bit_vision_agrees_with_libmtmd_at_real_width(shaped, backend, precision):
    text, mmproj, photo = shaped
    with Engine(text, mmproj, settings_for(LLAMA_CPP, "F16")) as engine:
        expected = engine.encode_image(photo)
    with Engine(text, mmproj, settings_for(backend, precision)) as engine:
        got = engine.encode_image(photo)
    assert got.shape == expected.shape == (2, 64, 576)  # a 512 px tile and the overview
    assert tile_cosine(expected, got) >= AGREEMENT_COSINE


@pytest.mark.parametrize("backend", [b for b in backends() if b != LLAMA_CPP])
def test_eight_bit_vision_gives_the_same_greedy_answer(tiny_pair, images, backend):
    """The fixture turns (a picture, then a follow-up) read in 8 bits and in full precision:
    the same words, greedily chosen, and the same positions in the context."""
    conversation = [Message.user("What is in this picture?", images=[images["photo"]])]
    answers = {}
    for precision in ("INT8", "F32"):
        with Engine(*tiny_pair, settings_for(backend, precision)) as engine:
            first, _ = answer(engine, conversation)
            follow_up = conversation + [Message.assistant(first.text), Message.user("And the colours?")]
            second, _ = answer(engine, follow_up)
            answers[precision] = (first.text, second.text, first.stats.prompt_tokens, second.stats.prompt_tokens)
    assert answers["INT8"] == answers["F32"]


def test_the_measured_agreement_is_kept_and_gates_the_plan():
    measured = tuning.measurements()
    for candidate in measured.vision:
        backend, precision, _ = candidate.split()
        assert f"{backend} {precision}" in measured.agreement  # checked, not assumed
    chosen = tuning.plan()
    assert measured.agreement[f"{chosen.backend} {chosen.precision}"] >= AGREEMENT_COSINE
    # generation timed with a photo's worth of context, with flash attention and without
    assert set(measured.long_decode) == {"flash", "plain"} and min(measured.long_decode.values()) > 0
    assert chosen.text_flash_attn == measured.text_flash_attn()


def measured(vision: dict[str, float], agreement: dict[str, float] | None = None, cpu=AVX2_LAPTOP) -> Measurements:
    agrees = {" ".join(k.split()[:2]): 0.9999 for k in vision}
    return Measurements(cpu.key, vision, {"2": 0.01, "1": 0.02}, {**agrees, **(agreement or {})})


# What the AVX2-only 2-core Zen 3 this was built on measured, in seconds per probe tile.
AVX2_MEASURED = {
    f"{ONNXRUNTIME} INT8 2": 0.163,
    f"{ONNXRUNTIME} F32 2": 0.271,
    f"{OPENVINO} INT8 2": 0.282,
    f"{LLAMA_CPP} F16 2": 0.285,
    f"{OPENVINO} F32 2": 0.304,
    f"{LLAMA_CPP} Q8_0 2": 0.361,
    f"{ONNXRUNTIME} INT8 1": 0.304,
}


@pytest.fixture
def simulated(monkeypatch):
    """The plan on a simulated CPU, with the measurements given."""

    def use(measurements: Measurements, cpu: CpuReport = AVX2_LAPTOP):
        monkeypatch.setattr(cpu_report, "detect", lambda: cpu)
        monkeypatch.setattr(tuning, "measurements", lambda cpu=None: measurements)

    return use


def test_a_simulated_avx2_cpu_selects_8_bit_where_it_measured_faster(simulated):
    simulated(measured(AVX2_MEASURED))
    assert tuning.plan() == VisionPlan(ONNXRUNTIME, "INT8", 2, 2, "measured on this computer")
    # where 8-bit measured slower (ggml's Q8_0 on AVX2), the full-precision variant is kept
    libmtmd = tuning.plan(backend=LLAMA_CPP)
    assert (libmtmd.backend, libmtmd.precision) == (LLAMA_CPP, "F16")
    simulated(measured({f"{OPENVINO} INT8 2": 0.31, f"{OPENVINO} F32 2": 0.30, f"{LLAMA_CPP} F16 2": 0.4}))
    assert (tuning.plan().backend, tuning.plan().precision) == (OPENVINO, "F32")


def test_generation_drops_flash_attention_only_where_it_measured_slower(tiny_pair, images, simulated):
    slower = measured(AVX2_MEASURED)
    slower.long_decode = {"flash": 0.0016, "plain": 0.0012}  # as on the AVX2 Zen 3, 1024 tokens in
    simulated(slower)
    assert tuning.plan().text_flash_attn is False
    with open_engine(*tiny_pair, EngineSettings()) as engine:
        assert engine.text_flash_attn is False
        result, _ = answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        assert result.stats.image_tiles_encoded == 13
    for within_noise in ({"flash": 0.00120, "plain": 0.00118}, {}):  # or measured before this was
        simulated(replace(slower, long_decode=within_noise))
        assert tuning.plan().text_flash_attn is True
    with open_engine(*tiny_pair, EngineSettings(flash_attn=False)) as engine:
        assert engine.text_flash_attn is False  # the settings can always turn it off


def test_exact_vision_is_one_setting_away(simulated):
    simulated(measured(AVX2_MEASURED))
    exact = tuning.plan(precision="exact")
    assert (exact.backend, exact.precision, exact.threads) == (ONNXRUNTIME, "F32", 2)
    assert ModelSettings(exact_vision=True).engine(None).vision_precision == "exact"
    assert ModelSettings().engine(None).vision_precision == "auto"
    assert ModelSettings(exact_vision=True).needs_reload(ModelSettings())


def test_an_8_bit_path_that_disagrees_is_never_chosen(simulated):
    simulated(measured(AVX2_MEASURED, {f"{ONNXRUNTIME} INT8": 0.97}))
    chosen = tuning.plan()
    assert (chosen.backend, chosen.precision) == (ONNXRUNTIME, "F32")
    # asked for by name, it is what the person chose
    assert tuning.plan(backend=ONNXRUNTIME, precision="INT8").precision == "INT8"


def test_the_plan_passes_over_an_encoder_that_does_not_fit_and_says_so(simulated):
    simulated(measured(AVX2_MEASURED))

    def only_libmtmd_fits(plan: VisionPlan) -> str | None:
        return None if plan.backend == LLAMA_CPP else "needs 2 GB and 1 GB is free"

    chosen = tuning.plan(fits=only_libmtmd_fits)
    assert (chosen.backend, chosen.precision) == (LLAMA_CPP, "F16")
    assert "onnxruntime INT8, 2 threads would be faster but needs 2 GB and 1 GB is free" in chosen.how


def test_the_memory_rule_weighs_each_encoder_with_the_model_and_context(shaped):
    text, projector = inspect_text_model(shaped[0]), inspect_projector(shaped[1])
    settings = EngineSettings(n_ctx=4096)

    def ram(backend: str, precision: str) -> int:
        return estimate_memory(
            text, projector, n_ctx=4096, vision_backend=backend, vision_precision=precision, vision_on_gpu=False
        ).ram

    small, large = ram(ONNXRUNTIME, "INT8"), ram(OPENVINO, "F32")
    assert small < ram(ONNXRUNTIME, "F32") and small < large and ram(OPENVINO, "INT8") < large
    between = MachineMemory(total_ram=8 * GiB, available_ram=(small + large) // 2)
    rule = vision_memory_rule(settings, between)
    assert rule(text, projector, VisionPlan(ONNXRUNTIME, "INT8", 2, 2)) is None
    refused = rule(text, projector, VisionPlan(OPENVINO, "F32", 2, 2))
    assert refused is not None and "is free" in refused


def test_a_loaded_engine_follows_the_memory_rule(tiny_pair, images, simulated):
    simulated(measured({f"{OPENVINO} F32 2": 0.1, f"{LLAMA_CPP} F16 2": 0.3}))

    def no_room_for_openvino(text, projector, plan):
        return "it needs more than is free" if plan.backend == OPENVINO else None

    with open_engine(*tiny_pair, EngineSettings(), fits=no_room_for_openvino) as engine:
        assert engine.vision_plan.backend == LLAMA_CPP and "would be faster" in engine.vision_plan.how
        result, _ = answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        assert result.stats.image_tiles_encoded == 13


def test_a_reference_shaped_differently_never_agrees():
    a = np.ones((2, 4, 8), np.float32)
    assert tile_cosine(a, a) == pytest.approx(1.0)
    assert tile_cosine(a, a[:1]) == 0.0
    assert tile_cosine(a, -a) == pytest.approx(-1.0)
