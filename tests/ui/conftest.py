"""The window on the tiny fixture pair, in a SmolChat home of its own per test."""

from __future__ import annotations

import pytest

from smolchat import paths
from smolchat.models.library import InstalledModel


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Data and settings of this test's own; the test run's measurements shared (they take 15 s)."""
    shared_cache = paths.cache_dir()
    shared_cache.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    home.mkdir()
    (home / "cache").symlink_to(shared_cache)
    monkeypatch.setenv("SMOLCHAT_HOME", str(home))
    return home


@pytest.fixture
def tiny_model(tiny_pair) -> InstalledModel:
    text, mmproj = tiny_pair
    return InstalledModel("tiny", text, mmproj, None, text.stat().st_size + mmproj.stat().st_size)


@pytest.fixture
def app(qtbot, home, tiny_model):
    from smolchat.ui.app import App

    application = App()
    qtbot.addWidget(application.window)
    application.window.show()
    application.chat.start()
    with qtbot.waitSignal(application.chat.model_ready, timeout=60_000):
        application.chat.load_model(tiny_model)
    yield application
    application.close()
