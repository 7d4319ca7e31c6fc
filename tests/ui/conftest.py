"""The window on the tiny fixture pair, in a SmolChat home of its own per test."""

from __future__ import annotations

import pytest
from huggingface_hub import constants

from smolchat import paths
from smolchat.models.library import InstalledModel


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Data and settings of this test's own; the test run's measurements shared (they take 15 s)."""
    shared_cache = paths.cache_dir()
    shared_cache.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SMOLCHAT_HOME", str(home))
    monkeypatch.setenv("SMOLCHAT_CACHE_DIR", str(shared_cache))
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
    application.conversations.start()
    # the first load of a test run measures this computer's vision speed: slow on a busy machine
    with qtbot.waitSignal(application.turns.model_ready, timeout=180_000):
        application.turns.load_model(tiny_model)
    yield application
    application.close()


@pytest.fixture
def first_run(qtbot, home, fake_hub, hf_cache, monkeypatch):
    """The app with nothing installed, its Hub the fake one."""
    monkeypatch.setattr(constants, "ENDPOINT", fake_hub.url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    from smolchat.ui.app import App

    app = App()
    qtbot.addWidget(app.window)
    yield app
    app.close()
