"""The main window: conversations on the left, the chat and the composer on the right."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from smolchat import __version__
from smolchat.ui.views.chat_view import ChatView
from smolchat.ui.views.composer import Composer
from smolchat.ui.views.page_picker import PagePicker
from smolchat.ui.views.sidebar import Sidebar


class MainWindow(QMainWindow):
    closing = Signal()
    model_picker_requested = Signal()
    settings_requested = Signal()
    export_requested = Signal()
    serve_requested = Signal()
    batch_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("SmolChat")
        self.resize(1100, 760)
        self.sidebar = Sidebar()
        self.chat = ChatView()
        self.composer = Composer()
        right = QWidget()
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.chat, 1)
        column.addWidget(self.composer)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(right)
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

    def show_error(self, message: str) -> None:
        """An error the user can act on, shown as it is."""
        self.statusBar().showMessage(message, 15000)

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
