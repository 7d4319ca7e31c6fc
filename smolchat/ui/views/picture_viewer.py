"""A picture at the size of the screen: what a thumbnail stands for, decoded off the UI thread."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import QDialog, QLabel, QScrollArea, QVBoxLayout, QWidget

from smolchat.ui.workers.thumbnails import thumbnail_loader


class PictureViewer(QDialog):
    """Esc or a click closes it."""

    def __init__(self, path: Path, name: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.setWindowTitle(name or path.name)
        self.setAccessibleName(f"Picture {name or path.name}, full size")
        self.picture = QLabel("Opening…")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setWidget(self.picture)
        area.setFrameShape(QScrollArea.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(area)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.close)
        screen = (parent.screen() if parent else None) or QGuiApplication.primaryScreen()
        room = screen.availableGeometry().size() * 0.9
        self.resize(room.width(), room.height())
        self._ratio = self.devicePixelRatioF()
        side = round(max(room.width(), room.height()) * self._ratio)
        thumbnail_loader().request(path, side, self, self._show)

    def _show(self, image: QImage) -> None:
        if image.isNull():
            self.picture.setText(f"{self.path.name} could not be read as a picture.")
            return
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(self._ratio)
        self.picture.setPixmap(pixmap)
        self.picture.setToolTip(f"{image.width()} × {image.height()} pixels as shown")

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.close()
