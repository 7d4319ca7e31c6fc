"""The engine measures its own speed as it works and keeps it for the next run."""

from __future__ import annotations

from smolchat.engine import EngineSettings, Message
from smolchat.engine import speed as speed_module
from smolchat.engine.engine import Engine
from smolchat.engine.speed import Speed, SpeedLog
from tests.helpers import answer


def test_speed_is_measured_while_working_and_kept(tiny_pair, images, tmp_path, monkeypatch):
    monkeypatch.setattr(speed_module, "speeds_file", lambda: tmp_path / "speeds.json")  # nothing measured yet
    settings = EngineSettings(vision_backend="llama.cpp", vision_precision="F16")
    with Engine(*tiny_pair, settings) as engine:
        assert engine.speed.turns == 0
        result, _ = answer(engine, [Message.user("What is this?", images=[images["photo"]])])
        speed = engine.speed
    assert speed.turns == 1 and speed.tiles == result.stats.image_tiles_encoded
    assert speed.encode_s_per_tile == result.stats.encode_s / result.stats.image_tiles_encoded
    assert speed.prompt_s_per_token > 0 and speed.decode_tok_s > 0
    with Engine(*tiny_pair, settings) as engine:
        assert engine.speed == speed  # the next run starts from what was measured


def test_a_new_measurement_moves_the_figures_a_third_of_the_way(tmp_path):
    log = SpeedLog("model", tmp_path / "speeds.json")
    log.start_from(3.0)  # a first guess from the probe
    log.record(tiles=2, encode_s=2.0, evaluated=100, prompt_s=3.0, decode_tok_s=90.0)
    assert log.speed.encode_s_per_tile == 1.0  # the first real tiles replace the guess
    log.record(tiles=1, encode_s=4.0, evaluated=100, prompt_s=5.0, decode_tok_s=60.0)
    assert log.speed.encode_s_per_tile == 2.0 and log.speed.decode_tok_s == 80.0
    assert SpeedLog("model", tmp_path / "speeds.json").speed == log.speed
    assert SpeedLog("another model", tmp_path / "speeds.json").speed == Speed()


def test_wait_of_tiles_and_tokens():
    speed = Speed(encode_s_per_tile=0.6, prompt_s_per_token=0.002)
    assert speed.wait_s(13, 900) == 13 * 0.6 + 900 * 0.002
    assert Speed().wait_s(1, 10) is None and Speed().wait_s(0, 0) == 0.0
