"""The cache refuses any path that would lead outside it, whatever the Hub or a local link says."""

from __future__ import annotations

import os
import random

import pytest

from smolchat.models import hf_cache as cache

REPO = "someone/Some-GGUF"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def setup(tmp_path):
    """A cache with one blob, and a folder beside it holding a file that must not change."""
    root = tmp_path / "hf-cache"
    blob = cache.blob_path(root, REPO, "a" * 64)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"model")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "x.gguf").write_bytes(b"precious")
    return root, blob, victim


def _victim_untouched(victim) -> bool:
    return (
        [p.name for p in victim.iterdir()] == ["x.gguf"]
        and not (victim / "x.gguf").is_symlink()
        and (victim / "x.gguf").read_bytes() == b"precious"
    )


@pytest.mark.parametrize(
    "commit", ["../../../victim", "{victim}", COMMIT + "/../../../../victim", COMMIT[:-1], "", COMMIT.upper(), "main"]
)
def test_a_commit_that_is_not_a_commit_id_makes_no_folder(setup, commit):
    root, blob, victim = setup
    with pytest.raises(cache.CachePathError, match="not a commit id"):
        cache.add_to_snapshot(root, REPO, commit.format(victim=victim), "x.gguf", blob)
    assert _victim_untouched(victim)
    assert not (cache.repo_folder(root, REPO) / "snapshots").exists()


@pytest.mark.parametrize(
    "name",
    [
        "../../../../victim/x.gguf",
        "{victim}/x.gguf",
        "a/../../../../../victim/x.gguf",
        "..\\..\\x.gguf",
        "x\x00.gguf",
        "",
        "a/",
        "/x.gguf",
    ],
)
def test_a_file_name_that_leaves_the_snapshot_is_refused(setup, name):
    root, blob, victim = setup
    with pytest.raises(cache.CachePathError, match="refused to store a file named"):
        cache.add_to_snapshot(root, REPO, COMMIT, name.format(victim=victim), blob)
    assert _victim_untouched(victim)


def test_a_link_out_of_the_repo_folder_is_not_written_through(setup):
    root, blob, victim = setup
    snapshots = cache.repo_folder(root, REPO) / "snapshots"
    snapshots.mkdir()
    (snapshots / COMMIT).symlink_to(victim)
    with pytest.raises(cache.CachePathError, match="a link that leads outside"):
        cache.add_to_snapshot(root, REPO, COMMIT, "x.gguf", blob)
    (snapshots / COMMIT).unlink()
    (snapshots / COMMIT).mkdir()
    (snapshots / COMMIT / "sub").symlink_to(victim)
    with pytest.raises(cache.CachePathError, match="a link that leads outside"):
        cache.add_to_snapshot(root, REPO, COMMIT, "sub/x.gguf", blob)
    assert _victim_untouched(victim)


def test_a_link_inside_the_repo_folder_is_fine_and_an_entry_is_replaced_in_place(setup):
    root, blob, victim = setup
    first = cache.add_to_snapshot(root, REPO, COMMIT, "dir/x.gguf", blob)
    (first.parent / "y.gguf").symlink_to(victim / "x.gguf")  # an entry linking out is replaced, not written through
    second = cache.add_to_snapshot(root, REPO, COMMIT, "dir/y.gguf", blob)
    assert first.read_bytes() == second.read_bytes() == b"model"
    assert second.resolve() == blob.resolve()
    assert (cache.repo_folder(root, REPO) / "refs" / "main").read_text() == COMMIT
    assert _victim_untouched(victim)


@pytest.mark.parametrize("sha256", ["../../../victim/x.gguf", "A" * 64, "a" * 63, ""])
def test_a_blob_or_lock_is_only_ever_named_by_a_sha256(tmp_path, sha256):
    for path in (cache.blob_path, cache.partial_path, cache.lock_path):
        with pytest.raises(cache.CachePathError, match="not a sha256"):
            path(tmp_path, REPO, sha256)


def test_file_names_the_checks_accept_stay_inside_the_snapshot():
    """Seeded random names from the characters that matter: any name accepted stays inside
    the snapshot folder once normalised, on POSIX and Windows alike."""
    rng = random.Random(20261201)
    alphabet = ["a", "b", ".", "..", "/", "\\", ":", "\x00", "\n", " ", "C:", "~", "%2e", "é"]
    snapshot = os.path.join(os.sep, "cache", "snapshots", COMMIT)
    accepted = 0
    for _ in range(5000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        if cache.file_name_problem(name) is not None:
            continue
        accepted += 1
        path = os.path.normpath(os.path.join(snapshot, name))
        assert path.startswith(snapshot + os.sep) and os.path.relpath(path, snapshot) == name, name
        assert "\\" not in name and ":" not in name  # what Windows would read as a folder or a drive
    assert accepted > 100
