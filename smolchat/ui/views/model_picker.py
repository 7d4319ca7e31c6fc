"""The model picker: the SmolVLM catalog or any repo, each format's size, memory need and fit,
downloads with progress, installed models, import from disk."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from smolchat.ui import theme

CONTEXT_SIZES = (2048, 4096, 8192, 16384, 32768)
MAX_GPU_LAYERS = 64  # the slider's end means every layer (SmolVLM text models have 24 to 32)


class ModelPicker(QDialog):
    repo_requested = Signal(str)
    download_requested = Signal(str, str)  # text file, projector file
    cancel_requested = Signal()
    use_requested = Signal(str)  # installed model name
    remove_requested = Signal(str)
    import_requested = Signal(str, str)  # text GGUF, mmproj GGUF
    connect_requested = Signal()
    estimate_changed = Signal(int, int)  # context size, GPU layers: the memory column is worked out again

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(980, 640)

        self.catalog = QListWidget()
        self.catalog.setWordWrap(True)  # names wrap: the list never scrolls sideways
        self.catalog.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.catalog.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.catalog.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.catalog.setAccessibleName("Model catalog")
        self.catalog.setToolTip("SmolVLM models on the Hugging Face Hub")
        self.catalog.currentItemChanged.connect(
            lambda item: item and self.repo_requested.emit(item.data(Qt.ItemDataRole.UserRole))
        )
        self.repo_field = QLineEdit()
        self.repo_field.setPlaceholderText("or any repo id: owner/name")
        self.repo_field.setAccessibleName("Repo id")
        self.repo_field.setToolTip("Any Hugging Face repo with SmolVLM GGUF files")
        self.repo_field.returnPressed.connect(lambda: self.repo_requested.emit(self.repo_field.text()))
        left = QVBoxLayout()
        left.addWidget(QLabel("<b>SmolVLM on the Hub</b>"))
        left.addWidget(self.catalog, 1)
        left.addWidget(self.repo_field)

        self.title = QLabel("")
        self.title.setWordWrap(True)
        # What the memory column assumes, and what a model downloaded or used from here gets.
        self.n_ctx = QComboBox()
        for size in CONTEXT_SIZES:
            self.n_ctx.addItem(f"{size:,} tokens", size)
        self.n_ctx.setAccessibleName("Context size")
        self.n_ctx.setToolTip("Tokens the model keeps in mind; the memory column follows it")
        self.gpu = QSlider(Qt.Orientation.Horizontal)
        self.gpu.setRange(0, MAX_GPU_LAYERS)
        self.gpu.setAccessibleName("GPU layers")
        self.gpu_value = QLabel("0 layers")
        self.gpu.valueChanged.connect(lambda v: self.gpu_value.setText(f"{v} layers" if v < MAX_GPU_LAYERS else "all"))
        self.n_ctx.currentIndexChanged.connect(self._estimate_changed)
        self.gpu.valueChanged.connect(self._estimate_changed)
        assumptions = QHBoxLayout()
        assumptions.addWidget(QLabel("Context:"))
        assumptions.addWidget(self.n_ctx)
        assumptions.addSpacing(12)
        assumptions.addWidget(QLabel("GPU layers:"))
        assumptions.addWidget(self.gpu, 1)
        assumptions.addWidget(self.gpu_value)
        self.files = QTableWidget(0, 5)
        self.files.setHorizontalHeaderLabels(["Text model", "Format", "Size", "Memory", "This computer"])
        header = self.files.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # long file names elide in the middle
        header.setMinimumSectionSize(40)
        self.files.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.files.setWordWrap(False)
        self.files.verticalHeader().hide()
        self.files.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.files.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.files.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.files.setAccessibleName("Formats of this model")
        self.files.itemSelectionChanged.connect(self._selection_changed)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.projector = QComboBox()
        self.projector.setAccessibleName("Vision projector")
        self.projector.setToolTip("The vision projector (mmproj): F16 keeps images read best")
        self.download_button = QPushButton("Download")
        self.download_button.setAccessibleName("Download")
        self.download_button.setToolTip("Download the chosen text model and projector into the Hugging Face cache")
        self.download_button.clicked.connect(self._download)
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Download progress")
        self.progress.hide()
        self.progress_text = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel download")
        self.cancel_button.setToolTip("Stop the download; it continues from here next time")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.cancel_button.hide()
        self.notice = QLabel("")
        self.notice.setWordWrap(True)
        self.notice.setObjectName("meterNote")
        choose = QHBoxLayout()
        choose.addWidget(QLabel("Projector:"))
        choose.addWidget(self.projector, 1)
        choose.addWidget(self.download_button)
        progress = QHBoxLayout()
        progress.addWidget(self.progress, 1)
        progress.addWidget(self.progress_text)
        progress.addWidget(self.cancel_button)
        right = QVBoxLayout()
        right.addWidget(self.title)
        right.addLayout(assumptions)
        right.addWidget(self.files, 1)
        right.addWidget(self.summary)
        right.addLayout(choose)
        right.addLayout(progress)
        right.addWidget(self.notice)

        installed_box = QGroupBox("On this computer")
        self.installed = QListWidget()
        self.installed.setAccessibleName("Installed models")
        self.installed.setToolTip("Models ready to use, downloaded or imported, and files found that cannot be used")
        use = QPushButton("Use")
        use.setAccessibleName("Use this model")
        use.setToolTip("Switch to the selected model")
        use.clicked.connect(lambda: self._with_installed(self.use_requested))
        remove = QPushButton("Remove")
        remove.setAccessibleName("Remove this model")
        remove.setToolTip("Delete a downloaded model's files, or forget an imported one")
        remove.clicked.connect(lambda: self._with_installed(self.remove_requested))
        self.import_button = QPushButton("Import from disk…")
        self.import_button.setAccessibleName("Import from disk")
        self.import_button.setToolTip("Add a text GGUF and its mmproj that you already have")
        self.import_button.clicked.connect(self.choose_import)
        self.connect_button = QPushButton("Connect to a server…")
        self.connect_button.setAccessibleName("Connect to a server")
        self.connect_button.setToolTip("Use a model that llama-server, vLLM, Ollama or another SmolChat serves")
        self.connect_button.clicked.connect(self.connect_requested)
        buttons = QHBoxLayout()
        for b in (use, remove, self.import_button, self.connect_button):
            buttons.addWidget(b)
        installed_layout = QVBoxLayout(installed_box)
        installed_layout.addWidget(self.installed)
        installed_layout.addLayout(buttons)

        top = QHBoxLayout()
        top.addLayout(left, 1)
        top.addLayout(right, 3)
        layout = QVBoxLayout(self)
        layout.addLayout(top, 3)
        layout.addWidget(installed_box, 1)
        self._rows: list[dict] = []
        self._downloading: str | None = None  # the text file being downloaded

    # -- filled by the controller ----------------------------------------------------------

    def show_assumptions(self, n_ctx: int, n_gpu_layers: int, gpu_note: str | None) -> None:
        """The context and GPU layers the memory column is for; ``gpu_note``: why the slider is
        off (a build without GPU support), or None."""
        self.n_ctx.blockSignals(True)
        self.gpu.blockSignals(True)
        index = self.n_ctx.findData(n_ctx)
        if index < 0:
            self.n_ctx.addItem(f"{n_ctx:,} tokens", n_ctx)
            index = self.n_ctx.count() - 1
        self.n_ctx.setCurrentIndex(index)
        self.gpu.setValue(MAX_GPU_LAYERS if n_gpu_layers < 0 else min(n_gpu_layers, MAX_GPU_LAYERS))
        self.gpu_value.setText(f"{self.gpu.value()} layers" if self.gpu.value() < MAX_GPU_LAYERS else "all")
        self.gpu.setEnabled(gpu_note is None)
        self.gpu.setToolTip(gpu_note or "Layers of the text model on the graphics card; the memory column follows it")
        self.n_ctx.blockSignals(False)
        self.gpu.blockSignals(False)

    def assumptions(self) -> tuple[int, int]:
        layers = self.gpu.value()
        return int(self.n_ctx.currentData()), -1 if layers >= MAX_GPU_LAYERS else layers

    def _estimate_changed(self, *_: object) -> None:
        self.estimate_changed.emit(*self.assumptions())

    def show_catalog(self, entries: list[tuple[str, str]], current: str | None) -> None:
        self.catalog.blockSignals(True)
        self.catalog.clear()
        for repo, label in entries:
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, repo)
            item.setToolTip(repo)
            self.catalog.addItem(item)
            if repo == current:
                self.catalog.setCurrentItem(item)
        self.catalog.blockSignals(False)

    def show_listing(
        self,
        title: str,
        rows: list[dict],
        projectors: list[tuple[str, str]],
        default_projector: str | None,
        note: str = "",
    ) -> None:
        """``rows``: dicts with path, format, size, memory, fit, message, summary, default."""
        self.title.setText(title)
        self.notice.setText(note)
        self._rows = rows
        self.files.setRowCount(len(rows))
        colours = theme.current()
        for r, row in enumerate(rows):
            name = ("★ " if row["default"] else "") + row["path"]
            here = ("✓ downloaded · " if row.get("downloaded") else "") + row["fit"]
            cells = [name, row["format"], row["size"], row["memory"], here]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(row["message"] if c == 4 else f"{row['path']}\n{row['summary']}")
                if c == 4:
                    item.setForeground(QBrush(QColor(colours.fit(row["fit"]))))
                self.files.setItem(r, c, item)
            if row["default"]:
                self.files.selectRow(r)
        self.projector.clear()
        for path, label in projectors:
            self.projector.addItem(label, path)
        if default_projector:
            self.projector.setCurrentIndex(self.projector.findData(default_projector))
        self.download_button.setEnabled(bool(rows) and bool(projectors))
        self._selection_changed()

    def show_unreachable(self, message: str) -> None:
        self.title.setText("")
        self.files.setRowCount(0)
        self.notice.setText(message + " You can import model files from disk instead.")
        self.download_button.setEnabled(False)
        self.import_button.setFocus()

    def show_installed(self, names: list[str], current: str | None, unusable: list[tuple[str, str, str]]) -> None:
        """``unusable``: (model, path, reason) of files found that cannot be used; shown, not offered."""
        self.installed.clear()
        for name in names:
            item = QListWidgetItem(("● " if name == current else "") + name)
            item.setData(Qt.ItemDataRole.UserRole, name)
            self.installed.addItem(item)
        for model, path, reason in unusable:
            item = QListWidgetItem(f"✕ {model} — cannot be used: {reason}")
            item.setToolTip(f"{path}\n{reason}")
            item.setForeground(QBrush(QColor(theme.current().error)))
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)  # not selectable: there is nothing to use
            self.installed.addItem(item)

    def mark_downloading(self, text_file: str) -> None:
        """The row whose progress the download reports."""
        self._downloading = text_file

    def show_progress(self, done: int, total: int, text: str) -> None:
        """A download's progress: in its row of the table, and in the bar below it."""
        row = next((r for r, info in enumerate(self._rows) if info["path"] == self._downloading), None)
        if row is not None and self.files.item(row, 4) is not None:
            self.files.item(row, 4).setText(f"⬇ {int(100 * done / total) if total else 0}%")
        self.progress.show()
        self.cancel_button.show()
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(1000 * done / total) if total else 0)
        self.progress_text.setText(text)
        self.download_button.setEnabled(False)

    def download_ended(self, message: str) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self.progress_text.setText("")
        self.notice.setText(message)
        self.download_button.setEnabled(True)

    def show_notice(self, text: str) -> None:
        """What became of the last thing asked for, or why it cannot be done."""
        self.notice.setText(text)

    def selected_text_file(self) -> str | None:
        rows = self.files.selectionModel().selectedRows() if self.files.selectionModel() else []
        return self._rows[rows[0].row()]["path"] if rows else None

    # -- events ----------------------------------------------------------------------------

    def _selection_changed(self) -> None:
        chosen = self.selected_text_file()
        row = next((r for r in self._rows if r["path"] == chosen), None)
        self.summary.setText(f"{row['format']}: {row['summary']} {row['message']}" if row else "")

    def _download(self) -> None:
        text = self.selected_text_file()
        if text and self.projector.currentData():
            self.download_requested.emit(text, self.projector.currentData())

    def _with_installed(self, signal: Signal) -> None:
        item = self.installed.currentItem()
        name = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if name is not None:  # None: a file that cannot be used
            signal.emit(name)

    def choose_import(self) -> None:
        """Ask for a text GGUF, then its mmproj, and import the pair."""
        text, _ = QFileDialog.getOpenFileName(self, "The text model (GGUF)", "", "GGUF (*.gguf)")
        if not text:
            return
        mmproj, _ = QFileDialog.getOpenFileName(self, "Its vision projector (mmproj GGUF)", "", "GGUF (*.gguf)")
        if mmproj:
            self.import_requested.emit(text, mmproj)
