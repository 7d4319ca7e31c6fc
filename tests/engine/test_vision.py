"""How images are read: the OpenVINO encoder and the BF16 projector agree with libmtmd's
F16 encoder, the settings measured fastest are the ones applied, and a machine without
BF16 or without OpenVINO falls back cleanly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gguf
import numpy as np
import pytest
from PIL import Image

from smolchat import paths
from smolchat.calibrate import open_engine, tuning
from smolchat.engine import EngineError, EngineSettings, Message, VisionEncoderError
from smolchat.engine import speed as speed_module
from smolchat.engine.engine import Engine
from smolchat.engine.synthetic import TINY, write_pair
from smolchat.engine.vision import cpu as cpu_report
from smolchat.engine.vision import onnx_encoder, openvino_encoder
from smolchat.engine.vision.cpu import CpuReport
from smolchat.engine.vision.plan import LLAMA_CPP, NOT_MEASURED, OPENVINO, VisionPlan, backends, precisions
from smolchat.engine.vision.projector_files import convert_mmproj
from tests.helpers import answer

LIBMTMD_F16 = EngineSettings(vision_backend="llama.cpp", vision_precision="F16")
NO_BF16 = CpuReport("Simulated CPU without BF16", logical_cores=2, physical_cores=2, bf16=False)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference per tile, relative to that tile's largest value."""
    return float(max(np.abs(x - y).max() / np.abs(x).max() for x, y in zip(a, b)))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(min((x * y).sum() / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)))


@pytest.fixture(scope="module")
def pictures(images, tmp_path_factory) -> dict[str, Path]:
    """The shared test images, and a tall one of odd size (resampling rounds differently there)."""
    tall = tmp_path_factory.mktemp("tall") / "tall.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (777, 333, 3), dtype=np.uint8)).save(tall)
    return {**images, "tall": tall}


@pytest.fixture(scope="module")
def reference(tiny_pair, pictures):
    """libmtmd's own embeddings (F16 weights) of every test image, at full and capped detail."""
    out = {}
    for cap in (None, 8):
        with Engine(
            *tiny_pair, EngineSettings(vision_backend="llama.cpp", vision_precision="F16", image_max_tokens=cap)
        ) as engine:
            for name in ("photo", "second", "small", "tall"):
                out[name, cap] = engine.encode_image(pictures[name])
    return out


@pytest.mark.parametrize("cap", [None, 8])
@pytest.mark.parametrize("name", ["photo", "second", "small", "tall"])
def test_openvino_encoder_matches_libmtmd(tiny_pair, pictures, reference, name, cap):
    """Same tiles, same embeddings: within 1e-3 of the largest value computing in F32, and
    cosine similarity above 0.999 per tile computing in BF16."""
    expected = reference[name, cap]
    for precision, check in (
        ("F32", lambda a: relative_error(expected, a) < 1e-3),
        ("BF16", lambda a: cosine(expected, a) > 0.999),
    ):
        settings = EngineSettings(vision_backend="openvino", vision_precision=precision, image_max_tokens=cap)
        with Engine(*tiny_pair, settings) as engine:
            assert engine.vision_plan.backend == "openvino" and engine._encoder is not None
            got = engine.encode_image(pictures[name])
        assert got.shape == expected.shape  # the same tiles, cut the same way
        assert check(got), (precision, relative_error(expected, got), cosine(expected, got))


