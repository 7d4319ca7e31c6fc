"""The one holder of SmolChat's settings in the window: loaded once, saved after every change,
so what the window uses and what the next start loads are the same."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject, Signal

from smolchat import settings as settings_module
from smolchat.settings import ModelSettings, Settings


class SettingsController(QObject):
    changed = Signal(str)  # the model whose settings changed ("" for the window's own)
    save_failed = Signal(str)  # a message for the user

    def __init__(self, settings: Settings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._settings = settings_module.load() if settings is None else settings

    @property
    def current(self) -> Settings:
        return self._settings

    def for_model(self, name: str | None) -> ModelSettings:
        return self._settings.for_model(name) if name else ModelSettings()

    def set_model_settings(self, name: str, chosen: ModelSettings) -> None:
        self._settings = self._settings.with_model_settings(name, chosen)
        self.save()
        self.changed.emit(name)

    def set_theme(self, choice: str) -> None:
        """ "system", "light" or "dark"."""
        self._settings = replace(self._settings, theme=choice)
        self.save()
        self.changed.emit("")

    def remember_window(self, model: str | None, window_geometry: str | None) -> str | None:
        """Keep the model last used and the window's place for the next start; returns why
        they could not be saved, or None."""
        self._settings = replace(self._settings, model=model, window_geometry=window_geometry)
        message = self.save()
        self.changed.emit("")
        return message

    def save(self) -> str | None:
        """Write the settings; on failure, say why (``save_failed``) and return the message."""
        try:
            settings_module.save(self._settings)
        except OSError as e:
            message = f"The settings could not be saved: {e.strerror or e}."
            self.save_failed.emit(message)
            return message
        return None
