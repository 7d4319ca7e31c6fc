"""Conversations that take turns: each one's KV cache is kept aside while another runs, so
coming back to it reads none of its images again."""

from __future__ import annotations

import pytest

from smolchat.engine import EngineSettings, Message
from smolchat.engine.engine import Engine
from smolchat.engine.kept import KeptConversations, KeptState
from tests.helpers import GREEDY, answer


def conversation(picture, question: str) -> list[Message]:
    return [Message.user(question, images=[picture])]


def follow_up(messages, result, question: str) -> list[Message]:
    return [*messages, Message("assistant", (result.text,)), Message.user(question)]


@pytest.fixture
def engine(tiny_pair):
    with Engine(*tiny_pair, EngineSettings(n_ctx=4096)) as engine:
        yield engine


def test_two_clients_taking_turns_never_reread_their_images(engine, images):
    a = conversation(images["photo"], "What is this?")
    b = conversation(images["second"], "And this?")
    first_a, _ = answer(engine, a)
    first_b, _ = answer(engine, b)
    assert first_a.stats.image_tiles_encoded > 1 and first_b.stats.image_tiles_encoded > 0
    for _ in range(2):  # back and forth
        again_a, _ = answer(engine, follow_up(a, first_a, "More?"))
        assert again_a.stats.image_tiles_encoded == 0
        assert again_a.stats.reused_tokens >= 0.9 * first_a.stats.prompt_tokens
        again_b, _ = answer(engine, follow_up(b, first_b, "More?"))
        assert again_b.stats.image_tiles_encoded == 0
        assert again_b.stats.reused_tokens >= 0.9 * first_b.stats.prompt_tokens


def test_reading_ahead_in_a_conversation_brings_it_back_too(engine, images):
    a = conversation(images["photo"], "What is this?")
    first_a, _ = answer(engine, a)
    answer(engine, conversation(images["second"], "Other."))
    typed = engine.prefill([*a, Message("assistant", (first_a.text,)), Message.user("Still typ")])
    assert typed.image_tiles_encoded == 0 and typed.reused_tokens >= 0.9 * first_a.stats.prompt_tokens


def test_with_no_memory_for_it_nothing_is_kept(tiny_pair, images):
    with Engine(*tiny_pair, EngineSettings(n_ctx=4096, kept_conversations_mb=0)) as engine:
        a = conversation(images["photo"], "What is this?")
        first_a, _ = answer(engine, a)
        answer(engine, conversation(images["second"], "Other."))
        again, _ = answer(engine, follow_up(a, first_a, "More?"))
    assert again.stats.image_tiles_encoded == first_a.stats.image_tiles_encoded


def test_editing_the_last_message_keeps_nothing_aside(engine):
    first, _ = answer(engine, [Message.user("Hello there")])
    answer(engine, [Message.user("Hello here")])
    assert len(engine._kept) == 0  # a few tokens lost: not worth a copy of the cache
    assert first.stats.generated_tokens == GREEDY.max_tokens


def test_least_recently_used_go_first_within_the_budget():
    kept = KeptConversations(budget_bytes=250)
    for name in "abc":
        kept.keep(KeptState((ord(name), 1, 2), 3, b"x" * 100))
    assert kept.used_bytes == 200 and kept.closest([ord("a"), 1, 2]) == (None, 0)  # a went
    key, shared = kept.closest([ord("c"), 1, 9])
    assert shared == 2 and kept.take(key).units[0] == ord("c")
    kept.keep(KeptState((ord("b"), 1, 2, 5), 4, b"y" * 100))  # b, longer: the shorter b is pointless now
    assert len(kept) == 1
    kept.keep(KeptState((7,), 1, b"z" * 300))  # larger than the budget: not kept
    assert len(kept) == 1


def test_a_restored_conversation_answers_as_if_it_had_never_left(tiny_pair, images):
    """The same cache bits, so the same answer, on any CPU (both runs on this one)."""
    a = conversation(images["photo"], "What is this?")
    with Engine(*tiny_pair, EngineSettings(n_ctx=4096)) as stayed:
        first, _ = answer(stayed, a)
        never_left, _ = answer(stayed, follow_up(a, first, "More?"))
    with Engine(*tiny_pair, EngineSettings(n_ctx=4096)) as moved:
        answer(moved, a)
        answer(moved, conversation(images["second"], "Other."))
        came_back, _ = answer(moved, follow_up(a, first, "More?"))
    assert came_back.stats.image_tiles_encoded == 0
    assert came_back.text == never_left.text
