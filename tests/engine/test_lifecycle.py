"""Loading and unloading: native logs go to Python logging, nothing leaks."""

from __future__ import annotations

import logging
from pathlib import Path

from smolchat.engine import EngineSettings, Message
from smolchat.engine.engine import Engine
from tests.helpers import answer


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_native_logs_go_to_python_logging_not_stderr(tiny_pair, images, capfd, caplog):
    caplog.set_level(logging.DEBUG, logger="smolchat.llama")
    with Engine(*tiny_pair) as engine:
        answer(engine, [Message.user("What is it?", images=[images["photo"]])])
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    native = [r.getMessage() for r in caplog.records if r.name == "smolchat.llama"]
    assert any("clip" in line or "mtmd" in line for line in native)  # libmtmd's own lines
    assert any("llama_context" in line for line in native)  # llama.cpp's


def test_unload_and_reload_do_not_leak(smollm2_path):
    def cycle():
        with Engine(smollm2_path, settings=EngineSettings(n_ctx=1024)) as engine:
            answer(engine, [Message.user("Hi")])

    cycle()
    before = _rss_mb()
    for _ in range(8):
        cycle()
    growth = _rss_mb() - before
    # one leaked copy of the weights alone would be about 100 MB
    assert growth < 40, f"RSS grew by {growth:.0f} MB over 8 load/unload cycles"
