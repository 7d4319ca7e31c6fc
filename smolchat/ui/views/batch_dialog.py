"""Chat → Batch over a folder: one prompt for every picture of a folder, with the model the
window has loaded, into a results file that a later run continues."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

RESULTS_NAME = "smolchat-results.jsonl"


@dataclass(frozen=True)
class BatchForm:
    folder: Path
    recursive: bool
    prompt: str
    schema: Path | None
    results: Path


class BatchDialog(QDialog):
    start_requested = Signal(object)  # a BatchForm
    stop_requested = Signal()
    open_results_requested = Signal(object)  # the results file's Path

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Batch over a folder")
        self.setMinimumWidth(560)
        intro = QLabel(
            "Ask the same thing of every picture in a folder: alt text, tags, fields from receipts. "
            "Each answer is added to the results file as it comes; run the job again on the same "
            "file to continue after stopping."
        )
        intro.setWordWrap(True)
        self.folder = QLineEdit()
        self.folder.setAccessibleName("Folder of pictures")
        self.folder.setPlaceholderText("The folder of pictures")
        self.choose_folder = QPushButton("Choose…")
        self.choose_folder.setAccessibleName("Choose the folder")
        self.choose_folder.clicked.connect(self._pick_folder)
        self.recursive = QCheckBox("Include subfolders")
        self.prompt = QPlainTextEdit()
        self.prompt.setAccessibleName("Prompt for every picture")
        self.prompt.setPlaceholderText("e.g. Write alt text for this photo.")
        self.prompt.setFixedHeight(70)
        self.prompt.setTabChangesFocus(True)
        self.schema = QLineEdit()
        self.schema.setAccessibleName("JSON schema file (optional)")
        self.schema.setPlaceholderText("Optional: answers as JSON that validates against this schema")
        self.choose_schema = QPushButton("Choose…")
        self.choose_schema.setAccessibleName("Choose the schema file")
        self.choose_schema.clicked.connect(self._pick_schema)
        self.results = QLineEdit()
        self.results.setAccessibleName("Results file")
        self.results.setPlaceholderText(f"Default: {RESULTS_NAME} in the folder (.jsonl or .csv)")
        self.choose_results = QPushButton("Choose…")
        self.choose_results.setAccessibleName("Choose the results file")
        self.choose_results.clicked.connect(self._pick_results)

        form = QFormLayout()
        form.addRow("Folder:", _row(self.folder, self.choose_folder))
        form.addRow("", self.recursive)
        form.addRow("Prompt:", self.prompt)
        form.addRow("Schema:", _row(self.schema, self.choose_schema))
        form.addRow("Results:", _row(self.results, self.choose_results))

        self.progress = QProgressBar()
        self.progress.setAccessibleName("Batch progress")
        self.progress.setFormat("%v of %m")
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Batch status")
        self.toggle = QPushButton("Start")
        self.toggle.setAccessibleName("Start or stop the batch")
        self.toggle.setDefault(True)
        self.toggle.clicked.connect(self._toggle)
        self.open_results = QPushButton("Open results")
        self.open_results.setEnabled(False)
        self.open_results.clicked.connect(lambda: self.open_results_requested.emit(self.results_path()))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        actions = QHBoxLayout()
        actions.addWidget(self.toggle)
        actions.addWidget(self.open_results)
        actions.addStretch(1)
        actions.addWidget(buttons)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(actions)
        self._running = False

    # -- what the user asked for -------------------------------------------------------------

    def form(self) -> BatchForm | str:
        """The job to run, or what is missing, in words."""
        folder_text = self.folder.text().strip()
        if not folder_text:
            return "Choose the folder of pictures."
        folder = Path(folder_text).expanduser()
        if not folder.is_dir():
            return f"{folder} is not a folder."
        prompt = self.prompt.toPlainText().strip()
        if not prompt:
            return "Write what to ask of every picture."
        schema_text = self.schema.text().strip()
        return BatchForm(folder, self.recursive.isChecked(), prompt, Path(schema_text) if schema_text else None,
                         self.results_path())  # fmt: skip

    def results_path(self) -> Path:
        typed = self.results.text().strip()
        if typed:
            return Path(typed).expanduser()
        return Path(self.folder.text().strip() or ".").expanduser() / RESULTS_NAME

    def _toggle(self) -> None:
        if self._running:
            self.stop_requested.emit()
            return
        form = self.form()
        if isinstance(form, str):
            self.show_error(form)
        else:
            self.start_requested.emit(form)

    def _pick_folder(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Folder of pictures", self.folder.text())
        if chosen:
            self.folder.setText(chosen)

    def _pick_schema(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "JSON schema", "", "JSON schema (*.json);;All files (*)")
        if chosen:
            self.schema.setText(chosen)

    def _pick_results(self) -> None:
        chosen, _ = QFileDialog.getSaveFileName(
            self, "Results file", str(self.results_path()), "JSON Lines (*.jsonl);;CSV (*.csv)"
        )
        if chosen:
            self.results.setText(chosen)

    # -- what the controller says ------------------------------------------------------------

    def show_running(self, total: int | None = None) -> None:
        """Running; ``total`` once the pictures are found."""
        self._running = True
        self.toggle.setText("Stop")
        for widget in self._inputs():
            widget.setEnabled(False)
        if total is None:
            self.progress.setRange(0, 0)  # busy until the folder is read
            self.status.setText("Finding the pictures…")
        else:
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(0)
            self.status.setText(f"{total} pictures; those already in the results file are skipped…")

    def show_progress(
        self, finished: int, total: int, failed: int, before: int, rate: float | None, left_s: float | None
    ) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(finished)
        parts = [f"{finished} of {total} done" + (f" ({before} answered before)" if before else "")]
        if failed:
            parts.append(f"{failed} could not be read")
        if rate:
            parts.append(f"{rate:.1f} pictures a minute")
        if left_s is not None:
            parts.append(f"about {_duration(left_s)} left")
        self.status.setText(" · ".join(parts))
        self.open_results.setEnabled(True)

    def show_finished(self, text: str) -> None:
        self._idle()
        self.status.setText(text)
        self.open_results.setEnabled(self.results_path().exists())

    def show_error(self, message: str) -> None:
        self._idle()
        self.status.setText(message)
        self.open_results.setEnabled(self.results_path().exists())

    def _idle(self) -> None:
        self._running = False
        self.toggle.setText("Start")
        for widget in self._inputs():
            widget.setEnabled(True)

    def _inputs(self) -> list[QWidget]:
        return [self.folder, self.choose_folder, self.recursive, self.prompt, self.schema, self.choose_schema,
                self.results, self.choose_results]  # fmt: skip


def _row(field: QWidget, button: QPushButton) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(field, 1)
    layout.addWidget(button)
    return row


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
