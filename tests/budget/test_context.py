"""The context budget: exact counts, the oldest turns leave first, nothing fitting is trimmed."""

from __future__ import annotations

import pytest

from smolchat.budget.context import PredictedCounter, messages_to_send, plan_context
from smolchat.budget.detail import Detail
from smolchat.budget.images import ImageMarkers, image_cost, prepared_size
from smolchat.engine import Message
from smolchat.engine.gguf_info import inspect_projector

SYSTEM = Message.system("You are a careful assistant who describes pictures.")


def conversation(turns: int) -> list[Message]:
    history = [SYSTEM]
    for n in range(turns):
        history += [
            Message.user(f"Question number {n}: " + "tell me more " * 20),
            Message.assistant(f"Answer number {n}: " + "here is more " * 20),
        ]
    return history


def test_a_conversation_that_fits_is_sent_whole(tiny_engine, images):
    history = conversation(3)
    new = Message.user("And this one?", images=[images["photo"]])
    budget = plan_context(tiny_engine, history, new, n_ctx=4096, reply_tokens=256)

    assert budget.fits and budget.dropped == [] and budget.message() is None
    assert messages_to_send(history, new, budget) == [*history, new]
    exact = tiny_engine.count_prompt([*history, new]).positions
    assert budget.used == budget.needed == exact + 256
    assert [i.kind for i in budget.items] == ["system", "turn", "turn", "turn", "message", "reply"]
    assert budget.items[-2].images == 1


def test_the_oldest_turns_leave_first_and_the_system_prompt_stays(tiny_engine):
    history = conversation(6)
    new = Message.user("What did we say?")
    whole = plan_context(tiny_engine, history, new, n_ctx=100_000, reply_tokens=200)
    turn = whole.items[1].tokens
    # room for about three and a half turns: the three oldest must go
    n_ctx = whole.needed - 3 * turn + turn // 2

    budget = plan_context(tiny_engine, history, new, n_ctx=n_ctx, reply_tokens=200)

    assert budget.fits and budget.used <= n_ctx
    assert [i.label for i in budget.dropped] == ["Turn 1", "Turn 2", "Turn 3"]
    sent = messages_to_send(history, new, budget)
    assert sent[0] == SYSTEM and sent[1] == history[7] and sent[-1] == new
    assert budget.used == tiny_engine.count_prompt(sent).positions + 200
    assert "the 3 oldest turns" in budget.message() and "stay in the history" in budget.message()


def test_what_cannot_fit_at_all_is_said_with_the_remedies(tiny_engine, images):
    new = Message.user("Describe every detail.", images=[images["photo"]])
    budget = plan_context(tiny_engine, conversation(2), new, n_ctx=300, reply_tokens=512)

    assert not budget.fits
    assert all(i.dropped for i in budget.items if i.kind == "turn")
    assert "does not fit" in budget.message() and "image detail" in budget.message()


def test_image_tokens_in_the_breakdown_are_the_predicted_ones(tiny_engine, tiny_pair, images):
    projector = inspect_projector(tiny_pair[1])
    cost = image_cost(
        *prepared_size(images["photo"]), projector, Detail.FULL, ImageMarkers.from_tokenizer(tiny_engine.count_tokens)
    )
    new = Message.user("What is it?", images=[images["photo"]])
    budget = plan_context(tiny_engine, [], new, n_ctx=4096, reply_tokens=64, image_tokens={0: cost.tokens})
    message = budget.items[0]
    assert message.image_tokens == cost.tokens == 82  # 13 tiles of 4 tokens, 30 marker tokens
    assert message.tokens > message.image_tokens


@pytest.mark.parametrize("reply", [0, 1000])
def test_the_reply_reserve_is_counted(tiny_engine, reply):
    budget = plan_context(tiny_engine, [], Message.user("Hi"), n_ctx=4096, reply_tokens=reply)
    assert budget.items[-1].tokens == reply and budget.share("reply") == reply


def test_the_predicting_counter_counts_as_the_engine_lays_out(tiny_engine, tiny_pair, images):
    projector = inspect_projector(tiny_pair[1])
    markers = ImageMarkers.from_tokenizer(tiny_engine.count_tokens)
    counter = PredictedCounter(
        tiny_engine.template.render,
        tiny_engine.count_tokens,
        lambda width, height: image_cost(width, height, projector, Detail.FULL, markers),
    )
    history = conversation(2) + [
        Message.user("And these?", images=[images["photo"], images["second"]]),
        Message.assistant("Two pictures."),
    ]
    new = Message.user("One more", images=[images["small"]])
    for messages in (history + [new], [new], history):
        assert counter.count_prompt(messages) == tiny_engine.count_prompt(messages)
    assert plan_context(counter, history, new, n_ctx=300, reply_tokens=64) == plan_context(
        tiny_engine, history, new, n_ctx=300, reply_tokens=64
    )
