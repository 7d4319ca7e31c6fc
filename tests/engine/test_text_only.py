"""A real small model (SmolLM2-135M-Instruct) in text-only mode: answers that end by themselves.

Its greedy words differ between CPUs (llama.cpp's kernels round differently: AVX2 and AVX-512
give different answers to the same question), so these tests check what holds on every CPU:
an answer in words that ends by itself, a system prompt that reaches the prompt, a follow-up
that reuses what is cached. The suite also runs them under llama.cpp's AVX2 CPU library
(tests/packaging).
"""

from __future__ import annotations

import re

import pytest

from smolchat.engine import EngineSettings, Message, SamplingParams
from smolchat.engine.engine import Engine
from tests.helpers import answer

# Room enough for a short answer to end by itself on any CPU.
GREEDY_UNTIL_DONE = SamplingParams(temperature=0.0, max_tokens=200)
QUESTION = Message.user("What is the capital of France?")


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    with Engine(smollm2_path, settings=EngineSettings(n_ctx=2048)) as engine:
        yield engine


def words(text: str) -> list[str]:
    return re.findall(r"[^\W\d_]{2,}", text)


def test_a_real_answer(smollm2):
    result, deltas = answer(smollm2, [QUESTION], GREEDY_UNTIL_DONE)
    assert result.stats.finish_reason == "stop"  # the model ended its answer itself
    assert len(words(result.text)) >= 2 and "\ufffd" not in result.text
    assert len(deltas) > 1 and "".join(deltas) == result.text
    assert result.stats.image_tokens == 0


def test_follow_up_question(smollm2):
    conversation = [QUESTION]
    first, _ = answer(smollm2, conversation, GREEDY_UNTIL_DONE)
    conversation += [Message.assistant(first.text), Message.user("And the capital of Germany?")]
    second, _ = answer(smollm2, conversation, GREEDY_UNTIL_DONE)
    # the first question (and its answer, as far as it reads back the same) comes from the cache
    assert second.stats.reused_tokens >= first.stats.prompt_tokens
    assert second.stats.finish_reason == "stop" and words(second.text)


def test_system_prompt(smollm2):
    teacher = "You are a geography teacher."
    longer = "You are a geography teacher who answers every question in one short sentence."
    with_teacher = [Message.system(teacher), QUESTION]
    result, _ = answer(smollm2, with_teacher, GREEDY_UNTIL_DONE)
    assert result.stats.finish_reason == "stop" and words(result.text)
    # The system prompt reached the model: the prompt grows by exactly its tokens when it does.
    assert result.stats.prompt_tokens == smollm2.count_prompt(with_teacher).positions
    with_longer = smollm2.count_prompt([Message.system(longer), QUESTION]).positions
    assert with_longer - result.stats.prompt_tokens == smollm2.count_tokens(longer) - smollm2.count_tokens(teacher)


def test_stop_strings_end_the_answer_before_them(smollm2):
    question = [Message.user("Count from 1 to 10, separated by commas.")]
    smollm2.reset()
    whole, _ = answer(smollm2, question, GREEDY_UNTIL_DONE)
    pieces = whole.text.split()
    assert len(pieces) >= 3
    stop = pieces[len(pieces) // 2]  # whatever this CPU's answer has in its middle
    smollm2.reset()
    result, deltas = answer(smollm2, question, SamplingParams(temperature=0.0, max_tokens=200, stop=(stop,)))
    assert result.stats.finish_reason == "stop"
    assert result.text == whole.text[: whole.text.index(stop)]
    assert "".join(deltas) == result.text


def test_sampling_with_a_seed_is_repeatable(smollm2):
    sampling = SamplingParams(temperature=0.9, top_p=0.9, top_k=50, seed=1234, max_tokens=24)
    question = [Message.user("Name a fruit.")]
    first, _ = answer(smollm2, question, sampling)
    smollm2.reset()
    second, _ = answer(smollm2, question, sampling)
    assert first.text == second.text
