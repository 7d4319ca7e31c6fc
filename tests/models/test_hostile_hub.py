"""A Hub (or a mirror HF_ENDPOINT names, or anyone on a plain-HTTP line) that sends hostile or
unreadable answers: refused with a message naming the server, and nothing written outside the cache."""

from __future__ import annotations

import json
import random
import re

import pytest

from smolchat.errors import SmolChatError
from smolchat.models.download import CacheNotWritableError, download
from smolchat.models.hub import Hub, HubAnswerError, HubError, RemoteFile
from smolchat.testing.fake_hub import FakeRepo
from tests.fake_hub_fixtures import REPO

TEXT = "SmolVLM-256M-Instruct-Q8_0.gguf"
PROJECTOR = "mmproj-SmolVLM-256M-Instruct-f16.gguf"
HOSTILE = "someone/Hostile-GGUF"


def _victim(tmp_path):
    """Files beside the cache, named like the ones a download writes."""
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in (TEXT, PROJECTOR, "x.gguf"):
        (victim / name).write_bytes(b"precious")
    return victim


def _untouched(victim) -> bool:
    return (
        all(not p.is_symlink() and p.read_bytes() == b"precious" for p in victim.iterdir())
        and len(list(victim.iterdir())) == 3
    )


def _outside_cache(tmp_path, hf_cache) -> set:
    return {p for p in tmp_path.rglob("*") if hf_cache not in p.parents and p != hf_cache}


@pytest.mark.parametrize(
    "name",
    [
        "../../x.gguf",
        "a/../../x.gguf",
        "{victim}/x.gguf",
        "a\\..\\..\\x.gguf",
        "..\\x.gguf",
        "x\x00.gguf",
        "C:x.gguf",
        "./x.gguf",
        "a//x.gguf",
        "a/./x.gguf",
        "x\n.gguf",
    ],
)
def test_a_listed_file_name_that_leaves_its_folder_is_refused(fake_hub, hf_cache, tmp_path, repo_files, name):
    victim = _victim(tmp_path)
    name = name.format(victim=victim)  # an absolute path
    fake_hub.repos[HOSTILE] = FakeRepo({name: repo_files[TEXT], PROJECTOR: repo_files[PROJECTOR]})
    hub = Hub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)

    with pytest.raises(
        HubAnswerError,
        match=rf"The Hub at {fake_hub.url} sent a file list of {HOSTILE} .*"
        rf"a file named {re.escape(repr(name))}",
    ):
        hub.list_repo(HOSTILE)
    assert _untouched(victim)


def test_a_listed_hash_that_is_a_path_is_refused(fake_hub, hf_cache, tmp_path):
    victim = _victim(tmp_path)
    fake_hub.repos[REPO].tree_fields[TEXT] = {"lfs": {"oid": "../../../victim/x.gguf", "size": 1}}
    hub = Hub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)
    with pytest.raises(HubAnswerError, match="not a sha256"):
        hub.list_repo(REPO)
    assert _untouched(victim)


@pytest.mark.parametrize(
    "commit",
    [
        "../../../victim",
        "{victim}",
        "0123456789abcdef0123456789abcdef01234567/../../../../victim",
        "0123456789abcdef0123456789abcdef0123456",
        "0123456789ABCDEF0123456789ABCDEF01234567",
        "g" * 40,
    ],
)
def test_a_commit_id_that_is_not_one_is_refused_and_nothing_outside_the_cache_changes(
    hub, fake_hub, hf_cache, tmp_path, commit
):
    # the cache is tmp_path/hf-cache: snapshots/../../../victim is tmp_path/victim
    victim = _victim(tmp_path)
    listing = hub.list_repo(REPO)
    before = _outside_cache(tmp_path, hf_cache)
    fake_hub.repos[REPO].commit = commit.format(victim=victim)

    with pytest.raises(HubAnswerError, match=rf"The Hub at {fake_hub.url} named the version of {TEXT} .*not a commit"):
        download(hub, REPO, [listing.default_text, listing.default_projector])

    assert _untouched(victim)
    assert _outside_cache(tmp_path, hf_cache) == before


def test_a_hash_header_that_is_a_path_is_not_used_as_a_file_name(hub, fake_hub, hf_cache, tmp_path):
    victim = _victim(tmp_path)
    listing = hub.list_repo(REPO)
    fake_hub.repos[REPO].headers = {"ETag": '"../../../victim/x.gguf"', "X-Linked-Etag": '"../../../victim/x.gguf"'}

    text, _ = download(hub, REPO, [listing.default_text, listing.default_projector])

    assert text.resolve().name == listing.default_text.sha256  # named by the listing's sha256
    assert _untouched(victim)


