"""Where SmolChat keeps its files, and how each folder can be moved."""

from __future__ import annotations

from smolchat import paths


def test_one_folder_moves_on_its_own_and_the_others_follow_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOLCHAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SMOLCHAT_CACHE_DIR", str(tmp_path / "shared-cache"))
    assert paths.cache_dir() == tmp_path / "shared-cache"
    assert paths.data_dir() == tmp_path / "home" / "data"
    assert paths.config_dir() == tmp_path / "home" / "config"
    monkeypatch.setenv("SMOLCHAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SMOLCHAT_CONFIG_DIR", str(tmp_path / "settings"))
    assert paths.data_dir() == tmp_path / "data" and paths.config_dir() == tmp_path / "settings"
