"""A real small model (SmolLM2-135M-Instruct) in text-only mode: words that make sense."""

from __future__ import annotations

import pytest

from smolchat.engine import Engine, EngineSettings, Message, SamplingParams
from tests.helpers import answer


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    with Engine(smollm2_path, settings=EngineSettings(n_ctx=2048)) as engine:
        yield engine


def test_a_real_answer(smollm2):
    result, deltas = answer(
        smollm2, [Message.user("What is the capital of France?")],
        SamplingParams(temperature=0.0, max_tokens=40),
    )
    assert "Paris" in result.text
    assert result.stats.finish_reason == "stop"  # the model ended its answer itself
    assert len(deltas) > 1 and "".join(deltas) == result.text
    assert result.stats.image_tokens == 0


def test_follow_up_question(smollm2):
    conversation = [Message.user("What is the capital of France?")]
    greedy = SamplingParams(temperature=0.0, max_tokens=40)
    first, _ = answer(smollm2, conversation, greedy)
    conversation += [Message.assistant(first.text), Message.user("And the capital of Germany?")]
    second, _ = answer(smollm2, conversation, greedy)
    assert second.stats.reused_tokens >= first.stats.prompt_tokens
    assert "Berlin" in second.text


def test_system_prompt(smollm2):
    greedy = SamplingParams(temperature=0.0, max_tokens=40)
    question = Message.user("What is the capital of France?")
    plain, _ = answer(smollm2, [question], greedy)
    with_system, _ = answer(smollm2, [Message.system("You are a geography teacher."), question], greedy)
    assert "Paris" in with_system.text
    assert with_system.stats.prompt_tokens != plain.stats.prompt_tokens  # it reached the prompt


def test_stop_strings_end_the_answer_before_them(smollm2):
    sampling = SamplingParams(temperature=0.0, max_tokens=80, stop=("5",))
    result, deltas = answer(smollm2, [Message.user("Count from 1 to 10, separated by commas.")], sampling)
    assert result.stats.finish_reason == "stop"
    assert "4" in result.text and "5" not in result.text
    assert "".join(deltas) == result.text


def test_sampling_with_a_seed_is_repeatable(smollm2):
    sampling = SamplingParams(temperature=0.9, top_p=0.9, top_k=50, seed=1234, max_tokens=24)
    question = [Message.user("Name a fruit.")]
    first, _ = answer(smollm2, question, sampling)
    smollm2.reset()
    second, _ = answer(smollm2, question, sampling)
    assert first.text == second.text
