"""Listing a repo on the (fake) Hub: files, sizes, formats, the default pair, errors, offline."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx2
import pytest

from smolchat.models.catalog import CATALOG, BadRepoIdError, check_repo_id
from smolchat.models.download import download
from smolchat.models.hub import (
    GatedRepoError,
    Hub,
    HubError,
    HubUnreachableError,
    RepoNotFoundError,
)
from tests.fake_hub_fixtures import GATED_REPO, REPO


def test_listing_splits_text_and_projector_files_with_sizes_and_formats(hub, repo_files):
    listing = hub.list_repo(REPO)

    assert not listing.offline
    assert [f.path for f in listing.text_files] == ["SmolVLM-256M-Instruct-Q8_0.gguf", "SmolVLM-256M-Instruct-f16.gguf"]
    assert [f.path for f in listing.projector_files] == [
        "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf",
        "mmproj-SmolVLM-256M-Instruct-f16.gguf",
    ]
    assert "README.md" not in {f.path for f in listing.files}
    for f in listing.files:
        assert f.size == len(repo_files[f.path])
        assert len(f.sha256) == 64
    assert [f.format_name for f in listing.text_files] == ["Q8_0", "F16"]
    assert listing.default_text.path == "SmolVLM-256M-Instruct-Q8_0.gguf"
    assert listing.default_projector.path == "mmproj-SmolVLM-256M-Instruct-f16.gguf"


def test_choosing_a_format_by_name(hub):
    listing = hub.list_repo(REPO)
    assert listing.choose("f16").path == "SmolVLM-256M-Instruct-f16.gguf"
    assert listing.choose("Q8_0", projector=True).path == "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf"
    with pytest.raises(HubError, match="no text model in Q4_K_M; it has Q8_0, F16"):
        listing.choose("Q4_K_M")


def test_unknown_repo(hub):
    with pytest.raises(RepoNotFoundError, match="no model repo named someone/Nothing-GGUF"):
        hub.list_repo("someone/Nothing-GGUF")


def test_gated_repo_says_how_to_get_access(hub):
    with pytest.raises(GatedRepoError, match="gated.*hf auth login"):
        hub.list_repo(GATED_REPO)


def test_a_gated_repo_opens_with_a_token(fake_hub, hf_cache):
    hub = Hub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False, token="hf_a_token")
    listing = hub.list_repo(GATED_REPO)
    (path,) = download(hub, GATED_REPO, [listing.default_text])
    assert path.stat().st_size == listing.default_text.size


def test_a_mistyped_repo_id_is_refused_before_asking_the_hub():
    with pytest.raises(BadRepoIdError, match="owner/name"):
        check_repo_id("SmolVLM 256M")
    assert check_repo_id(" https://huggingface.co/ggml-org/SmolVLM-256M-Instruct-GGUF/ ") == REPO


def test_catalog_has_the_official_six_and_community_repos():
    official = [e.repo for e in CATALOG if e.publisher == "official"]
    assert len(official) == 6 and all(r.startswith("ggml-org/") for r in official)
    assert "Mungert/SmolVLM-256M-Instruct-GGUF" in {e.repo for e in CATALOG}


def test_without_network_the_last_listing_is_shown(fake_hub, hf_cache):
    live = Hub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False).list_repo(REPO)
    address = fake_hub.url
    fake_hub.stop()

    remembered = Hub(endpoint=address, cache_dir=hf_cache, offline=False).list_repo(REPO)
    assert remembered.offline
    assert remembered.files == live.files
    assert Hub(endpoint=address, cache_dir=hf_cache, offline=True).list_repo(REPO).files == live.files
    with pytest.raises(HubUnreachableError, match="Cannot reach the Hugging Face Hub"):
        Hub(endpoint=address, cache_dir=hf_cache, offline=False).list_repo("someone/Never-Listed")


@pytest.mark.parametrize(
    "path",
    [
        "/api/agent-harnesses",
        "/api/whoami-v2",
        "/",
        f"/api/models/{REPO}",
        f"/{REPO}/blob/main/README.md",
        "/api/models/someone",
    ],
)
def test_the_fake_hub_answers_404_to_what_it_does_not_serve(fake_hub, path):
    for method in ("GET", "HEAD"):
        assert httpx2.request(method, fake_hub.url + path, timeout=10).status_code == 404


def test_huggingface_hub_keeps_nothing_from_the_fake_hub_in_its_home(fake_hub, tmp_path):
    # huggingface_hub asks any endpoint for its list of agent harnesses and keeps the answer for a day
    # under HF_HOME: an answer of the wrong shape would break it in every later process of the user.
    env = {**os.environ, "HF_ENDPOINT": fake_hub.url, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "0"}
    code = "from huggingface_hub.utils import is_agent; is_agent(); is_agent()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert [r.path for r in fake_hub.requests] == ["/api/agent-harnesses"]
    assert list(tmp_path.iterdir()) == []
