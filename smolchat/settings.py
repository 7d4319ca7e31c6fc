"""SmolChat's settings, typed, with their defaults, kept as JSON in the platform's config folder.

Per-model settings (context size, GPU layers, image detail, exact vision, sampling, system prompt) are kept
by model name, so switching models brings each one's own back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from smolchat import paths
from smolchat.budget.detail import DEFAULT_DETAIL
from smolchat.files import write_json

if TYPE_CHECKING:
    from smolchat.engine import EngineSettings, SamplingParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSettings:
    n_ctx: int = 4096
    n_gpu_layers: int = 0
    detail: str = DEFAULT_DETAIL.value
    exact_vision: bool = False  # images read in full precision, never 8-bit
    threads: int | None = None  # None: the count measured fastest here
    temperature: float = 0.2
    top_p: float = 0.95
    max_tokens: int = 512
    system_prompt: str = ""
    video_max_frames: int = 16  # most frames read from a clip, one tile each

    # Changing these means loading the model again.
    RELOAD = ("n_ctx", "n_gpu_layers", "detail", "exact_vision", "threads", "video_max_frames")

    def needs_reload(self, other: ModelSettings) -> bool:
        return any(getattr(self, name) != getattr(other, name) for name in self.RELOAD)

    def engine(self, image_max_tokens: int | None) -> EngineSettings:
        from smolchat.engine import EngineSettings  # gguf, jinja2 and numpy: not before a model is wanted

        return EngineSettings(
            n_ctx=self.n_ctx,
            n_gpu_layers=self.n_gpu_layers,
            n_threads=self.threads,
            image_max_tokens=image_max_tokens,
            vision_precision="exact" if self.exact_vision else "auto",
            video_max_frames=self.video_max_frames,
        )

    def sampling(self) -> SamplingParams:
        from smolchat.engine import SamplingParams

        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens)


THEMES = ("system", "light", "dark")  # "system": follow the desktop's light or dark setting


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # the installed model last used
    window_geometry: str | None = None  # Qt's saveGeometry(), base64
    models: dict[str, ModelSettings] = field(default_factory=dict)
    theme: str = "system"  # one of THEMES

    def for_model(self, name: str) -> ModelSettings:
        return self.models.get(name, ModelSettings())

    def with_model_settings(self, name: str, settings: ModelSettings) -> Settings:
        return replace(self, models={**self.models, name: settings})


def settings_file() -> Path:
    return paths.config_dir() / "settings.json"


def load() -> Settings:
    """The saved settings; defaults for anything missing or unreadable (never an error)."""
    try:
        raw = json.loads(settings_file().read_text())
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as e:
        log.warning("settings could not be read, using defaults: %s", e)
        return Settings()
    known = {f.name for f in fields(ModelSettings)}
    models = {}
    for name, values in (raw.get("models") or {}).items():
        if isinstance(values, dict):
            models[name] = ModelSettings(**{k: v for k, v in values.items() if k in known})
    theme = raw.get("theme")
    return Settings(raw.get("model"), raw.get("window_geometry"), models, theme if theme in THEMES else "system")


def save(settings: Settings) -> None:
    data = {
        "model": settings.model,
        "window_geometry": settings.window_geometry,
        "models": {name: asdict(m) for name, m in settings.models.items()},
        "theme": settings.theme,
    }
    write_json(settings_file(), data)
