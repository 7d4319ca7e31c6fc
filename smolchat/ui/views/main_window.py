"""The main window: conversations on the left, the chat and the composer on the right."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from smolchat import __version__
from smolchat.ui.views.chat_view import ChatView
from smolchat.ui.views.composer import Composer
from smolchat.ui.views.first_run import FirstRun
from smolchat.ui.views.page_picker import PagePicker
from smolchat.ui.views.picture_viewer import PictureViewer
from smolchat.ui.views.sidebar import Sidebar


class Banner(QFrame):
    """An error in the window itself, above the composer: what happened, the action to take
    (a button, when there is one), and x to dismiss it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setAccessibleName("Error")
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)  # messages quote file names and servers' words
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action = QPushButton("")
        self.action.hide()
        self._slot: Callable[[], None] | None = None
        self.action.clicked.connect(self._act)
        close = QToolButton()
        close.setText("×")
        close.setAccessibleName("Dismiss the error")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 6, 6, 6)
        row.addWidget(self.text, 1)
        row.addWidget(self.action)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_message(
        self, message: str, action: tuple[str, Callable[[], None]] | None = None, kind: str = "error"
    ) -> None:
        """``kind``: "error", or "info" for news with an action (Undo)."""
        self.setProperty("kind", kind)
        self.setAccessibleName("Error" if kind == "error" else "Notice")
        self.style().unpolish(self)
        self.style().polish(self)
        self.text.setText(message)
        self._slot = action[1] if action else None
        self.action.setText(action[0] if action else "")
        self.action.setAccessibleName(action[0] if action else "")
        self.action.setVisible(action is not None)
        self.show()

    def _act(self) -> None:
        slot = self._slot
        self.hide()
        if slot is not None:
            slot()


