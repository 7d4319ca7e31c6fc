"""The model picker's background jobs: listings the user moves away from, closing during a listing,
and failures nobody foresaw, all against the fake Hub."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from huggingface_hub import constants
from PySide6.QtCore import Qt

from smolchat.models.catalog import CATALOG
from smolchat.models.hub import Hub, RepoListing
from smolchat.ui.workers.jobs import Job
from tests.fake_hub_fixtures import BIG_REPO, REPO

# Tests that could end the whole process (Qt aborts when a QThread object is destroyed while its
# thread runs) run in a pytest process of their own, started by the test at the end of this file,
# so that such an abort fails that test instead of ending the test run.
IN_OWN_PROCESS = os.environ.get("SMOLCHAT_PICKER_OWN_PROCESS") == "1"
in_own_process = pytest.mark.skipif(not IN_OWN_PROCESS, reason="run in a process of its own by "
                                    "test_listings_the_user_moves_away_from_never_end_the_process")


class HeldHub(Hub):
    """A Hub that answers a listing only when the test lets it go, in any order, as a slow Hub might."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[str] = []
        self.waiting = 0  # listings held right now
        self._gates: list[threading.Event] = []
        self._lock = threading.Lock()

    def list_repo(self, repo: str) -> RepoListing:
        gate = threading.Event()
        with self._lock:
            self.asked.append(repo)
            self._gates.append(gate)
            self.waiting += 1
        gate.wait(timeout=60)  # a test that never lets go still ends
        with self._lock:
            self.waiting -= 1
        return super().list_repo(repo)

    def let_go(self, *which: int) -> None:
        with self._lock:
            for i in which or range(len(self._gates)):
                self._gates[i].set()


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


@pytest.fixture
def held_hub(first_run, fake_hub, hf_cache) -> HeldHub:
    hub = first_run.models.hub = HeldHub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)
    yield hub
    hub.let_go()


def _all_jobs_reported(qtbot) -> None:
    qtbot.waitUntil(lambda: not Job.unfinished, timeout=30_000)


def _file_rows(picker) -> list[str]:
    return [picker.files.item(r, 0).text() for r in range(picker.files.rowCount())]


@in_own_process
def test_switching_repos_while_listings_load_shows_the_repo_chosen_last(qtbot, first_run, held_hub):
    app = first_run
    app.start()  # nothing installed: the picker opens on the default model and lists it
    picker = app.models.picker
    for key in (Qt.Key.Key_Down, Qt.Key.Key_Down, Qt.Key.Key_Up):
        qtbot.keyClick(picker.catalog, key)
    first = picker.catalog.item(0)
    qtbot.mouseClick(picker.catalog.viewport(), Qt.MouseButton.LeftButton,
                     pos=picker.catalog.visualItemRect(first).center())
    qtbot.waitUntil(lambda: len(held_hub.asked) == 5, timeout=10_000)
    assert held_hub.asked == [REPO, CATALOG[1].repo, CATALOG[2].repo, CATALOG[1].repo, REPO]

    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        held_hub.let_go(4)  # the last one asked answers first
    held_hub.let_go()  # then those the user moved away from: not found, or the same repo again
    _all_jobs_reported(qtbot)

    assert app.models.listing.repo == REPO
    assert REPO in picker.title.text()
    assert _file_rows(picker) == ["★ SmolVLM-256M-Instruct-Q8_0.gguf", "SmolVLM-256M-Instruct-f16.gguf"]
    assert picker.download_button.isEnabled()


@in_own_process
def test_reopening_the_picker_during_a_listing_shows_only_the_newest(qtbot, first_run, held_hub):
    app = first_run
    app.start()
    app.models.open(BIG_REPO)  # another repo while the first listing is still on its way
    app.window.model_picker_requested.emit()  # and the menu's Models… again: the default repo
    qtbot.waitUntil(lambda: len(held_hub.asked) == 3, timeout=10_000)
    assert held_hub.asked == [REPO, BIG_REPO, REPO]

    held_hub.let_go(1)  # the superseded listing of BIG_REPO arrives: nothing of it is shown
    qtbot.waitUntil(lambda: len(Job.unfinished) == 2, timeout=30_000)
    assert app.models.listing is None and "Listing" in app.models.picker.title.text()
    assert app.models.picker.files.rowCount() == 0

    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        held_hub.let_go()
    _all_jobs_reported(qtbot)
    assert app.models.listing.repo == REPO
    assert _file_rows(app.models.picker)[0] == "★ SmolVLM-256M-Instruct-Q8_0.gguf"


@in_own_process
def test_closing_the_app_during_a_listing_does_not_wait_for_the_hub(qtbot, first_run, held_hub):
    app = first_run
    app.start()  # the picker opens and lists the default model
    qtbot.waitUntil(lambda: held_hub.waiting == 1, timeout=10_000)

    app.window.close()  # App.close

    assert held_hub.waiting == 1  # the window closed while the listing still waited for the Hub
    held_hub.let_go()
    _all_jobs_reported(qtbot)  # its result went nowhere, and the process lives on


def test_listings_the_user_moves_away_from_never_end_the_process():
    tests = [f"{__file__}::{name}" for name in (
        "test_switching_repos_while_listings_load_shows_the_repo_chosen_last",
        "test_reopening_the_picker_during_a_listing_shows_only_the_newest",
        "test_closing_the_app_during_a_listing_does_not_wait_for_the_hub",
    )]
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                           env={**os.environ, "SMOLCHAT_PICKER_OWN_PROCESS": "1"}, cwd=Path(__file__).parents[2],
                           capture_output=True, text=True, timeout=280)
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
def test_a_listing_that_fails_unexpectedly_says_so_and_the_next_one_works(qtbot, first_run, fake_hub, hf_cache,
                                                                          error):
    app = first_run
    app.models.hub = BrokenHub(error, endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        app.start()
    notice = app.models.picker.notice.text()
    assert notice.startswith(f"Listing {REPO} failed unexpectedly ({type(error).__name__}: {error}).")
    assert not app.models.picker.download_button.isEnabled()

    app.models.hub = Hub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        app.models.show_repo(REPO)
    assert app.models.listing.repo == REPO and app.models.picker.download_button.isEnabled()


def test_a_download_that_fails_unexpectedly_says_so_and_the_next_one_works(qtbot, first_run, fake_hub, hf_cache,
                                                                           tmp_path):
    app = first_run
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("a file where the cache's parent folder should be")
    app.models.hub = Hub(endpoint=fake_hub.url, cache_dir=not_a_folder / "hf-cache", offline=False)
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        app.start()
    picker = app.models.picker

    qtbot.mouseClick(picker.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: app.models.download is None, timeout=30_000)
    assert picker.notice.text().startswith(
        f"Downloading SmolVLM-256M-Instruct-Q8_0.gguf from {REPO} failed unexpectedly (NotADirectoryError: ")
    assert picker.progress.isHidden() and picker.cancel_button.isHidden()
    assert picker.download_button.isEnabled()

    app.models.hub.cache_dir = hf_cache  # the cache is where it should be again: the same button works
    with qtbot.waitSignal(app.models.installed_changed, timeout=60_000):
        qtbot.mouseClick(picker.download_button, Qt.MouseButton.LeftButton)
    assert picker.notice.text() == f"Installed {REPO}:Q8_0."
    assert app.models.download is None