def test_converted_bf16_projector_matches_the_original(tiny_pair, images, reference, tmp_path):
    bf16 = convert_mmproj(tiny_pair[1], tmp_path / "mmproj-bf16.gguf", "BF16")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(bf16).tensors}
    assert types["v.blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.BF16
    assert types["mm.model.fc.weight"] == gguf.GGMLQuantizationType.BF16
    assert types["v.patch_embd.weight"] == gguf.GGMLQuantizationType.F16  # ggml's convolution wants F16
    assert types["v.blk.0.ln1.weight"] == gguf.GGMLQuantizationType.F32
    with Engine(tiny_pair[0], bf16, EngineSettings(vision_backend="llama.cpp", vision_precision="BF16")) as engine:
        got = engine.encode_image(images["photo"])
    expected = reference["photo", None]
    assert cosine(expected, got) > 0.999 and relative_error(expected, got) < 0.05


def test_llama_cpp_bf16_loads_a_converted_copy_once(tiny_pair, images):
    settings = EngineSettings(vision_backend="llama.cpp", vision_precision="BF16", n_threads_vision=1)
    with Engine(*tiny_pair, settings) as engine:
        converted = engine.vision_mmproj_path
        assert converted != tiny_pair[1] and converted.parent == paths.data_dir() / "converted"
        assert engine.vision_plan.threads == 1
        result, _ = answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        assert result.stats.image_tiles_encoded == 13
    made = converted.stat().st_mtime_ns
    with Engine(*tiny_pair, settings) as engine:
        assert engine.vision_mmproj_path == converted and converted.stat().st_mtime_ns == made


def test_the_measured_fastest_settings_are_applied(tiny_pair, tmp_path, monkeypatch):
    monkeypatch.setattr(speed_module, "speeds_file", lambda: tmp_path / "speeds.json")  # no turn measured yet
    measured = tuning.measurements()
    backend, precision, threads = measured.fastest_vision()
    with open_engine(*tiny_pair) as engine:
        plan = engine.vision_plan
        assert (plan.backend, plan.precision, plan.threads) == (backend, precision, threads)
        assert engine.decode_threads == measured.fastest_decode()
        if backend != "llama.cpp":
            assert engine._encoder.precision == precision and engine._encoder.threads == threads
        else:
            assert engine._encoder is None
        # before its first tile, the wait shown comes from the probe, scaled to this projector's layers
        probe_s = measured.vision[f"{backend} {precision} {threads}"]
        layers = engine.projector_info.n_layer
        assert engine.speed.encode_s_per_tile == pytest.approx(probe_s * layers / tuning.PROBE_VISION_LAYERS)
    # every candidate the CPU allows was measured on all threads; on fewer threads, those near the fastest
    cpu = cpu_report.detect()
    most, *fewer = sorted(cpu.thread_candidates(), reverse=True)
    on_all = {f"{b} {p}": measured.vision.get(f"{b} {p} {most}") for b in backends() for p in precisions(b, cpu)}
    assert None not in on_all.values()
    near = {c for c, s in on_all.items() if s <= tuning.FEWER_THREADS_WITHIN * min(on_all.values())}
    assert set(measured.vision) == {f"{c} {most}" for c in on_all} | {f"{c} {t}" for c in near for t in fewer}
    assert set(measured.decode) == {str(t) for t in cpu.thread_candidates()}  # generation on every count


def test_an_engine_handed_no_plan_measures_nothing(tiny_pair, images, tmp_path, monkeypatch):
    def no_measuring(*args):
        raise AssertionError("the engine measured the computer")

    monkeypatch.setattr(tuning, "measure", no_measuring)
    monkeypatch.setattr(tuning, "_versions", lambda: "never measured")
    monkeypatch.setattr(cpu_report, "detect", lambda: NO_BF16)
    monkeypatch.setattr(speed_module, "speeds_file", lambda: tmp_path / "speeds.json")  # no turn measured yet
    with Engine(*tiny_pair) as engine:
        plan = engine.vision_plan
        assert (plan.backend, plan.precision, plan.threads, plan.how) == (LLAMA_CPP, "F16", 2, NOT_MEASURED)
        assert engine.speed.encode_s_per_tile is None  # no wait to show before a tile is read
    handed = VisionPlan(LLAMA_CPP, "F16", 1, 1, "handed in")
    with Engine(*tiny_pair, plan=handed, first_tile_s=0.5) as engine:
        assert engine.vision_plan == handed and engine.decode_threads == 1
        assert engine.speed.encode_s_per_tile == 0.5
        result, _ = answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        assert result.stats.image_tiles_encoded == 13


def test_openvino_failing_to_load_falls_back_to_libmtmd(tiny_pair, images, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no OpenVINO CPU plugin here")

    monkeypatch.setattr(openvino_encoder, "OpenVINOVisionEncoder", broken)
    with pytest.raises(VisionEncoderError, match="Choose the llama.cpp vision encoder"):
        Engine(*tiny_pair, plan=VisionPlan(OPENVINO, "F32", 1, 1))
    with open_engine(*tiny_pair, EngineSettings(vision_backend="openvino")) as engine:
        assert engine.vision_plan.backend == LLAMA_CPP and engine._encoder is None
        result, _ = answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        assert result.stats.image_tiles_encoded == 13


def test_a_cpu_without_bf16_falls_back_to_f16(tiny_pair, images, monkeypatch):
    monkeypatch.setattr(cpu_report, "detect", lambda: NO_BF16)
    measured = tuning.measurements()
    assert measured.cpu == NO_BF16.key
    assert not any("BF16" in candidate for candidate in measured.vision)
    with open_engine(*tiny_pair) as engine:
        assert engine.vision_plan.precision in ("F16", "F32", "INT8", "Q8_0")
        result, _ = answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        assert result.stats.image_tiles_encoded == 13
    with open_engine(*tiny_pair, EngineSettings(vision_backend="llama.cpp")) as engine:
        assert engine.vision_plan.precision == "F16"
        assert engine.vision_mmproj_path == tiny_pair[1]  # nothing converted


def test_without_openvino_images_are_read_by_libmtmd(tiny_pair, images, monkeypatch):
    monkeypatch.setattr(openvino_encoder, "available", lambda: False)
    monkeypatch.setattr(onnx_encoder, "available", lambda: False)
    monkeypatch.setattr(tuning, "_versions", lambda: "without openvino")  # measured afresh
    with open_engine(*tiny_pair) as engine:
        assert engine.vision_plan.backend == "llama.cpp" and engine._encoder is None
        result, _ = answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        assert result.stats.image_tiles_encoded == 13 and result.stats.finish_reason == "length"
    with pytest.raises(ValueError, match="OpenVINO is not installed"):
        open_engine(*tiny_pair, EngineSettings(vision_backend="openvino"))
    with pytest.raises(ValueError, match="OpenVINO is not installed"):
        Engine(*tiny_pair, EngineSettings(vision_backend="openvino"))


def test_openvino_agrees_with_libmtmd_on_the_answer_path(tiny_pair, images):
    """A turn read through OpenVINO puts the same number of image positions in the KV cache
    and a follow-up reuses them, exactly as with libmtmd."""
    conversation = [Message.user("What is in this picture?", images=[images["photo"]])]
    stats = {}
    for backend in ("llama.cpp", "openvino"):
        with Engine(
            *tiny_pair,
            EngineSettings(vision_backend=backend, vision_precision="F32" if backend == "openvino" else "F16"),
        ) as engine:
            first, _ = answer(engine, conversation)
            follow_up = conversation + [Message.assistant(first.text), Message.user("And the colours?")]
            second, _ = answer(engine, follow_up)
            stats[backend] = (first.stats.prompt_tokens, first.stats.image_tokens, second.stats.image_tiles_encoded)
            if backend == "openvino":  # libmtmd only lays prompts out: it gets no encoder layers
                layout = gguf.GGUFReader(engine.vision_mmproj_path)
                assert not any(t.name.startswith("v.blk.") for t in layout.tensors)
    assert stats["openvino"] == stats["llama.cpp"]
    assert stats["openvino"][2] == 0


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_libmtmd_gets_no_pixels_when_our_own_encoder_reads(tiny_pair, images, backend, monkeypatch):
    """libmtmd only lays the prompt out: it is handed placeholders, so it never spends time
    and memory preprocessing a picture it will not read."""
    from smolchat.engine import engine as engine_module

    given: list[frozenset] = []
    real_layout = engine_module.mtmd_layout

    def spy(ctx, segments, real_ids, frame_ctx=None):
        given.append(real_ids)
        return real_layout(ctx, segments, real_ids, frame_ctx)

    monkeypatch.setattr(engine_module, "mtmd_layout", spy)
    with Engine(*tiny_pair, EngineSettings(vision_backend=backend, vision_precision="F32")) as engine:
        result, _ = answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        assert result.stats.image_tiles_encoded == 13 and result.stats.image_tokens > 0
        engine.encode_image(images["second"])
    assert given and not any(given)


def test_tiles_cut_differently_from_libmtmd_are_refused_not_misread(tiny_pair, images, monkeypatch):
    from smolchat.engine import engine as engine_module

    real_cut = engine_module.cut_tiles
    monkeypatch.setattr(engine_module, "cut_tiles", lambda *a: real_cut(*a)[1:])
    with Engine(*tiny_pair, EngineSettings(vision_backend="openvino")) as engine:
        with pytest.raises(EngineError, match="cut it into tiles differently"):
            answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        monkeypatch.setattr(engine_module, "cut_tiles", real_cut)
        result, _ = answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        assert result.stats.image_tiles_encoded == 13


def test_a_failed_measurement_falls_back_to_the_cpu_report(tiny_pair, images, monkeypatch):
    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tuning, "measure", disk_full)
    monkeypatch.setattr(tuning, "_versions", lambda: "not measured yet")
    monkeypatch.setattr(cpu_report, "detect", lambda: NO_BF16)
    with open_engine(*tiny_pair) as engine:
        assert "CPU report" in engine.vision_plan.how and "No space left" in engine.vision_plan.how
        assert engine.vision_plan.precision in ("F16", "F32") and engine.vision_plan.threads == 2
        result, _ = answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        assert result.stats.image_tiles_encoded == 13


def test_the_same_picture_twice_in_a_conversation(tiny_pair, images):
    """Its tiles come twice in the prompt; OpenVINO reads each occurrence like libmtmd does."""
    conversation = [
        Message.user("What is this?", images=[images["photo"]]),
        Message.assistant("A photo."),
        Message.user("And this one?", images=[images["photo"]]),
    ]
    stats = {}
    for backend in ("llama.cpp", "openvino"):
        with Engine(*tiny_pair, EngineSettings(vision_backend=backend)) as engine:
            result, _ = answer(engine, conversation)
            stats[backend] = (result.stats.image_tiles_encoded, result.stats.image_tokens)
    assert stats["openvino"] == stats["llama.cpp"] == (26, 104)


@pytest.mark.parametrize(
    "cpuinfo, model, bf16",
    [
        (
            "processor\t: 0\nmodel name\t: Intel Core i7-8550U\nflags\t\t: fpu avx2 fma\n"
            "physical id\t: 0\ncore id\t\t: 0\n\n"
            "processor\t: 1\nmodel name\t: Intel Core i7-8550U\nflags\t\t: fpu avx2 fma\n"
            "physical id\t: 0\ncore id\t\t: 0\n",
            "Intel Core i7-8550U",
            False,
        ),
        (
            "processor\t: 0\nmodel name\t: Intel Xeon Platinum 8480\nflags\t\t: avx512f amx_bf16 amx_tile\n"
            "physical id\t: 0\ncore id\t\t: 0\n",
            "Intel Xeon Platinum 8480",
            True,
        ),
        ("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\nCPU part\t: 0xd4f\n", "0xd4f", True),
    ],
)
def test_the_cpu_report_reads_bf16_and_cores(cpuinfo, model, bf16):
    report = cpu_report._linux(cpuinfo, logical=2)
    assert (report.model, report.bf16) == (model, bf16)
    assert report.logical_cores == 2 and 1 <= report.physical_cores <= 2


def test_a_tile_that_patches_do_not_fill_is_read_like_libmtmd(tmp_path, pictures):
    """SmolVLM-2.2B's tiles are 384 px with 14 px patches: 27 patches a side, 6 px unused."""
    vision = dataclasses.replace(TINY.vision, image_size=36, preproc_image_size=144)  # 4 patches of 8 px
    text, mmproj = write_pair(tmp_path, dataclasses.replace(TINY, vision=vision))
    with Engine(text, mmproj, LIBMTMD_F16) as engine:
        expected = engine.encode_image(pictures["second"])
    with Engine(text, mmproj, EngineSettings(vision_backend="openvino", vision_precision="F32")) as engine:
        got = engine.encode_image(pictures["second"])
    assert expected.shape[1] == 4  # tokens per tile: (36 // 8) ** 2 / 2 ** 2
    assert got.shape == expected.shape and relative_error(expected, got) < 1e-3
