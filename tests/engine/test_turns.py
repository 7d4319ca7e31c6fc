"""Turns on the tiny SmolVLM-shaped pair: images, streaming, and reuse of the KV cache."""

from __future__ import annotations

import pytest

from smolchat.engine import ContextOverflowError, EngineError, EngineSettings, Message, SamplingParams
from smolchat.engine.engine import Engine
from tests.helpers import GREEDY, answer

# The tiny mmproj: 32 px tiles of 4 tokens; images are first scaled so their longest side is
# 128 px, then cut into a grid of up to 4x4 tiles, plus one overview tile.
TOKENS_PER_TILE = 4
TILES_1024x768 = 4 * 3 + 1
TILES_300x500 = 3 * 4 + 1  # 300x500 becomes 77x128: 3 columns, 4 rows


def test_one_image_turn(tiny_engine, images):
    result, deltas = answer(tiny_engine, [Message.user("What is in this picture?", images=[images["photo"]])])
    stats = result.stats
    assert stats.image_tiles_encoded == TILES_1024x768
    assert stats.image_tokens == TILES_1024x768 * TOKENS_PER_TILE
    assert stats.prompt_tokens > stats.image_tokens
    assert stats.reused_tokens == 0 and stats.evaluated_tokens == stats.prompt_tokens
    assert stats.generated_tokens == GREEDY.max_tokens and stats.finish_reason == "length"
    assert "".join(deltas) == result.text
    assert stats.ttft_s is not None and 0 < stats.ttft_s <= stats.e2e_s
    assert stats.decode_tok_s and stats.decode_tok_s > 0


def test_two_image_turn(tiny_engine, images):
    message = Message.user("Compare the two pictures.", images=[images["photo"], images["second"]])
    result, _ = answer(tiny_engine, [message])
    assert result.stats.image_tiles_encoded == TILES_1024x768 + TILES_300x500
    assert result.stats.image_tokens == (TILES_1024x768 + TILES_300x500) * TOKENS_PER_TILE


def test_follow_up_reuses_the_image(tiny_pair, images):
    first = [Message.user("What is in this picture?", images=[images["photo"]])]
    with Engine(*tiny_pair) as engine:
        turn1, _ = answer(engine, first)
        conversation = first + [Message.assistant(turn1.text), Message.user("What colours stand out?")]
        turn2, _ = answer(engine, conversation)
    assert turn2.stats.image_tiles_encoded == 0  # the vision encoder did not run again
    assert turn2.stats.reused_tokens >= turn1.stats.prompt_tokens
    assert turn2.stats.evaluated_tokens == turn2.stats.prompt_tokens - turn2.stats.reused_tokens
    assert turn2.stats.image_tokens == turn1.stats.image_tokens
    # reusing the cache changes nothing in the answer
    with Engine(*tiny_pair) as fresh:
        reference, _ = answer(fresh, conversation)
    assert reference.stats.image_tiles_encoded == TILES_1024x768
    assert turn2.text == reference.text


def test_editing_an_earlier_message(tiny_pair, images):
    photo = images["photo"]
    conversation = [Message.user("What is in this picture?", images=[photo])]
    with Engine(*tiny_pair) as engine:
        turn1, _ = answer(engine, conversation)
        conversation += [Message.assistant(turn1.text), Message.user("Tell me more.")]
        answer(engine, conversation)
        # the first question is rewritten: the image before it is still reusable
        edited = [Message.user("Describe this photo.", images=[photo])] + conversation[1:]
        after_edit, _ = answer(engine, edited)
        # the first image is replaced: everything from it on is evaluated again
        replaced = [Message.user("Describe this photo.", images=[images["second"]])] + conversation[1:]
        after_replace, _ = answer(engine, replaced)
    assert after_edit.stats.image_tiles_encoded == 0
    assert turn1.stats.image_tokens < after_edit.stats.reused_tokens < turn1.stats.prompt_tokens
    assert after_replace.stats.image_tiles_encoded == TILES_300x500
    assert after_replace.stats.reused_tokens < 10  # only the opening of the template
    with Engine(*tiny_pair) as fresh:
        assert answer(fresh, edited)[0].text == after_edit.text
    with Engine(*tiny_pair) as fresh:
        assert answer(fresh, replaced)[0].text == after_replace.text


