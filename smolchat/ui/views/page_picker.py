"""Which pages of a PDF to send: the pages as thumbnails to tick, or a list typed (1-3,5).

Each page is a picture the model reads, so a long document is never sent whole by accident.
Thumbnails are rendered in the thumbnail threads, a page at a time, as they are shown."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
)

from smolchat.ui.workers.thumbnails import thumbnail_loader

PAGE_THUMB = 96
SHOWN_PAGES = 200  # thumbnails for the first pages; the list field reaches every page


class PagePicker(QDialog):
    def __init__(self, path: Path, name: str, count: int, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Choose pages of {name}")
        self.count = count
        note = QLabel(
            f"{name} has {count} pages, and each page is a picture the model reads. "
            "Tick the pages to send, or type them (for example 1-3,5)."
        )
        note.setWordWrap(True)
        self.pages = QListWidget()
        self.pages.setViewMode(QListView.ViewMode.IconMode)
        self.pages.setIconSize(QSize(PAGE_THUMB, PAGE_THUMB))
        self.pages.setResizeMode(QListView.ResizeMode.Adjust)
        self.pages.setMovement(QListView.Movement.Static)
        self.pages.setAccessibleName("Pages")
        ratio = self.devicePixelRatioF()
        for number in range(1, min(count, SHOWN_PAGES) + 1):
            item = QListWidgetItem(f"Page {number}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if number <= 3 else Qt.CheckState.Unchecked)
            self.pages.addItem(item)
            thumbnail_loader().request(
                path, round(PAGE_THUMB * ratio), self, lambda image, item=item: _show(item, image, ratio), page=number
            )
        self.pages.itemChanged.connect(self._ticked)
        self.typed = QLineEdit(self._ticked_spec())
        self.typed.setAccessibleName("Pages to send")
        self.typed.setPlaceholderText("for example 1-3,5")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(self.pages, 1)
        layout.addWidget(self.typed)
        layout.addWidget(buttons)
        self.resize(620, 480)

    def spec(self) -> str:
        """The pages chosen, as a list the PDF reader takes (1-3,5)."""
        return self.typed.text().strip()

    def _ticked(self, _item=None) -> None:
        self.typed.setText(self._ticked_spec())

    def _ticked_spec(self) -> str:
        ticked = [i + 1 for i in range(self.pages.count()) if self.pages.item(i).checkState() == Qt.CheckState.Checked]
        return page_list(ticked)


def page_list(pages: list[int]) -> str:
    """1,2,3,5 -> "1-3,5"."""
    runs: list[list[int]] = []
    for page in sorted(pages):
        if runs and page == runs[-1][1] + 1:
            runs[-1][1] = page
        else:
            runs.append([page, page])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


def _show(item: QListWidgetItem, image: QImage, ratio: float) -> None:
    if not image.isNull():
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(ratio)
        item.setIcon(QIcon(pixmap))
