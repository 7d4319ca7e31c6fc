"""Small helpers shared by the tests."""

from __future__ import annotations

from smolchat.engine import SamplingParams, TextDelta, TurnResult
from smolchat.engine.engine import Engine

GREEDY = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True, repeat_penalty=1.0)


def answer(engine: Engine, messages, sampling: SamplingParams = GREEDY, **kwargs) -> tuple[TurnResult, list[str]]:
    """Run one turn; return the final result and the streamed pieces."""
    deltas, result = [], None
    for event in engine.run_turn(messages, sampling, **kwargs):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            assert isinstance(event, TurnResult)
            result = event
    assert result is not None
    return result, deltas
