"""Removing a model deletes what SmolChat made for it, and nothing outside the cache's own blobs."""

from __future__ import annotations

import shutil

import pytest

from smolchat.engine.gguf_info import inspect_projector
from smolchat.engine.vision.plan import LLAMA_CPP, OPENVINO, VisionPlan, projector_for
from smolchat.models import hf_cache as cache
from smolchat.models.library import Library
from tests.fake_hub_fixtures import REPO

PROJECTOR = "mmproj-SmolVLM-256M-Instruct-f16.gguf"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Converted and layout-only copies in a folder of this test's own."""
    monkeypatch.setenv("SMOLCHAT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def library(downloaded) -> Library:
    return downloaded


def _copies(mmproj):
    """The copies the engine makes of a projector: BF16 for llama.cpp's encoder, layout-only beside OpenVINO."""
    file_type = inspect_projector(mmproj).file_type
    converted, _ = projector_for(mmproj, file_type, VisionPlan(LLAMA_CPP, "BF16", 1, 1))
    layout, layout_only = projector_for(mmproj, file_type, VisionPlan(OPENVINO, "F32", 1, 1))
    assert layout_only and converted != mmproj and converted.exists() and layout.exists()
    return [converted, layout]


def _all_copies(home):
    return sorted(p.name for p in home.rglob("*.gguf"))


def test_removing_a_model_removes_the_projector_copies_made_for_it(library, home, tmp_path):
    mine = _copies(library.find(REPO).mmproj)
    elsewhere = tmp_path / "elsewhere" / PROJECTOR  # a projector outside SmolChat, still there
    elsewhere.parent.mkdir()
    shutil.copy(library.find(REPO).mmproj, elsewhere)
    kept = _copies(elsewhere)

    library.remove(REPO, "F16")  # the projector stays for Q8_0: so do its copies
    assert all(p.exists() for p in mine + kept)

    library.remove(REPO, "Q8_0")
    assert not any(p.exists() for p in mine)
    assert _all_copies(home) == sorted(p.name for p in kept)


def test_copies_of_a_projector_deleted_by_another_tool_go_at_the_next_removal(library, home, tmp_path):
    still_installed = _copies(library.find(REPO).mmproj)
    gone = tmp_path / "gone" / PROJECTOR
    gone.parent.mkdir()
    shutil.copy(library.find(REPO).mmproj, gone)
    orphans = _copies(gone)
    gone.unlink()  # as `hf cache delete`, or a file manager, would

    library.remove(REPO, "F16")

    assert not any(p.exists() for p in orphans)
    assert all(p.exists() for p in still_installed)


def test_forgetting_an_imported_model_removes_its_copies_unless_another_model_uses_the_projector(
    tiny_pair, home, hf_cache
):
    text, mmproj = tiny_pair
    library = Library(hf_cache)
    library.import_pair(text, mmproj, "first")
    library.import_pair(text, mmproj, "second")
    copies = _copies(mmproj)

    library.remove("first")
    assert all(p.exists() for p in copies)
    library.remove("second")
    assert not any(p.exists() for p in copies)
    assert mmproj.exists() and text.exists()  # imported files are never SmolChat's to delete


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
