"""``smolchat`` with no arguments: the window."""

from __future__ import annotations

import sys

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from smolchat import __version__, paths
from smolchat import settings as settings_module
from smolchat.errors import SmolChatError
from smolchat.ui import theme
from smolchat.ui.controllers.settings import SettingsController
from smolchat.ui.single_instance import SingleInstance
from smolchat.ui.views.main_window import MainWindow


class App:
    """The window, its controllers and workers, and what they share."""

    def __init__(self, window: MainWindow | None = None, settings: SettingsController | None = None) -> None:
        # Imported here: llama.cpp, numpy and huggingface_hub take a second to load, and the
        # window is already on screen by then (see main).
        from smolchat.models.library import Library
        from smolchat.store import Store
        from smolchat.ui.controllers.batch import BatchController
        from smolchat.ui.controllers.conversations import ConversationController
        from smolchat.ui.controllers.models import ModelsController
        from smolchat.ui.controllers.serving import ServingController
        from smolchat.ui.controllers.theme import ThemeController
        from smolchat.ui.controllers.turns import TurnController
        from smolchat.ui.workers.background import Background
        from smolchat.ui.workers.engine_worker import EngineWorker

        self.settings = settings if settings is not None else SettingsController()
        self.store = Store()
        self.library = Library()
        self.worker = EngineWorker()
        self.window = window or MainWindow()
        self.settings.save_failed.connect(self.window.show_error)
        self.theme = ThemeController(self.window, self.settings)
        # The store's thread: database writes and pictures kept, in the order they were asked for.
        self.writer = Background("store", self.window)
        self.conversations = ConversationController(self.window, self.store, self.writer)
        self.turns = TurnController(
            self.window, self.store, self.worker, self.settings, self.conversations, self.writer
        )
        self.models = ModelsController(self.window, self.turns, self.library)
        self.serving = ServingController(self.window, self.worker, self.turns)
        self.batch = BatchController(self.window, self.worker, self.turns)
        self.window.closing.connect(self.close)
        self.window.about_details = about_details  # read when the box opens: free memory is current
        if window is None:
            restore_geometry(self.window, self.settings.current)

    def start(self) -> None:
        from smolchat.ui.workers.background import Background

        self.window.show()
        self.conversations.tidy_up()
        self.conversations.start()
        # Every model file's header is checked before it is offered: off the UI thread.
        self._startup = Background("library", self.window)
        self._startup.run(
            self.library.inventory,
            done=self._models_found,
            failed=lambda e: self.window.show_error(
                f"The models on this computer could not be listed ({type(e).__name__}: {e})."
            ),
        )

    def _models_found(self, inventory) -> None:
        if inventory.unusable:
            self.window.show_error(
                " ".join(u.reason for u in inventory.unusable)
                + " Model → Choose model… lists the files that cannot be used."
            )
        installed = {m.name: m for m in inventory.installed}
        chosen = installed.get(self.settings.current.model or "") or next(iter(installed.values()), None)
        if chosen is not None:
            self.turns.load_model(chosen)
        else:  # first run: what SmolChat is, and the recommended model, one button away
            self.models.offer_default()

    def close(self) -> None:
        geometry = bytes(self.window.saveGeometry().toBase64()).decode()
        chosen = self.turns.model.name if self.turns.model else self.settings.current.model
        message = self.settings.remember_window(chosen, geometry)
        if message:
            print(f"smolchat: {message}", file=sys.stderr)
        if hasattr(self, "_startup"):
            self._startup.close()
        self.batch.close()
        self.turns.close()
        self.conversations.close()
        self.writer.close()
        self.models.close()
        self.serving.close()
        self.worker.stop()


def about_details() -> list[str]:
    """What the About box says of this build: llama.cpp's backend, and where files are kept."""
    from smolchat.engine.backends import build_info

    lines = [build_info().headline()]
    lines += [f"{paths.LOCATION_LABELS[name]}: {path}" for name, path in paths.locations().items()]
    return lines


def app_icon() -> QIcon:
    icon = QIcon()
    for png in sorted((paths.resources_dir() / "icons").glob("smolchat-*.png")):
        icon.addFile(str(png))
    return icon


def restore_geometry(window: MainWindow, settings: settings_module.Settings) -> None:
    if settings.window_geometry:
        window.restoreGeometry(QByteArray.fromBase64(settings.window_geometry.encode()))


def main(self_test: bool = False) -> int:
    checker = None
    if self_test:
        from smolchat.ui.self_test import SelfTest

        checker = SelfTest()  # a throwaway home, before anything reads settings
    qt = QApplication.instance() or QApplication(sys.argv)
    qt.setApplicationName("SmolChat")
    qt.setApplicationVersion(__version__)
    qt.setDesktopFileName("smolchat")
    instance = SingleInstance(paths.data_dir())
    if not instance.acquire():
        shown = instance.ask_running_to_show()
        print(
            "smolchat: SmolChat is already running"
            + (
                "; its window was brought to the front."
                if shown
                else f" (its data folder {paths.data_dir()} is in use)."
            ),
            file=sys.stderr,
        )
        return 0
    qt.setWindowIcon(app_icon())
    settings = SettingsController()  # read once: the theme and the window's place now, the rest later
    theme.apply(theme.resolve(settings.current.theme))  # painted right from its first frame
    window = MainWindow()  # on screen first; the rest loads behind it
    instance.show_requested.connect(lambda: bring_to_front(window))
    restore_geometry(window, settings.current)
    window.show()
    qt.processEvents()
    if checker:
        checker.window_shown()
    try:
        app = App(window, settings)
    except SmolChatError as e:
        print(f"smolchat: {e}", file=sys.stderr)
        instance.release()
        return 1
    if checker:
        checker.begin(app)
    else:
        app.start()
    code = qt.exec()
    instance.release()
    if checker:
        checker.print_report()
    return code


def bring_to_front(window: MainWindow) -> None:
    window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
    window.show()
    window.raise_()
    window.activateWindow()
