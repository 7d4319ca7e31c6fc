"""Video frames through the engine: one tile each, laid out as SmolVLM2 was trained, predicted
exactly, read alike by every encoder, and not read again on a follow-up."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from smolchat.budget.context import PredictedCounter
from smolchat.budget.detail import Detail
from smolchat.budget.images import ImageMarkers, image_cost
from smolchat.engine import EngineSettings, Message, SamplingParams, TurnResult
from smolchat.engine.engine import Engine
from smolchat.engine.tokenize import ImageUnit
from smolchat.media.video import read_video
from tests.media.clips import write_clip

GREEDY = SamplingParams(temperature=0, max_tokens=3)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, tiny_pair):
    path = write_clip(tmp_path_factory.mktemp("clips") / "square.mp4")
    return read_video(path, 32)  # the tiny projector's tile


def question(clip, text="What happens?") -> Message:
    return Message("user", (*clip.content, text))


def rendered(engine: Engine, messages) -> str:
    """The prompt as the model reads it: text tokens, and [N] for an image chunk of N tokens."""
    with engine._tokenized(messages, add_generation_prompt=True, pixels=False) as prompt:
        return "".join(
            f"[{u.n_pos}]" if isinstance(u, ImageUnit) else engine._text_model.token_text(u) for u in prompt.units
        )


def test_each_frame_is_one_tile_between_smolvlm2s_markers(tiny_engine, clip):
    messages = [question(clip)]
    text = rendered(tiny_engine, messages).replace("Ġ", " ").replace("Ċ", "\n")
    assert "You are provided the following series of twelve frames from a 0:00:12 [H:MM:SS] video.\n" in text
    for second in range(12):
        assert f"\nFrame from 00:{second:02d}:<fake_token_around_image><global-img>[4]<fake_token_around_image>" in text
    assert "<fake_token_around_image>\n\nWhat happens?" in text
    count = tiny_engine.count_prompt(messages)
    assert (count.image_tiles, count.image_tokens) == (12, 12 * 4)


def test_the_budget_predicts_what_the_engine_evaluates(tiny_engine, clip):
    messages = [question(clip)]
    markers = ImageMarkers.from_tokenizer(tiny_engine.count_tokens)
    projector = tiny_engine.projector_info
    for detail in Detail:  # a frame is one tile at every detail
        predicted = PredictedCounter(
            tiny_engine.template.render,
            lambda text, bos: tiny_engine.count_tokens(text, add_bos=bos),
            lambda w, h, one_tile=False, d=detail: image_cost(w, h, projector, d, markers, one_tile=one_tile),
        ).count_prompt(messages)
        assert predicted == tiny_engine.count_prompt(messages)
    tiny_engine.reset()
    result = [e for e in tiny_engine.run_turn(messages, GREEDY) if isinstance(e, TurnResult)][0]
    assert result.stats.prompt_tokens == predicted.positions
    assert (result.stats.frames, result.stats.images, result.stats.image_tiles_encoded) == (12, 0, 12)


def test_a_follow_up_reads_no_frame_again(tiny_engine, clip):
    tiny_engine.reset()
    first = [question(clip)]
    answer = [e for e in tiny_engine.run_turn(first, GREEDY) if isinstance(e, TurnResult)][0]
    follow_up = [*first, Message.assistant(answer.text), Message.user("And then?")]
    again = [e for e in tiny_engine.run_turn(follow_up, GREEDY) if isinstance(e, TurnResult)][0]
    assert again.stats.image_tiles_encoded == 0
    assert again.stats.reused_tokens >= answer.stats.prompt_tokens - 1


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_our_encoders_read_a_frame_as_libmtmd_does(tiny_pair, clip, backend):
    frame = clip.frames[5].image
    with Engine(*tiny_pair, EngineSettings(vision_backend="llama.cpp", vision_precision="F16")) as engine:
        expected = engine.encode_image(frame)
    with Engine(*tiny_pair, EngineSettings(vision_backend=backend, vision_precision="F32")) as engine:
        assert engine._encoder is not None
        got = engine.encode_image(frame)
    assert got.shape == expected.shape == (1, 4, expected.shape[-1])  # one tile of 4 tokens
    cosine = (got * expected).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(expected, axis=-1)
    assert cosine.min() > 0.999


def test_a_photo_beside_the_clip_keeps_its_grid(tiny_engine, clip, images):
    messages = [Message("user", (*clip.content, images["photo"], "Compare."))]
    count = tiny_engine.count_prompt(messages)
    photo = image_cost(1024, 768, tiny_engine.projector_info, Detail.FULL)
    assert count.image_tiles == 12 + photo.tiles


def test_stop_between_frames_keeps_the_frames_read(tiny_engine, clip, monkeypatch):
    tiny_engine.reset()
    cancel = threading.Event()
    real_encode = tiny_engine._encode_tile
    encoded = []

    def encode_then_stop_after_three(prompt, chunk):
        encoded.append(chunk)
        if len(encoded) == 3:
            cancel.set()  # Stop pressed while the third frame is read
        return real_encode(prompt, chunk)

    monkeypatch.setattr(tiny_engine, "_encode_tile", encode_then_stop_after_three)
    stopped = tiny_engine.prefill([question(clip, "")], cancel=cancel)
    assert stopped.cancelled and stopped.image_tiles_encoded == 3
    monkeypatch.undo()
    resumed = tiny_engine.prefill([question(clip, "")])
    # the frames placed before Stop are kept; the one being read when it came is read again
    assert not resumed.cancelled and resumed.image_tiles_encoded == 10
