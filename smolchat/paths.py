"""Where SmolChat keeps its files.

``SMOLCHAT_HOME`` puts everything under one folder (a portable install, or a test run);
otherwise the platform's usual places are used. ``SMOLCHAT_DATA_DIR``, ``SMOLCHAT_CONFIG_DIR``
and ``SMOLCHAT_CACHE_DIR`` move one folder each and win over both: the self-test keeps its
conversation and settings apart that way, and still uses the computer's measurements.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import platformdirs

_APP = "SmolChat"


def _folder(kind: str, platform_dir: Callable[..., str]) -> Path:
    own = os.environ.get(f"SMOLCHAT_{kind.upper()}_DIR")
    if own:
        return Path(own)
    home = os.environ.get("SMOLCHAT_HOME")
    return Path(home) / kind if home else Path(platform_dir(_APP, appauthor=False))


def data_dir() -> Path:
    """Files worth keeping: conversations, converted models."""
    return _folder("data", platformdirs.user_data_dir)


def cache_dir() -> Path:
    """Files that can be made again: measurements, compiled encoders, probe models."""
    return _folder("cache", platformdirs.user_cache_dir)


def config_dir() -> Path:
    """Settings."""
    return _folder("config", platformdirs.user_config_dir)


def models_dir() -> Path:
    """Downloaded models: the Hugging Face cache shared with other tools (``HF_HUB_CACHE``)."""
    # huggingface_hub reads HF_HOME / HF_HUB_CACHE as every Hub tool does
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


LOCATION_LABELS = {
    "models": "Models (Hugging Face cache)",
    "data": "Conversations and converted models",
    "config": "Settings",
    "cache": "Measurements and caches",
}


def locations() -> dict[str, Path]:
    """Every folder SmolChat uses, by what it holds."""
    return {"models": models_dir(), "data": data_dir(), "config": config_dir(), "cache": cache_dir()}


def resources_dir() -> Path:
    """Icons and the desktop file: inside the package once installed, beside it in a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "resources"
    return installed if installed.is_dir() else package.parent / "resources"