def test_switching_conversations(tiny_pair, images):
    a = [Message.user("What is in this picture?", images=[images["photo"]])]
    b = [Message.user("And this one?", images=[images["second"]])]
    with Engine(*tiny_pair) as engine:
        answer(engine, a)
        in_b, _ = answer(engine, b)
        back_in_a, _ = answer(engine, a)
    assert in_b.stats.image_tiles_encoded == TILES_300x500
    assert back_in_a.stats.image_tiles_encoded == 0  # a's cache was kept aside while b ran
    with Engine(*tiny_pair, EngineSettings(kept_conversations_mb=0)) as engine:  # nothing kept: read again
        answer(engine, a)
        answer(engine, b)
        assert answer(engine, a)[0].stats.image_tiles_encoded == TILES_1024x768
    with Engine(*tiny_pair) as fresh:
        assert answer(fresh, b)[0].text == in_b.text


def test_regenerating_the_same_prompt_reuses_it_all(tiny_engine, images):
    conversation = [Message.user("What is in this picture?", images=[images["photo"]])]
    first, _ = answer(tiny_engine, conversation)
    again, _ = answer(tiny_engine, conversation)
    assert again.stats.image_tiles_encoded == 0
    assert again.stats.evaluated_tokens == 1  # the last prompt token, for fresh logits
    assert again.text == first.text


def test_prefill_encodes_the_image_before_the_question_is_written(tiny_pair, images):
    with Engine(*tiny_pair) as engine:
        draft = [Message.user("", images=[images["photo"]])]
        prefill = engine.prefill(draft)
        assert prefill.image_tiles_encoded == TILES_1024x768 and not prefill.cancelled
        sent = [Message.user("What is in this picture?", images=[images["photo"]])]
        result, _ = answer(engine, sent)
    assert result.stats.image_tiles_encoded == 0
    assert result.stats.reused_tokens == prefill.prompt_tokens
    # only the question's text is left: one token per byte with this tokenizer, plus the
    # template's closing tokens
    assert result.stats.evaluated_tokens <= len("What is in this picture?") + 16
    with Engine(*tiny_pair) as fresh:
        assert answer(fresh, sent)[0].text == result.text


def test_prefill_of_a_follow_up_keeps_the_history(tiny_pair, images):
    first = [Message.user("What is in this picture?", images=[images["photo"]])]
    with Engine(*tiny_pair) as engine:
        turn1, _ = answer(engine, first)
        history = first + [Message.assistant(turn1.text)]
        with Engine(*tiny_pair) as other:  # the cache holds another conversation
            prefill = other.prefill(history + [Message.user("", images=[images["second"]])])
            assert prefill.image_tiles_encoded == TILES_1024x768 + TILES_300x500
            result, _ = answer(other, history + [Message.user("And now?", images=[images["second"]])])
            assert result.stats.image_tiles_encoded == 0


def test_images_need_a_projector(tiny_pair, images):
    text, _ = tiny_pair
    with Engine(text) as engine:
        assert not engine.has_vision
        with pytest.raises(EngineError, match="without a vision projector"):
            answer(engine, [Message.user("What is this?", images=[images["small"]])])
        result, _ = answer(engine, [Message.user("Hello")])  # text still works
        assert result.stats.generated_tokens == GREEDY.max_tokens


def test_conversation_too_long_for_the_context(tiny_pair, images):
    with Engine(*tiny_pair, EngineSettings(n_ctx=100)) as engine:
        with pytest.raises(ContextOverflowError, match="needs .* tokens but the context holds 100"):
            answer(engine, [Message.user("What is in this picture?", images=[images["photo"]])])
        result, _ = answer(engine, [Message.user("Hi")])  # still usable
        assert result.stats.finish_reason in ("length", "context")


def test_generation_stops_when_the_context_is_full(tiny_pair):
    with Engine(*tiny_pair, EngineSettings(n_ctx=64)) as engine:
        result, _ = answer(engine, [Message.user("Hi")], SamplingParams(max_tokens=500, ignore_eos=True))
    assert result.stats.finish_reason == "context"
    assert result.stats.prompt_tokens + result.stats.generated_tokens <= 65


def test_closed_engine_says_so(tiny_pair):
    engine = Engine(*tiny_pair)
    engine.close()
    with pytest.raises(EngineError, match="unloaded"):
        answer(engine, [Message.user("Hi")])


def test_settings_reach_llama_cpp(tiny_pair, images):
    import llama_cpp

    settings = EngineSettings(n_ctx=1024, n_threads=1, n_threads_batch=2, image_max_tokens=8)
    with Engine(*tiny_pair, settings) as engine:
        ctx = engine._text_model.ctx
        assert llama_cpp.llama_n_ctx(ctx) == 1024
        assert (llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx)) == (1, 2)
        capped, _ = answer(engine, [Message.user("What is it?", images=[images["photo"]])])
    # a cap of 8 tokens gives libmtmd's smallest layout for this image: 2 tiles
    assert capped.stats.image_tiles_encoded == 2
    assert capped.stats.image_tokens == 8
