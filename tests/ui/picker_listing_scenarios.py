"""Listings the user moves away from, and closing during a listing: scenarios that, before
jobs outlived their listings, ended the whole process (Qt aborts when a QThread object is
destroyed while its thread runs). `tests/ui/test_picker_jobs.py` runs this file in a pytest
process of its own, so such an abort fails a test instead of ending the test run.
"""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt

from smolchat.models.catalog import CATALOG
from smolchat.models.hub import Hub, RepoListing
from smolchat.ui.workers.jobs import Job
from tests.fake_hub_fixtures import BIG_REPO, REPO


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
def held_hub(first_run, fake_hub, hf_cache) -> HeldHub:
    hub = first_run.models.hub = HeldHub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)
    yield hub
    hub.let_go()


def _all_jobs_reported(qtbot) -> None:
    qtbot.waitUntil(lambda: not Job.unfinished, timeout=30_000)


def _file_rows(picker) -> list[str]:
    return [picker.files.item(r, 0).text() for r in range(picker.files.rowCount())]


def test_switching_repos_while_listings_load_shows_the_repo_chosen_last(qtbot, first_run, held_hub):
    app = first_run
    app.start()  # nothing installed: the welcome screen lists the default model
    qtbot.waitUntil(lambda: len(held_hub.asked) == 1, timeout=30_000)
    picker = app.models.open()  # and the picker too
    qtbot.waitUntil(lambda: len(held_hub.asked) == 2, timeout=30_000)
    for key in (Qt.Key.Key_Down, Qt.Key.Key_Down, Qt.Key.Key_Up):
        qtbot.keyClick(picker.catalog, key)
    first = picker.catalog.item(0)
    qtbot.mouseClick(
        picker.catalog.viewport(), Qt.MouseButton.LeftButton, pos=picker.catalog.visualItemRect(first).center()
    )
    qtbot.waitUntil(lambda: len(held_hub.asked) == 6, timeout=10_000)
    assert held_hub.asked == [REPO, REPO, CATALOG[1].repo, CATALOG[2].repo, CATALOG[1].repo, REPO]

    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        held_hub.let_go(5)  # the last one asked answers first
    held_hub.let_go()  # then those the user moved away from: not found, or the same repo again
    _all_jobs_reported(qtbot)

    assert app.models.listing.repo == REPO
    assert REPO in picker.title.text()
    assert _file_rows(picker) == ["★ SmolVLM-256M-Instruct-Q8_0.gguf", "SmolVLM-256M-Instruct-f16.gguf"]
    assert picker.download_button.isEnabled()


def test_reopening_the_picker_during_a_listing_shows_only_the_newest(qtbot, first_run, held_hub):
    app = first_run
    app.start()
    qtbot.waitUntil(lambda: len(held_hub.asked) == 1, timeout=30_000)  # the welcome screen's
    app.window.model_picker_requested.emit()  # the menu's Models…: the default repo
    app.models.open(BIG_REPO)  # another repo while the first listing is still on its way
    app.window.model_picker_requested.emit()  # and Models… again
    qtbot.waitUntil(lambda: len(held_hub.asked) == 4, timeout=10_000)
    assert held_hub.asked == [REPO, REPO, BIG_REPO, REPO]

    held_hub.let_go(2)  # the superseded listing of BIG_REPO arrives: nothing of it is shown
    qtbot.waitUntil(lambda: len(Job.unfinished) == 3, timeout=30_000)
    assert app.models.listing is None and "Listing" in app.models.picker.title.text()
    assert app.models.picker.files.rowCount() == 0

    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        held_hub.let_go()
    _all_jobs_reported(qtbot)
    assert app.models.listing.repo == REPO
    assert _file_rows(app.models.picker)[0] == "★ SmolVLM-256M-Instruct-Q8_0.gguf"


def test_closing_the_app_during_a_listing_does_not_wait_for_the_hub(qtbot, first_run, held_hub):
    app = first_run
    app.start()  # the welcome screen lists the default model
    qtbot.waitUntil(lambda: held_hub.waiting == 1, timeout=10_000)

    app.window.close()  # App.close

    assert held_hub.waiting == 1  # the window closed while the listing still waited for the Hub
    held_hub.let_go()
    _all_jobs_reported(qtbot)  # its result went nowhere, and the process lives on
