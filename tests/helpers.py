"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess

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


def smolchat_here(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``smolchat ARGS`` run in this process, as ``subprocess.run`` would report it: for commands
    whose start-up is not what is tested (a new Python and llama.cpp's load take seconds)."""
    from smolchat import cli

    out, err = io.StringIO(), io.StringIO()
    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.run(cli.parse(list(args)))
            except SystemExit as e:  # argparse's errors and help
                code = e.code if isinstance(e.code, int) else 1
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return subprocess.CompletedProcess(["smolchat", *args], code, out.getvalue(), err.getvalue())