class Activity(QWidget):
    """What the window is busy with (loading a model, measuring this computer, reading images):
    a bar, determinate where the work says how far it is, and what it is doing."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel("")
        self.label.setObjectName("activityText")
        self.bar = QProgressBar()
        self.bar.setAccessibleName("Progress")
        self.bar.setMaximumHeight(8)
        self.bar.setTextVisible(False)
        self.bar.setMaximumWidth(240)
        row = QHBoxLayout(self)
        row.setContentsMargins(16, 0, 16, 0)
        row.addWidget(self.label, 1)
        row.addWidget(self.bar)
        self.hide()

    def show_progress(self, stage: str, done: float, total: float | None) -> None:
        self.label.setText(stage + ("…" if not stage.endswith(("…", ")")) else ""))
        if total is None or total <= 0:
            self.bar.setRange(0, 0)  # busy: how much is left is not known
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * min(done / total, 1.0)))
        self.show()


class MainWindow(QMainWindow):
    closing = Signal()
    model_picker_requested = Signal()
    settings_requested = Signal()
    export_requested = Signal()
    serve_requested = Signal()
    batch_requested = Signal()
    theme_chosen = Signal(str)  # "system", "light" or "dark"
    import_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("SmolChat")
        self.resize(1100, 760)
        self.sidebar = Sidebar()
        self.chat = ChatView()
        self.composer = Composer()
        self.banner = Banner()
        self.activity = Activity()
        self.first_run = FirstRun()
        self.first_run.choose_requested.connect(self.model_picker_requested)
        self.first_run.import_requested.connect(self.import_requested)
        chat_page = QWidget()
        column = QVBoxLayout(chat_page)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(4)
        column.addWidget(self.chat, 1)
        column.addWidget(self.activity)
        column.addWidget(self.banner)
        column.addWidget(self.composer)
        self.pages = QStackedWidget()
        self.pages.addWidget(chat_page)
        self.pages.addWidget(self.first_run)
        self.setAcceptDrops(True)  # a file dropped anywhere on the window is attached
        self.picture_viewer: PictureViewer | None = None
        self.chat.picture_clicked.connect(self.show_picture)
        self.composer.picture_opened.connect(lambda path: self.show_picture(path, self.composer.thumbnail(path).name))
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(self.pages)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([240, 860])
        self.setCentralWidget(splitter)

        self.about_details: Callable[[], list[str]] = lambda: []  # the build and its folders, once llama.cpp loads
        self.model_label = QLabel("No model loaded")
        self.model_label.setAccessibleName("Model")
        self.model_label.setToolTip("The model answering, and how it reads images")
        self.statusBar().addPermanentWidget(self.model_label)
        self.composer.refused.connect(self.show_error)
        self._menus()

    def _menus(self) -> None:
        def action(menu, text: str, shortcut: str | None, slot, tip: str) -> QAction:
            act = QAction(text, self)
            if shortcut:
                act.setShortcut(QKeySequence(shortcut))
            act.setToolTip(tip)
            act.setStatusTip(tip)
            act.triggered.connect(slot)
            menu.addAction(act)
            return act

        chat = self.menuBar().addMenu("&Chat")
        self.new_action = action(chat, "&New chat", "Ctrl+N", self.sidebar.new_requested, "Start a new conversation")
        action(chat, "&Focus the message box", "Ctrl+L", self.composer.focus, "Type a message")
        action(chat, "&Export…", "Ctrl+E", self.export_requested, "Save this conversation as Markdown or JSON")
        action(
            chat,
            "&Batch over a folder…",
            "Ctrl+Shift+B",
            self.batch_requested,
            "Ask the same thing of every picture in a folder, into a results file",
        )
        chat.addSeparator()
        action(chat, "&Quit", "Ctrl+Q", self.close, "Close SmolChat")
        model = self.menuBar().addMenu("&Model")
        action(
            model, "&Choose model…", "Ctrl+Shift+M", self.model_picker_requested, "Download, import or switch models"
        )
        action(
            model,
            "&Settings…",
            "Ctrl+,",
            self.settings_requested,
            "GPU layers, context size, image detail, sampling and system prompt of this model",
        )
        model.addSeparator()
        action(
            model,
            "Serve on this &computer…",
            None,
            self.serve_requested,
            "Let other programs on this computer use this model through an OpenAI- or Ollama-compatible API",
        )
        view = self.menuBar().addMenu("&View")
        themes = view.addMenu("&Theme")
        self.theme_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for choice, text, tip in (
            ("system", "&System", "Light or dark as the desktop is set, changing when it changes"),
            ("light", "&Light", "Always light"),
            ("dark", "&Dark", "Always dark"),
        ):
            act = action(themes, text, None, lambda _=False, c=choice: self.theme_chosen.emit(c), tip)
            act.setCheckable(True)
            group.addAction(act)
            self.theme_actions[choice] = act
        helps = self.menuBar().addMenu("&Help")
        action(helps, "&About SmolChat", None, self._about, "Version and license")

    def show_model_loading(self, name: str) -> None:
        self.model_label.setText(f"Loading {name}…")

    def show_model(self, name: str, detail: str = "") -> None:
        """The model answering; ``detail``: how it reads images, if it says."""
        self.model_label.setText(f"{name} · {detail}" if detail else name)

    def show_no_model(self) -> None:
        self.model_label.setText("No model loaded")

    def ask_export_file(self, suggested: str) -> tuple[Path, bool] | None:
        """Where to export the conversation, and whether as JSON (else Markdown); None: cancelled."""
        name, chosen = QFileDialog.getSaveFileName(
            self, "Export conversation", suggested, "Markdown, images alongside (*.md);;JSON (*.json)"
        )
        if not name:
            return None
        path = Path(name)
        return path, path.suffix.lower() == ".json" or "JSON" in chosen

    def ask_pages(self, path: Path, name: str, count: int) -> str | None:
        """Which pages of a long PDF to send (e.g. "1-3,5"); None: none, the PDF is not added."""
        picker = PagePicker(path, name, count, self)
        chosen = picker.exec() == PagePicker.DialogCode.Accepted
        spec = picker.spec()
        picker.deleteLater()
        return spec if chosen and spec else None

    def show_status(self, message: str, seconds: float = 8) -> None:
        self.statusBar().showMessage(message, int(seconds * 1000))

    def show_error(self, message: str, action: tuple[str, Callable[[], None]] | None = None) -> None:
        """An error the user can act on, shown as it is, in a banner above the composer; ``action``:
        (button text, what it does), when one thing fixes it."""
        self.banner.show_message(message, action)
        self.statusBar().showMessage(message, 15000)

    def clear_error(self) -> None:
        self.banner.hide()

    def show_notice(self, message: str, action: tuple[str, Callable[[], None]] | None = None) -> None:
        """News that is no error, in the banner: a deleted conversation and its Undo."""
        self.banner.show_message(message, action, kind="info")

    def hide_notice(self) -> None:
        if self.banner.property("kind") == "info":
            self.banner.hide()

    def show_progress(self, stage: str, done: float = 0, total: float | None = None) -> None:
        self.activity.show_progress(stage, done, total)

    def end_progress(self) -> None:
        self.activity.hide()

    def show_picture(self, path: Path, name: str | None = None) -> PictureViewer:
        """A picture of the conversation or the composer, at the size of the screen."""
        viewer = PictureViewer(path, name, self)
        viewer.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        viewer.show()
        self.picture_viewer = viewer
        return viewer

    def show_theme_choice(self, choice: str) -> None:
        self.theme_actions[choice].setChecked(True)

    def show_first_run(self, shown: bool) -> None:
        """The welcome screen, until a model is there; then the conversation."""
        self.pages.setCurrentWidget(self.first_run if shown else self.pages.widget(0))

    # -- files dropped anywhere on the window ----------------------------------------------------

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()
            self.composer.set_drop_highlight(True)

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self.composer.set_drop_highlight(False)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.composer.set_drop_highlight(False)
        self.composer.take_mime(event.mimeData())
        event.acceptProposedAction()

    def about_text(self) -> str:
        details = "".join(f"<br>{html.escape(line)}" for line in self.about_details())
        return (
            f"<b>SmolChat {__version__}</b><p>Chat privately with SmolVLM vision-language models "
            f"on your own computer, through llama.cpp.</p><p>{details[4:]}</p><p>Apache License 2.0</p>"
        )

    def _about(self) -> None:
        QMessageBox.about(self, "About SmolChat", self.about_text())

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.closing.emit()
        super().closeEvent(event)
