"""A model's settings: GPU layers, context size, image detail, exact vision, threads, sampling, system prompt."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from smolchat.budget.detail import Detail
from smolchat.media import MAX_FRAMES
from smolchat.settings import ModelSettings


class SettingsDialog(QDialog):
    def __init__(
        self,
        model_name: str,
        current: ModelSettings,
        *,
        max_gpu_layers: int,
        gpu_note: str | None,
        largest_n_ctx: int | None,
        n_ctx_train: int,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Settings for {model_name}")
        self.current = current
        form = QFormLayout()

        self.gpu = QSlider(Qt.Orientation.Horizontal)
        self.gpu.setRange(0, max_gpu_layers)
        self.gpu.setValue(min(current.n_gpu_layers, max_gpu_layers))
        self.gpu.setAccessibleName("GPU layers")
        self.gpu_value = QLabel()
        self.gpu.valueChanged.connect(lambda v: self.gpu_value.setText(f"{v} of {max_gpu_layers}"))
        self.gpu_value.setText(f"{self.gpu.value()} of {max_gpu_layers}")
        gpu_row = QHBoxLayout()
        gpu_row.addWidget(self.gpu, 1)
        gpu_row.addWidget(self.gpu_value)
        self.gpu_note = QLabel(gpu_note or "")
        self.gpu_note.setWordWrap(True)
        if gpu_note and "no GPU support" in gpu_note:
            self.gpu.setEnabled(False)
        self.gpu.setToolTip(gpu_note or "Layers of the text model to run on the graphics card")
        form.addRow("GPU layers", _stack(gpu_row, self.gpu_note))

        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(256, max(n_ctx_train, 256))
        self.n_ctx.setSingleStep(256)
        self.n_ctx.setValue(current.n_ctx)
        self.n_ctx.setAccessibleName("Context size")
        self.n_ctx.setToolTip("Tokens the model can keep in mind: history, images and the reply")
        fits = QLabel(f"Up to {largest_n_ctx:,} tokens fit in the memory that is free." if largest_n_ctx else "")
        form.addRow("Context size", _stack(self.n_ctx, fits))

        self.detail = QComboBox()
        for d in Detail:
            self.detail.addItem(d.label, d.value)
        self.detail.setCurrentIndex(self.detail.findData(current.detail))
        self.detail.setAccessibleName("Image detail")
        self.detail.setToolTip("Low: fastest, 2 tiles · Balanced: about 2x2 tiles · Full: up to 4x4 tiles")
        form.addRow("Image detail", self.detail)

        self.exact_vision = QCheckBox("Exact vision")
        self.exact_vision.setChecked(current.exact_vision)
        self.exact_vision.setAccessibleName("Exact vision")
        self.exact_vision.setToolTip(
            "Read images in full precision (F32/F16) even where 8-bit vision measured faster here "
            "and agreed with it: slower, and the same answers as far as SmolChat has measured"
        )
        form.addRow("", self.exact_vision)

        self.video_max_frames = QSpinBox()
        self.video_max_frames.setRange(1, MAX_FRAMES)
        self.video_max_frames.setValue(current.video_max_frames)
        self.video_max_frames.setAccessibleName("Frames per clip")
        self.video_max_frames.setToolTip(
            "Most frames read from a clip, one a second: each is one tile, read while you type"
        )
        form.addRow("Frames per clip", self.video_max_frames)

        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("Fastest measured")
        self.threads.setValue(current.threads or 0)
        self.threads.setAccessibleName("Threads")
        self.threads.setToolTip("CPU threads for writing the answer (0: the count measured fastest here)")
        form.addRow("Threads", self.threads)

        self.temperature = _double(
            current.temperature,
            0.0,
            2.0,
            0.05,
            "Temperature",
            "0 always picks the likeliest word; higher is more varied",
        )
        form.addRow("Temperature", self.temperature)
        self.top_p = _double(current.top_p, 0.05, 1.0, 0.05, "Top-p", "Only the likeliest words adding up to this")
        form.addRow("Top-p", self.top_p)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(16, 32768)
        self.max_tokens.setValue(current.max_tokens)
        self.max_tokens.setAccessibleName("Longest reply")
        self.max_tokens.setToolTip("Tokens kept free for the reply, and its longest length")
        form.addRow("Longest reply", self.max_tokens)
        self.system = QPlainTextEdit(current.system_prompt)
        self.system.setAccessibleName("System prompt")
        self.system.setToolTip("Instructions the model gets before every conversation")
        self.system.setMaximumHeight(90)
        form.addRow("System prompt", self.system)

        self.reload_note = QLabel("")
        self.reload_note.setObjectName("meterNote")
        for signal in (
            self.gpu.valueChanged,
            self.n_ctx.valueChanged,
            self.detail.currentIndexChanged,
            self.threads.valueChanged,
            self.exact_vision.toggled,
            self.video_max_frames.valueChanged,
        ):
            signal.connect(self._update_note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.reload_note)
        layout.addWidget(buttons)

    def chosen(self) -> ModelSettings:
        return replace(
            self.current,
            n_gpu_layers=self.gpu.value(),
            n_ctx=self.n_ctx.value(),
            detail=self.detail.currentData(),
            exact_vision=self.exact_vision.isChecked(),
            threads=self.threads.value() or None,
            video_max_frames=self.video_max_frames.value(),
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            max_tokens=self.max_tokens.value(),
            system_prompt=self.system.toPlainText(),
        )

    def _update_note(self) -> None:
        reload = self.chosen().needs_reload(self.current)
        self.reload_note.setText("The model will load again to apply these changes." if reload else "")


def _double(value: float, low: float, high: float, step: float, name: str, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setValue(value)
    box.setAccessibleName(name)
    box.setToolTip(tip)
    return box


def _stack(first, second: QWidget) -> QWidget:
    holder = QWidget()
    column = QVBoxLayout(holder)
    column.setContentsMargins(0, 0, 0, 0)
    if isinstance(first, QWidget):
        column.addWidget(first)
    else:
        column.addLayout(first)
    column.addWidget(second)
    return holder
