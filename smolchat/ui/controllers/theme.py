"""Light or dark: the choice kept in the settings (View → Theme), and the desktop's own setting
followed live while the choice is "system"."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication

from smolchat.settings import THEMES
from smolchat.ui import theme
from smolchat.ui.controllers.settings import SettingsController
from smolchat.ui.views.main_window import MainWindow


class ThemeController(QObject):
    changed = Signal(str)  # the theme now shown: "light" or "dark"

    def __init__(self, window: MainWindow, settings: SettingsController) -> None:
        super().__init__(window)
        self.window, self.settings = window, settings
        self.shown = theme.applied()  # main() paints the saved theme before the window shows
        window.theme_chosen.connect(self.choose)
        QGuiApplication.styleHints().colorSchemeChanged.connect(self.system_changed)
        self.apply()

    @property
    def choice(self) -> str:
        return self.settings.current.theme

    def choose(self, choice: str) -> None:
        """View → Theme: kept for the next start, shown now."""
        if choice in THEMES and choice != self.choice:
            self.settings.set_theme(choice)
        self.apply()

    def system_changed(self, _scheme: Qt.ColorScheme | None = None) -> None:
        """The desktop switched between light and dark."""
        if self.choice == "system":
            self.apply()

    def apply(self) -> None:
        name = theme.resolve(self.choice)
        self.window.show_theme_choice(self.choice)
        if name == self.shown:
            return
        self.shown = name
        theme.apply(name)
        self.window.chat.repaint_theme()
        self.changed.emit(name)
