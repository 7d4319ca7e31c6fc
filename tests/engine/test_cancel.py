"""Cancelling from another thread: during prompt evaluation, image encoding and generation."""

from __future__ import annotations

import threading
import time

import pytest

from smolchat.engine import EngineSettings, Message, SamplingParams, TextDelta, TurnResult
from smolchat.engine import engine as engine_module
from smolchat.engine.engine import Engine
from tests.helpers import GREEDY, answer

LONG_QUESTION = (
    "Please read this carefully. "
    + " ".join(f"Sentence number {i} talks about a different colour, shape and animal." for i in range(60))
    + " Which animal came first?"
)


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    # small batches: a question of about 900 tokens is evaluated in several, so a cancel can
    # land between them
    with Engine(smollm2_path, settings=EngineSettings(n_ctx=4096, n_batch=128)) as engine:
        yield engine


def test_cancel_during_prompt_evaluation(smollm2):
    conversation = [Message.user(LONG_QUESTION)]
    smollm2.reset()
    started = time.perf_counter()
    full, _ = answer(smollm2, conversation, SamplingParams(max_tokens=1))
    full_eval_s = time.perf_counter() - started
    assert full.stats.prompt_tokens > 6 * 128

    smollm2.reset()
    timer = threading.Timer(full_eval_s / 4, smollm2.cancel)
    timer.start()
    cancelled, deltas = answer(smollm2, conversation, SamplingParams(max_tokens=50))
    timer.join()
    assert cancelled.stats.finish_reason == "cancelled"
    assert cancelled.text == "" and deltas == []
    assert 0 < cancelled.stats.evaluated_tokens < full.stats.prompt_tokens
    assert cancelled.stats.ttft_s is None

    # still usable, and what was evaluated before the cancel is kept and correct
    again, _ = answer(smollm2, conversation, GREEDY)
    assert again.stats.finish_reason == "length"
    assert again.stats.reused_tokens == cancelled.stats.evaluated_tokens
    smollm2.reset()
    reference, _ = answer(smollm2, conversation, GREEDY)
    assert again.text == reference.text


def test_cancel_during_generation_keeps_the_partial_answer(smollm2):
    conversation = [Message.user("Write a long story about a lighthouse keeper.")]
    sampling = SamplingParams(temperature=0.0, max_tokens=2000, ignore_eos=True)
    events = []
    for event in smollm2.run_turn(conversation, sampling):
        events.append(event)
        if len(events) == 20:
            threading.Thread(target=smollm2.cancel).start()
    result = events[-1]
    assert isinstance(result, TurnResult)
    assert result.stats.finish_reason == "cancelled"
    assert 20 <= result.stats.generated_tokens < 200
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert result.text == streamed and len(result.text) > 20
    after, _ = answer(smollm2, [Message.user("Say hello.")], GREEDY)
    assert after.stats.finish_reason == "length"


def test_a_cancel_event_given_with_the_turn(smollm2):
    stop = threading.Event()
    stop.set()  # cancelled before it starts: nothing is evaluated
    result, _ = answer(smollm2, [Message.user("Hello there")], cancel=stop)
    assert result.stats.finish_reason == "cancelled" and result.stats.evaluated_tokens == 0


@pytest.mark.parametrize("backend", ["llama.cpp", "openvino", "onnxruntime"])
def test_cancel_between_image_tiles(tiny_pair, images, monkeypatch, backend):
    """The vision encoder cannot be interrupted inside a tile; the engine stops after it."""
    with Engine(*tiny_pair, EngineSettings(vision_backend=backend)) as engine:
        owner, name = (
            (engine._encoder, "encode") if backend != "llama.cpp" else (engine_module.mtmd, "mtmd_encode_chunk")
        )
        real_encode = getattr(owner, name)

        def encode_then_cancel(*args):
            result = real_encode(*args)
            engine.cancel()  # as if Stop was pressed while this tile was being encoded
            return result

        monkeypatch.setattr(owner, name, encode_then_cancel)
        conversation = [Message.user("What is in this picture?", images=[images["photo"]])]
        cancelled, _ = answer(engine, conversation)
        assert cancelled.stats.finish_reason == "cancelled"
        assert cancelled.stats.image_tiles_encoded == 1
        monkeypatch.setattr(owner, name, real_encode)
        result, _ = answer(engine, conversation)
        assert result.stats.finish_reason == "length"
        assert result.stats.image_tiles_encoded == 13
