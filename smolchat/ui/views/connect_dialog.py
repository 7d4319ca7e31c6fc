"""Models → Connect to a server…: a server with OpenAI's chat API (llama-server, vLLM,
Ollama, another SmolChat) answers instead of a model on this computer."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from smolchat.remote.client import RemoteModel


class ConnectDialog(QDialog):
    list_requested = Signal(str, str)  # address, key ("" for none)
    use_requested = Signal(str, str, str)  # address, key, model

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Connect to a server")
        self.setMinimumWidth(520)
        intro = QLabel(
            "Use a model another computer serves: llama.cpp's llama-server, vLLM, Ollama or another "
            "SmolChat (Model → Serve). Your messages and pictures are sent to that server."
        )
        intro.setWordWrap(True)
        self.address = QLineEdit()
        self.address.setAccessibleName("Server address")
        self.address.setPlaceholderText("http://gpu-box:8000")
        self.key = QLineEdit()
        self.key.setAccessibleName("API key")
        self.key.setPlaceholderText("If the server needs one")
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.list_button = QPushButton("Connect")
        self.list_button.setAccessibleName("Connect and list the server's models")
        self.list_button.clicked.connect(self._list)
        self.address.returnPressed.connect(self._list)
        form = QFormLayout()
        form.addRow("Address:", self.address)
        form.addRow("API key:", self.key)
        self.models = QListWidget()
        self.models.setAccessibleName("The server's models")
        self.models.itemDoubleClicked.connect(lambda _item: self._use())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Connection status")
        self.use_button = QPushButton("Use")
        self.use_button.setAccessibleName("Use the selected model")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self._use)
        self.models.currentItemChanged.connect(lambda item: self.use_button.setEnabled(item is not None))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.use_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.list_button, alignment=Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.models, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

    def _list(self) -> None:
        if not self.address.text().strip():
            self.status.setText("Type the server's address, e.g. http://127.0.0.1:8080.")
            return
        self.models.clear()
        self.list_button.setEnabled(False)
        self.status.setText("Connecting…")
        self.list_requested.emit(self.address.text().strip(), self.key.text())

    def _use(self) -> None:
        item = self.models.currentItem()
        if item is not None:
            self.use_requested.emit(self.address.text().strip(), self.key.text(), item.data(Qt.ItemDataRole.UserRole))

    def show_models(self, url: str, models: list[RemoteModel]) -> None:
        self.list_button.setEnabled(True)
        for model in models:
            seen = {True: " · reads images", False: " · text only", None: ""}[model.takes_images]
            context = f" · {model.n_ctx:,} tokens" if model.n_ctx else ""
            item = QListWidgetItem(f"{model.id}{seen}{context}")
            item.setData(Qt.ItemDataRole.UserRole, model.id)
            self.models.addItem(item)
        if models:
            self.models.setCurrentRow(0)
            self.status.setText(f"{url} serves {len(models)} model{'s' if len(models) != 1 else ''}; choose one.")
        else:
            self.status.setText(f"{url} serves no model yet.")

    def show_error(self, message: str) -> None:
        self.list_button.setEnabled(True)
        self.status.setText(message)
