"""A picture file in a square of a given size: a placeholder at once, the picture when a worker
thread has decoded it at that size (the UI thread never decodes a photo)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QLabel, QWidget

from smolchat.ui.workers.thumbnails import thumbnail_loader


class Picture(QLabel):
    ready = Signal(bool)  # True: the picture is shown; False: the file could not be read as one
    clicked = Signal(Path)

    def __init__(self, path: Path, side: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path
        # The square is kept whatever the picture's shape, so nothing moves when it arrives.
        self.setFixedSize(side, side)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setText("…")
        self.setToolTip(path.name)
        self.setAccessibleName(f"Picture {path.name}")
        self._ratio = self.devicePixelRatioF()  # sharp on high-density screens
        thumbnail_loader().request(path, round(side * self._ratio), self, self._show)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(event.position().toPoint()):
            self.clicked.emit(self.path)
        super().mouseReleaseEvent(event)

    def _show(self, image: QImage) -> None:
        if image.isNull():
            self.setText("?")
            self.setToolTip(f"{self.path.name} could not be read as a picture.")
            self.ready.emit(False)
            return
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(self._ratio)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setPixmap(pixmap)
        self.ready.emit(True)
