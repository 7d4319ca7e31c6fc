"""A fake Hugging Face Hub on 127.0.0.1 holding repos laid out like the real SmolVLM ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from huggingface_hub import constants

from smolchat.engine.synthetic import TINY, write_pair
from smolchat.models import download as download_module
from smolchat.models.hub import Hub
from smolchat.models.library import Library
from smolchat.testing.fake_hub import FakeHub, FakeRepo

REPO = "ggml-org/SmolVLM-256M-Instruct-GGUF"
BIG_REPO = "someone/Big-GGUF"  # files big enough to stop half-way through
GATED_REPO = "someone/Gated-GGUF"
BIG_TEXT = "Big-Q8_0.gguf"
BIG_TEXT_SIZE = 3 << 20


@pytest.fixture(scope="session")
def repo_files(tmp_path_factory) -> dict[str, bytes]:
    """ggml-org/SmolVLM-256M-Instruct-GGUF's file names, holding tiny pairs that load."""
    folder = tmp_path_factory.mktemp("repo")
    q8_text, f16_mmproj = write_pair(folder / "q8", TINY, text_type="Q8_0")
    f16_text, _ = write_pair(folder / "f16", TINY, text_type="F16")
    return {
        "SmolVLM-256M-Instruct-Q8_0.gguf": q8_text.read_bytes(),
        "SmolVLM-256M-Instruct-f16.gguf": f16_text.read_bytes(),
        "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf": f16_mmproj.read_bytes()[: len(f16_mmproj.read_bytes()) // 2],
        "mmproj-SmolVLM-256M-Instruct-f16.gguf": f16_mmproj.read_bytes(),
        "README.md": b"# SmolVLM-256M-Instruct GGUF\n",
    }


@pytest.fixture
def fake_hub(repo_files, monkeypatch):
    big = {
        BIG_TEXT: os.urandom(BIG_TEXT_SIZE),
        "mmproj-Big-f16.gguf": repo_files["mmproj-SmolVLM-256M-Instruct-f16.gguf"],
    }
    repos = {
        REPO: FakeRepo(dict(repo_files)),
        BIG_REPO: FakeRepo(big, commit="1" * 40),
        GATED_REPO: FakeRepo(dict(repo_files), gated=True),
    }
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the test run is offline; this Hub is local
    monkeypatch.setattr(download_module, "RETRY_DELAYS_S", (0.05, 0.05, 0.05))
    with FakeHub(repos) as hub:
        yield hub


@pytest.fixture
def hf_cache(tmp_path) -> Path:
    return tmp_path / "hf-cache"


@pytest.fixture
def hub(fake_hub, hf_cache) -> Hub:
    return Hub(endpoint=fake_hub.url, cache_dir=hf_cache, offline=False)


@pytest.fixture
def downloaded(hub, hf_cache) -> Library:
    """The fake Hub's SmolVLM repo downloaded (both text formats, the default projector)."""
    listing = hub.list_repo(REPO)
    download_module.download(hub, REPO, [*listing.text_files, listing.default_projector])
    return Library(hf_cache)
