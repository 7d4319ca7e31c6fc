"""Removing a model deletes nothing outside the cache's own blobs."""

from __future__ import annotations

import pytest

from smolchat.models import hf_cache as cache
from smolchat.models.download import download
from smolchat.models.library import Library
from tests.fake_hub_fixtures import REPO


@pytest.fixture
def library(hub, hf_cache) -> Library:
    listing = hub.list_repo(REPO)
    download(hub, REPO, [*listing.text_files, listing.default_projector])
    return Library(hf_cache)


def test_removing_a_model_never_deletes_what_a_snapshot_links_to_outside_the_repo(library, hf_cache, tmp_path):
    precious = tmp_path / "beside-the-cache" / "notes.gguf"
    precious.parent.mkdir()
    precious.write_bytes(b"not a model, not SmolChat's")
    other_repo_blob = hf_cache / "models--someone--Other" / "blobs" / ("b" * 64)
    other_repo_blob.parent.mkdir(parents=True)
    other_repo_blob.write_bytes(b"another repo's file")
    snapshot = library.find(REPO).text.parent
    (snapshot / "Notes-Q4_0.gguf").symlink_to(precious)
    (snapshot / "Extra-Q4_0.gguf").symlink_to(other_repo_blob)

    removed = library.remove(REPO)

    assert {"Notes-Q4_0.gguf", "Extra-Q4_0.gguf"} < set(removed)
    assert precious.read_bytes() == b"not a model, not SmolChat's"
    assert other_repo_blob.read_bytes() == b"another repo's file"
    assert not cache.repo_folder(hf_cache, REPO).exists()


def test_a_linked_snapshot_folder_is_not_followed_for_deletion(library, hf_cache, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Kept-Q8_0.gguf").write_bytes(b"keep me")
    (outside / "Linked-Q8_0.gguf").symlink_to(outside / "Kept-Q8_0.gguf")
    (cache.repo_folder(hf_cache, REPO) / "snapshots" / ("c" * 40)).symlink_to(outside)

    library.remove(REPO)

    assert (outside / "Kept-Q8_0.gguf").read_bytes() == b"keep me"
    assert (outside / "Linked-Q8_0.gguf").is_symlink()
