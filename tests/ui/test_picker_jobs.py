"""The model picker's background jobs: listings the user moves away from, closing during a listing,
and failures nobody foresaw, all against the fake Hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from smolchat.models.hub import Hub, RepoListing
from tests.fake_hub_fixtures import REPO


def test_listings_the_user_moves_away_from_never_end_the_process():
    scenarios = Path(__file__).with_name("picker_listing_scenarios.py")
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(scenarios)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=280,
    )
    output = child.stdout[-4000:] + child.stderr[:4000]  # an abort's stack comes first on stderr
    assert child.returncode == 0, f"exit status {child.returncode}:\n{output}"
    assert "3 passed" in child.stdout, output


class BrokenHub(Hub):
    """A Hub whose answer SmolChat's own code does not expect."""

    def __init__(self, error: Exception, **kwargs) -> None:
        super().__init__(**kwargs)
        self.error = error

    def list_repo(self, repo: str) -> RepoListing:
        raise self.error


@pytest.mark.parametrize("error", [ValueError("Expecting value: line 1 column 1 (char 0)"), KeyError("size")])
def test_a_listing_that_fails_unexpectedly_says_so_and_the_next_one_works(qtbot, first_run, fake_hub, hf_cache, error):
    app = first_run
    app.models.hub = BrokenHub(error, endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)
    with qtbot.waitSignal(app.models.default_shown, timeout=30_000):
        app.start()
    assert f"Listing {REPO} failed unexpectedly" in app.window.first_run.model_facts.text()
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        app.models.open()
    notice = app.models.picker.notice.text()
    assert notice.startswith(f"Listing {REPO} failed unexpectedly ({type(error).__name__}: {error}).")
    assert not app.models.picker.download_button.isEnabled()

    app.models.hub = Hub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        app.models.show_repo(REPO)
    assert app.models.listing.repo == REPO and app.models.picker.download_button.isEnabled()


class UnexpectedDownloadHub(Hub):
    """A Hub whose file addresses break in a way SmolChat's own code does not expect."""

    def file_url(self, repo: str, path: str, revision: str = "main") -> str:
        raise KeyError(path)


@pytest.mark.parametrize("broken", ["a file instead of the cache folder", "an error nobody foresaw"])
def test_a_download_that_fails_says_so_and_the_next_one_works(qtbot, first_run, fake_hub, hf_cache, tmp_path, broken):
    app = first_run
    if broken == "an error nobody foresaw":
        app.models.hub = UnexpectedDownloadHub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)
        expected = f"Downloading SmolVLM-256M-Instruct-Q8_0.gguf from {REPO} failed unexpectedly (KeyError: "
    else:
        not_a_folder = tmp_path / "not-a-folder"
        not_a_folder.write_text("a file where the cache's parent folder should be")
        app.models.hub = Hub(endpoint=fake_hub.url, cache_dir=not_a_folder / "hf-cache", offline=False)
        expected = f"SmolChat cannot write to the model folder {not_a_folder / 'hf-cache'}"
    app.start()
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        picker = app.models.open()

    qtbot.mouseClick(picker.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: app.models.download is None, timeout=30_000)
    assert picker.notice.text().startswith(expected), picker.notice.text()
    assert picker.progress.isHidden() and picker.cancel_button.isHidden()
    assert picker.download_button.isEnabled()

    app.models.hub = Hub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)  # all well again
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        app.models.show_repo(REPO)
    with qtbot.waitSignal(app.models.installed_changed, timeout=60_000):
        qtbot.mouseClick(picker.download_button, Qt.MouseButton.LeftButton)
    assert picker.notice.text() == f"Installed {REPO}:Q8_0."
    assert app.models.download is None
