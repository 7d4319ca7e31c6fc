"""Downloads from the (fake) Hub into the Hugging Face cache: progress, cancel, resume, checks."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from huggingface_hub import try_to_load_from_cache

from smolchat.models import download as download_module
from smolchat.models.download import (
    ChecksumMismatchError,
    DiskFullError,
    DownloadCancelledError,
    DownloadInterruptedError,
    download,
)
from smolchat.models.hub import FileGoneError, HubAnswerError, RemoteFile
from smolchat.models.library import Library
from tests.fake_hub_fixtures import BIG_REPO, BIG_TEXT, BIG_TEXT_SIZE, REPO


def _partial(hf_cache, repo, sha256):
    return hf_cache / f"models--{repo.replace('/', '--')}" / "blobs" / f"{sha256}.incomplete"


def test_download_reports_progress_and_lands_in_the_standard_cache(hub, hf_cache, repo_files):
    listing = hub.list_repo(REPO)
    wanted = [listing.default_text, listing.default_projector]
    seen = []

    paths = download(hub, REPO, wanted, on_progress=seen.append)

    total = sum(f.size for f in wanted)
    assert seen[-1].done == seen[-1].total == total
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert {p.filename for p in seen} == {f.path for f in wanted}
    for f, path in zip(wanted, paths, strict=True):
        assert path.read_bytes() == repo_files[f.path]
        # huggingface_hub itself (and so llama.cpp's -hf and other apps) finds the file in its cache
        assert try_to_load_from_cache(REPO, f.path, cache_dir=hf_cache) == str(path)
    assert [m.name for m in Library(hf_cache).installed()] == [f"{REPO}:Q8_0"]


def test_a_second_download_fetches_nothing(hub, fake_hub):
    listing = hub.list_repo(REPO)
    download(hub, REPO, [listing.default_text])
    before = len(fake_hub.requests)
    download(hub, REPO, [listing.default_text])
    assert len(fake_hub.requests) == before


def _big(hub) -> RemoteFile:
    return hub.list_repo(BIG_REPO).file(BIG_TEXT)


def test_cancel_from_another_thread_keeps_the_part_and_the_next_download_continues(hub, fake_hub, hf_cache):
    big = _big(hub)
    fake_hub.bytes_per_second = 2 << 20
    cancel = threading.Event()
    progressed = threading.Event()

    def on_progress(p):
        if p.file_done > 512 << 10:
            progressed.set()

    threading.Thread(target=lambda: (progressed.wait(10), cancel.set()), daemon=True).start()
    with pytest.raises(DownloadCancelledError, match="continues from there"):
        download(hub, BIG_REPO, [big], on_progress=on_progress, cancel=cancel)

    partial = _partial(hf_cache, BIG_REPO, big.sha256)
    kept = partial.stat().st_size
    assert 0 < kept < BIG_TEXT_SIZE
    assert Library(hf_cache).installed() == []

    fake_hub.bytes_per_second = None
    download(hub, BIG_REPO, [big])
    assert fake_hub.downloads(BIG_TEXT)[-1].range == f"bytes={kept}-"
    assert not partial.exists()


def test_a_dropped_connection_resumes_with_only_the_rest(hub, fake_hub, hf_cache):
    big = _big(hub)
    fake_hub.drop_after = 1 << 20

    (path,) = download(hub, BIG_REPO, [big])

    ranges = [r.range for r in fake_hub.downloads(BIG_TEXT)]
    assert ranges == [None, f"bytes={1 << 20}-"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == big.sha256


def test_a_lost_connection_keeps_the_part_for_next_time(hub, fake_hub, hf_cache):
    big = _big(hub)
    fake_hub.drop_after = 1 << 20
    fake_hub.down_after_drop = True

    with pytest.raises(DownloadInterruptedError, match=r"connection to the Hub was lost .*\(1 MB of 3 MB done\)"):
        download(hub, BIG_REPO, [big])

    fake_hub.down = False
    assert _partial(hf_cache, BIG_REPO, big.sha256).stat().st_size == 1 << 20
    download(hub, BIG_REPO, [big])
    assert fake_hub.downloads(BIG_TEXT)[-1].range == f"bytes={1 << 20}-"


def test_a_killed_download_resumes_in_the_next_process(fake_hub, hf_cache, tmp_path):
    fake_hub.bytes_per_second = 1 << 20
    env = {
        **os.environ,
        "HF_ENDPOINT": fake_hub.url,
        "HF_HUB_CACHE": str(hf_cache),
        "HF_HUB_OFFLINE": "0",
        "SMOLCHAT_HOME": str(tmp_path / "home"),
        "HF_HOME": str(tmp_path / "hf-home"),
    }
    command = [sys.executable, "-m", "smolchat", "models", "download", BIG_REPO, "--json"]
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sha256 = hashlib.sha256(fake_hub.repos[BIG_REPO].files[BIG_TEXT]).hexdigest()
    partial = _partial(hf_cache, BIG_REPO, sha256)
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size >= 512 << 10):
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = partial.stat().st_size
    assert kept < BIG_TEXT_SIZE

    fake_hub.bytes_per_second = None
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert fake_hub.downloads(BIG_TEXT)[-1].range == f"bytes={kept}-"
    assert f'"name": "{BIG_REPO}:Q8_0"' in done.stdout


def test_bytes_that_do_not_match_the_hash_are_thrown_away(hub, fake_hub, hf_cache):
    fake_hub.repos[REPO].corrupt.add("SmolVLM-256M-Instruct-Q8_0.gguf")
    listing = hub.list_repo(REPO)

    with pytest.raises(ChecksumMismatchError, match="sha256 does not match"):
        download(hub, REPO, [listing.default_text, listing.default_projector])

    assert Library(hf_cache).installed() == []
    assert not list(hf_cache.rglob("*.incomplete"))
    assert not list((hf_cache / f"models--{REPO.replace('/', '--')}").rglob("*Q8_0.gguf"))


def test_not_enough_disk_space_is_said_before_downloading(hub, fake_hub, monkeypatch):
    listing = hub.list_repo(REPO)
    monkeypatch.setattr(download_module, "free_bytes", lambda path: 10 << 20)
    requests_before = len(fake_hub.requests)

    with pytest.raises(DiskFullError, match=r"needs \d+ KB and .* has 10 MB free"):
        download(hub, REPO, [listing.default_text, listing.default_projector])
    assert fake_hub.requests[requests_before:] == []


def test_a_file_gone_from_the_repo(hub, fake_hub):
    listing = hub.list_repo(REPO)
    del fake_hub.repos[REPO].files["SmolVLM-256M-Instruct-Q8_0.gguf"]
    with pytest.raises(FileGoneError, match="no longer in"):
        download(hub, REPO, [listing.default_text])


@pytest.mark.timeout(30)
def test_a_hub_that_sends_the_same_short_body_again_and_again_is_given_up_on(hub, fake_hub, hf_cache):
    big = _big(hub)
    fake_hub.answer_limit = 1000  # each answer ends cleanly after 1000 bytes ...
    fake_hub.ignore_ranges = True  # ... always from the start of the file

    with pytest.raises(
        HubAnswerError,
        match=rf"The Hub at {fake_hub.url} did not send all of {BIG_TEXT} in \d+ "
        r"requests .*: it sent the start of the file again instead of the rest",
    ):
        download(hub, BIG_REPO, [big])

    assert len(fake_hub.downloads(BIG_TEXT)) == 2 + len(download_module.RETRY_DELAYS_S)
    assert _partial(hf_cache, BIG_REPO, big.sha256).stat().st_size == 1000  # kept for the next try


@pytest.mark.timeout(30)
def test_a_hub_that_answers_the_rest_of_a_file_with_an_empty_206_is_given_up_on(hub, fake_hub, hf_cache):
    big = _big(hub)
    fake_hub.drop_after = 1 << 20
    fake_hub.empty_ranges = True

    with pytest.raises(HubAnswerError, match=r"did not send all of .* \(1 MB of 3 MB done\): its answers held no data"):
        download(hub, BIG_REPO, [big])

    assert len(fake_hub.downloads(BIG_TEXT)) == 2 + len(download_module.RETRY_DELAYS_S)
    assert _partial(hf_cache, BIG_REPO, big.sha256).stat().st_size == 1 << 20


@pytest.mark.timeout(30)
def test_a_hub_that_sends_a_file_in_tiny_pieces_is_given_up_on_after_a_bounded_number_of_requests(
    hub, fake_hub, hf_cache
):
    big = _big(hub)
    fake_hub.answer_limit = 4096  # every answer brings the file a little further, never to its end

    with pytest.raises(HubAnswerError, match="its answers ended before the end of the file"):
        download(hub, BIG_REPO, [big])

    requests = len(fake_hub.downloads(BIG_TEXT))
    assert requests == download_module.MAX_REQUESTS_PER_FILE
    fake_hub.answer_limit = None
    download(hub, BIG_REPO, [big])  # the next download continues from there
    assert fake_hub.downloads(BIG_TEXT)[-1].range == f"bytes={requests * 4096}-"


@pytest.mark.timeout(30)
def test_an_answer_with_another_part_of_the_file_than_asked_for_is_not_written(hub, fake_hub, hf_cache):
    big = _big(hub)
    fake_hub.drop_after = 1 << 20
    fake_hub.wrong_ranges = True

    with pytest.raises(HubAnswerError, match="another part of the file than the one asked for"):
        download(hub, BIG_REPO, [big])
    assert _partial(hf_cache, BIG_REPO, big.sha256).stat().st_size == 1 << 20


@pytest.mark.timeout(30)
def test_a_size_that_differs_from_the_listing_is_refused_before_downloading(hub, fake_hub, hf_cache):
    big = _big(hub)
    fake_hub.repos[BIG_REPO].headers = {"X-Linked-Size": str(1 << 40)}
    with pytest.raises(FileGoneError, match="changed on the Hub"):
        download(hub, BIG_REPO, [big])
    assert fake_hub.downloads(BIG_TEXT) == []