def test_a_file_name_that_leaves_the_snapshot_is_refused_where_the_cache_is_written(
    hub, fake_hub, hf_cache, tmp_path, repo_files
):
    # a name that skipped the listing's checks (as from an older listing kept on disk)
    victim = _victim(tmp_path)
    name = str(victim / TEXT)
    fake_hub.repos[REPO].files[name] = repo_files[TEXT]
    sha256 = fake_hub.repos[REPO].sha256(name)

    with pytest.raises(SmolChatError, match="refused to store a file named"):
        download(hub, REPO, [RemoteFile(name, len(repo_files[TEXT]), sha256)])
    assert _untouched(victim)


@pytest.mark.parametrize(
    "body, why",
    [
        (b"<html>Service unavailable</html>", "not JSON"),
        (b'{"error": "no"}', "not a list"),
        (b"[1, 2]", "an entry is"),
        (b'[{"type": "file"}]', "an entry is"),
        (b'[{"type": "file", "path": "x.gguf"}]', "x.gguf with a size of None"),
        (b'[{"type": "file", "path": "x.gguf", "size": "12"}]', "size of '12'"),
        (b'[{"type": "file", "path": "x.gguf", "size": -1}]', "size of -1"),
        (b'[{"type": "file", "path": 7, "size": 1}]', "an entry is"),
    ],
)
def test_a_file_list_smolchat_cannot_read_is_a_message(hub, fake_hub, body, why):
    fake_hub.repos[REPO].tree_body = body
    with pytest.raises(
        HubAnswerError,
        match=rf"The Hub at {fake_hub.url} sent a file list of {REPO} that SmolChat "
        rf"cannot use: .*{why}",
    ):
        hub.list_repo(REPO)


@pytest.mark.timeout(30)
def test_a_file_list_that_links_to_itself_forever_is_given_up_on(hub, fake_hub):
    fake_hub.repos[REPO].tree_headers = {
        "Link": f'<{fake_hub.url}/api/models/{REPO}/tree/main?recursive=true>; rel="next"'
    }
    with pytest.raises(HubAnswerError, match="keeps sending more pages"):
        hub.list_repo(REPO)
    assert len(fake_hub.requests) <= 3


def test_garbled_file_lists_never_escape_as_anything_but_a_message(hub, fake_hub):
    """Seeded mutations of a real file list: each is listed, or refused with a HubError."""
    good = json.loads(
        json.dumps(
            [
                {"type": "file", "path": n, "size": 10, "oid": "0" * 40, "lfs": {"oid": "a" * 64, "size": 10}}
                for n in ("a-Q8_0.gguf", "mmproj-a-f16.gguf", "README.md")
            ]
        )
    )
    values = [
        None,
        True,
        -1,
        2**70,
        1.5,
        "",
        "..",
        "/x.gguf",
        "a/../b.gguf",
        "x\x00.gguf",
        [],
        {},
        "f" * 64,
        "../" * 30 + "x.gguf",
        "\\\\server\\share.gguf",
    ]
    rng = random.Random(20261201)
    outcomes = set()
    for _ in range(150):
        entries = json.loads(json.dumps(good))
        for _ in range(rng.randint(1, 3)):
            entry = rng.choice(entries)
            key = rng.choice(["type", "path", "size", "lfs", "oid"])
            entry[key] = rng.choice(values) if key != "lfs" else {"oid": rng.choice(values), "size": 10}
        fake_hub.repos[REPO].tree_body = json.dumps(entries).encode()
        try:
            listing = hub.list_repo(REPO)
        except HubError:
            outcomes.add("refused")
            continue
        outcomes.add("listed")
        for f in listing.files:
            assert f.path in {"a-Q8_0.gguf", "mmproj-a-f16.gguf"} or f.path.endswith(".gguf")
            assert ".." not in f.path.split("/") and not f.path.startswith("/")
    assert outcomes == {"refused", "listed"}


def test_an_answer_in_an_encoding_that_does_not_decode_is_a_message(hub, fake_hub):
    listing = hub.list_repo(REPO)
    fake_hub.repos[REPO].headers = {"Content-Encoding": "gzip"}  # the bytes are not gzip
    with pytest.raises(HubAnswerError, match=rf"The Hub at {fake_hub.url} sent {TEXT} in a form SmolChat cannot read"):
        download(hub, REPO, [listing.default_text])


def test_a_cache_folder_that_cannot_be_written_is_a_message(fake_hub, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache's parent folder should be")
    hub = Hub(endpoint=fake_hub.url, cache_dir=blocker / "hf-cache", offline=False)
    listing = hub.list_repo(REPO)
    with pytest.raises(CacheNotWritableError, match=rf"SmolChat cannot write to the model folder {blocker}/hf-cache: "):
        download(hub, REPO, [listing.default_text])
