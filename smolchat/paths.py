"""Where SmolChat keeps its files.

``SMOLCHAT_HOME`` puts everything under one folder (a portable install, or a test run);
otherwise the platform's usual places are used.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

_APP = "SmolChat"


def _home() -> Path | None:
    home = os.environ.get("SMOLCHAT_HOME")
    return Path(home) if home else None


def data_dir() -> Path:
    """Files worth keeping: converted models."""
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(_APP, appauthor=False))


def cache_dir() -> Path:
    """Files that can be made again: measurements, compiled encoders, probe models."""
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(_APP, appauthor=False))


def config_dir() -> Path:
    """Settings."""
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(_APP, appauthor=False))


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
