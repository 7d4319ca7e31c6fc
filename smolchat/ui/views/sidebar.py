"""The conversation list: new, search (titles and what was said), grouped by day, rename in
place and delete from a context menu (the window offers Undo)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from smolchat.store.days import day_group
from smolchat.ui import theme

if TYPE_CHECKING:
    from smolchat.store import Conversation

_ID = Qt.ItemDataRole.UserRole


class Sidebar(QWidget):
    new_requested = Signal()
    selected = Signal(int)  # conversation id
    rename_requested = Signal(int, str)
    delete_requested = Signal(int)
    search_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.new_button = QPushButton("New chat")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_button.clicked.connect(self.new_requested)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search conversations")
        self.search.setAccessibleName("Search conversations")
        self.search.setToolTip("Show only conversations whose title or messages contain this")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.search_changed)
        self.list = QListWidget()
        self.list.setAccessibleName("Conversations")
        self.list.setObjectName("conversations")
        self.list.setToolTip("Your conversations; right-click to rename or delete, F2 to rename")
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)  # F2, or Rename in the menu
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.itemChanged.connect(self._edited)
        top = QHBoxLayout()
        top.addWidget(self.new_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.search)
        layout.addWidget(self.list)
        self._filling = False
        self._titles: dict[int, str] = {}

    def search_text(self) -> str:
        return self.search.text()

    def show_conversations(
        self, conversations: list[Conversation], current: int | None, now: float | None = None
    ) -> None:
        """Newest first, under a heading for each day (Today, Yesterday, …)."""
        self._filling = True
        self.list.clear()
        self._titles = {}
        now = time.time() if now is None else now
        heading = None
        for c in conversations:
            group = day_group(c.updated_at, now)
            if group != heading:
                heading = group
                self.list.addItem(_heading(group))
            item = QListWidgetItem(c.title)
            item.setData(_ID, c.id)
            item.setToolTip(c.title)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self._titles[c.id] = c.title
            self.list.addItem(item)
            if c.id == current:
                self.list.setCurrentItem(item)
        self._filling = False

    def headings(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count()) if self.list.item(i).data(_ID) is None]

    def item_for(self, cid: int) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if self.list.item(i).data(_ID) == cid:
                return self.list.item(i)
        return None

    def _current_changed(self, item: QListWidgetItem | None) -> None:
        if item is not None and not self._filling and item.data(_ID) is not None:
            self.selected.emit(item.data(_ID))

    def _edited(self, item: QListWidgetItem) -> None:
        """A title typed in place."""
        cid = item.data(_ID)
        if self._filling or cid is None:
            return
        title = item.text().strip()
        if title and title != self._titles.get(cid):
            self._titles[cid] = title
            self.rename_requested.emit(cid, title)
        elif not title:  # an empty title is not a title: the old one comes back
            self._filling = True
            item.setText(self._titles.get(cid, ""))
            self._filling = False

    def menu_for(self, item: QListWidgetItem) -> QMenu:
        """Rename (in place) and Delete (with Undo in the window) for one conversation."""
        menu = QMenu(self)
        rename = menu.addAction("Rename")
        rename.triggered.connect(lambda: self.list.editItem(item))
        delete = menu.addAction("Delete")
        cid = item.data(_ID)
        delete.triggered.connect(lambda: self.delete_requested.emit(cid))
        return menu

    def _menu(self, position: QPoint) -> None:
        item = self.list.itemAt(position)
        if item is None or item.data(_ID) is None:
            return
        self.menu_for(item).exec(self.list.mapToGlobal(position))


def _heading(text: str) -> QListWidgetItem:
    item = QListWidgetItem(text)
    item.setFlags(Qt.ItemFlag.NoItemFlags)  # not selectable: the arrow keys pass over it
    font = QFont()
    font.setBold(True)
    font.setPointSizeF(max(font.pointSizeF() * 0.85, 7))
    item.setFont(font)
    item.setForeground(QColor(theme.current().muted))
    return item
