"""Model → Serve on this computer: the model the window has loaded, behind the local API."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

DEFAULT_PORT = 8080


class ServeDialog(QDialog):
    start_requested = Signal(int)  # the port (0: any free one)
    stop_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Serve on this computer")
        self.setMinimumWidth(520)
        intro = QLabel(
            "Programs on this computer can use the model this window has loaded, through the same "
            "API as OpenAI's and Ollama's (for Open WebUI, scripts, editors). Nothing is reachable "
            "from other computers. Your own messages in this window go first."
        )
        intro.setWordWrap(True)
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setValue(DEFAULT_PORT)
        self.port.setSpecialValueText("any free port")
        self.port.setAccessibleName("Port")
        self.toggle = QPushButton("Start serving")
        self.toggle.setAccessibleName("Start or stop serving")
        self.toggle.clicked.connect(self._toggle)
        row = QHBoxLayout()
        row.addWidget(QLabel("Port:"))
        row.addWidget(self.port)
        row.addStretch(1)
        row.addWidget(self.toggle)

        self.status = QLabel("Not serving.")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Serving status")
        grid = QGridLayout()
        self.openai_url, self.copy_openai = self._address_row(grid, 0, "OpenAI base URL")
        self.ollama_url, self.copy_ollama = self._address_row(grid, 1, "Ollama URL")

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addLayout(grid)
        layout.addWidget(buttons)
        self._serving = False
        self.show_stopped()

    def _address_row(self, grid: QGridLayout, row: int, label: str) -> tuple[QLineEdit, QPushButton]:
        field = QLineEdit()
        field.setReadOnly(True)
        field.setAccessibleName(label)
        copy = QPushButton("Copy")
        copy.setAccessibleName(f"Copy the {label}")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(field.text()))
        grid.addWidget(QLabel(f"{label}:"), row, 0)
        grid.addWidget(field, row, 1)
        grid.addWidget(copy, row, 2)
        return field, copy

    def _toggle(self) -> None:
        if self._serving:
            self.stop_requested.emit()
        else:
            self.start_requested.emit(self.port.value())

    def show_serving(self, base_url: str, model: str | None) -> None:
        self._serving = True
        self.toggle.setText("Stop serving")
        self.port.setEnabled(False)
        self.openai_url.setText(f"{base_url}/v1")
        self.ollama_url.setText(base_url)
        for widget in (self.openai_url, self.ollama_url, self.copy_openai, self.copy_ollama):
            widget.setEnabled(True)
        self.show_model(model)

    def show_model(self, model: str | None) -> None:
        if not self._serving:
            return
        if model:
            self.status.setText(f"Serving {model} at {self.ollama_url.text()}. Ask for the model {model!r}.")
        else:
            self.status.setText("Serving; requests wait until a model is loaded (the server answers 503 meanwhile).")

    def show_stopped(self, error: str | None = None) -> None:
        self._serving = False
        self.toggle.setText("Start serving")
        self.port.setEnabled(True)
        for widget in (self.openai_url, self.ollama_url, self.copy_openai, self.copy_ollama):
            widget.setEnabled(False)
        self.status.setText(error or "Not serving.")
