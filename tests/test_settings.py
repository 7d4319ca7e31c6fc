"""Settings come back as they were saved, and a damaged file never stops the app."""

from __future__ import annotations

from smolchat import settings
from smolchat.settings import ModelSettings, Settings


def test_settings_round_trip_per_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOLCHAT_HOME", str(tmp_path))
    chosen = Settings("repo:Q8_0", "Z2VvbWV0cnk=").with_model_settings(
        "repo:Q8_0", ModelSettings(n_ctx=8192, detail="full", system_prompt="Be brief.")
    )
    settings.save(chosen)
    assert settings.load() == chosen
    assert [p.name for p in settings.settings_file().parent.iterdir()] == ["settings.json"]  # nothing left over
    assert settings.load().for_model("another") == ModelSettings()


def test_a_damaged_or_older_file_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOLCHAT_HOME", str(tmp_path))
    settings.settings_file().parent.mkdir(parents=True)
    settings.settings_file().write_text("{not json")
    assert settings.load() == Settings()
    settings.settings_file().write_text('{"model": "m", "models": {"m": {"n_ctx": 2048, "removed_option": 1}}}')
    assert settings.load().for_model("m") == ModelSettings(n_ctx=2048)


def test_what_needs_a_reload():
    base = ModelSettings()
    assert base.needs_reload(ModelSettings(n_ctx=8192)) and base.needs_reload(ModelSettings(detail="low"))
    assert not base.needs_reload(ModelSettings(temperature=0.8, system_prompt="Hi"))
