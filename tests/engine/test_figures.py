"""A turn's figures read the same under an answer, in an export and after `smolchat ask`."""

from __future__ import annotations

from smolchat.engine.figures import describe_stats

TURN = dict(
    ttft_s=0.412,
    tpot_s=0.026,
    e2e_s=1.93,
    decode_tok_s=38.24,
    prompt_tokens=180,
    image_tokens=52,
    reused_tokens=20,
    evaluated_tokens=160,
    generated_tokens=40,
    image_tiles_encoded=5,
    encode_s=0.6,
    finish_reason="stop",
)


def test_the_brief_figures_are_first_token_speed_time_and_tiles():
    assert describe_stats(TURN) == "first token 0.41 s · 38.2 tok/s · 1.9 s in all · 5 tiles read"
    text_only = {**TURN, "image_tiles_encoded": 0, "decode_tok_s": None}
    assert describe_stats(text_only) == "first token 0.41 s · 1.9 s in all"


def test_a_turn_stopped_before_its_first_token_has_no_brief_figures():
    assert describe_stats({**TURN, "ttft_s": None, "finish_reason": "cancelled"}) == ""


def test_the_full_figures_tell_the_prompt_and_how_the_tiles_were_read():
    assert describe_stats(TURN, brief=False, vision="llama.cpp F16, 2 threads") == (
        "first token 0.41 s · 38.2 tok/s · 40 tokens in 1.93 s · prompt 180 tokens (52 image, 20 reused)"
        " · 5 tiles encoded in 0.60 s by llama.cpp F16, 2 threads · stop"
    )
    cancelled = {
        **TURN,
        "ttft_s": None,
        "decode_tok_s": None,
        "generated_tokens": 0,
        "image_tokens": 0,
        "reused_tokens": 0,
        "image_tiles_encoded": 0,
        "finish_reason": "cancelled",
    }
    assert describe_stats(cancelled, brief=False) == "0 tokens in 1.93 s · prompt 180 tokens · cancelled"
