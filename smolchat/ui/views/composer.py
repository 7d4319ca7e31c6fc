"""The composer: the message being written, its images, Send and Stop, and the context meter.

Images arrive by drag-and-drop (files, or picture data from a browser), by paste, or from a
file dialog. The view offers them to the controller, which checks and keeps each one and
attaches the kept file (a thumbnail with its cost and an x, named as the user's file is), or
refuses it with a message naming the file.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QImage, QKeyEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from smolchat.ui.views.picture import Picture

THUMB = 72
IMAGE_FILTER = (
    "Pictures, clips and PDFs (*.png *.jpg *.jpeg *.webp *.gif *.bmp *.tif *.tiff"
    " *.mp4 *.m4v *.mov *.webm *.mkv *.avi *.pdf);;"
    "Images (*.png *.jpg *.jpeg *.webp *.gif *.bmp *.tif *.tiff);;"
    "Clips (*.mp4 *.m4v *.mov *.webm *.mkv *.avi *.gif *.webp);;PDF documents (*.pdf)"
)


class MessageEdit(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line, Esc stops the answer."""

    send = Signal()
    escape = Signal()
    edit_last = Signal()  # Up in an empty box: take the last question back to change it
    pasted_image = Signal(QImage)
    pasted_files = Signal(QMimeData)
    dragging = Signal(bool)  # a file is dragged over the box (True), or left or was dropped

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if (
            event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.send.emit()
            return
        if event.key() == Qt.Key.Key_Escape:
            self.escape.emit()
            return
        if event.key() == Qt.Key.Key_Up and not event.modifiers() and not self.toPlainText():
            self.edit_last.emit()
            return
        super().keyPressEvent(event)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        super().dragEnterEvent(event)
        self.dragging.emit(True)

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        super().dragLeaveEvent(event)
        self.dragging.emit(False)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.dragging.emit(False)
        super().dropEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:  # noqa: N802
        return source.hasImage() or source.hasUrls() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:  # noqa: N802
        if source.hasImage():
            self.pasted_image.emit(QImage(source.imageData()))
        elif source.hasUrls():
            self.pasted_files.emit(source)
        else:
            super().insertFromMimeData(source)


class Thumbnail(QWidget):
    """An attached image: the picture (click to see it full size), what it costs, how much of it
    is read while the question is typed (then "ready"), and an x to remove it."""

    removed = Signal(Path)
    opened = Signal(Path)

    def __init__(self, path: Path, name: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.name = name or path.name  # the user's name for it; ``path`` may be a kept copy
        self.picture = Picture(path, THUMB)  # decoded in a worker thread, at this size
        self.cost = QLabel("")
        self.cost.setObjectName("thumbnailCost")
        self.cost.setWordWrap(True)
        self.picture.setCursor(Qt.CursorShape.PointingHandCursor)
        self.picture.setToolTip(f"{self.name}: click to see it full size")
        self.picture.clicked.connect(lambda _: self.opened.emit(self.path))
        self.reading = QProgressBar()
        self.reading.setRange(0, 0)  # busy until the engine says how many tiles it reads
        self.reading.setTextVisible(False)
        self.reading.setMaximumHeight(4)
        self.reading.setAccessibleName(f"Reading {self.name}")
        self.reading.hide()
        self.state = QLabel("")
        self.state.setObjectName("thumbnailCost")
        self.tiles: int | None = None  # how many tiles it costs, once counted
        self.ready = False  # read ahead of Send
        self._cost, self._wait = "", ""
        remove = QToolButton()
        remove.setText("×")
        remove.setAccessibleName(f"Remove {self.name}")
        remove.setToolTip(f"Remove {self.name}")
        remove.clicked.connect(lambda: self.removed.emit(self.path))
        top = QHBoxLayout()
        top.addWidget(self.picture)
        top.addWidget(remove, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.reading)
        layout.addWidget(self.state)
        layout.addWidget(self.cost)
        self.setFixedWidth(THUMB + 40)
        self.setAccessibleName(f"Attached image {self.name}")

    def set_cost(self, text: str, wait: str) -> None:
        self._cost, self._wait = text, wait
        self._show_cost()

    def _show_cost(self) -> None:
        self.cost.setText(self._cost + (f" · {self._wait}" if self._wait and not self.ready else ""))

    def set_reading(self, reading: bool) -> None:
        self.ready = False
        self.reading.setVisible(reading)
        self.reading.setToolTip("Reading the image while you type…" if reading else "")
        if reading:
            self.reading.setRange(0, 0)
            self.state.setText("reading…")

    def set_progress(self, done: int, total: int) -> None:
        """``done`` of its ``total`` tiles read."""
        self.reading.show()
        self.reading.setRange(0, max(total, 1))
        self.reading.setValue(done)
        self.state.setText(f"reading {done}/{total} tiles")

    def set_ready(self) -> None:
        """Read: Send costs only the question's text now."""
        self.ready = True
        self._show_cost()  # read: no wait left at Send
        self.reading.hide()
        self.state.setText("✓ ready")
        self.state.setToolTip("Read while you typed: sending costs only the text now")

    def clear_state(self) -> None:
        self.ready = False
        self.reading.hide()
        self.state.setText("")


class Composer(QWidget):
    send_requested = Signal(str, list)  # text, image paths
    stop_requested = Signal()
    images_changed = Signal(list)  # image paths now attached
    files_offered = Signal(list)  # paths the user dropped, pasted or chose: not checked yet
    image_pasted = Signal(QImage)  # picture data pasted or dropped (from a browser): to keep as a file
    refused = Signal(str)  # a message for the user (the window shows it)
    text_changed = Signal()
    edit_last_requested = Signal()
    picture_opened = Signal(Path)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)  # the drop zone's colour
        self.setAcceptDrops(True)
        self._images: list[Path] = []
        self._thumbs: dict[Path, Thumbnail] = {}

        self.strip = QHBoxLayout()
        self.strip.addStretch(1)
        self.edit = MessageEdit()
        self.edit.setPlaceholderText("Ask about a picture, a clip or a PDF… (drop or paste them here; Enter sends)")
        self.edit.setAccessibleName("Message")
        self.edit.setToolTip("Enter sends, Shift+Enter starts a new line, Esc stops the answer")
        self.edit.setMaximumHeight(110)
        self.edit.send.connect(self._send)
        self.edit.escape.connect(self.stop_requested)
        self.edit.pasted_image.connect(self.image_pasted)
        self.edit.pasted_files.connect(self.take_mime)
        self.edit.textChanged.connect(self.text_changed)
        self.edit.edit_last.connect(self.edit_last_requested)
        self.edit.dragging.connect(self.set_drop_highlight)
        self.drop_hint = QLabel("Drop to attach: pictures, clips and PDFs")
        self.drop_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.drop_hint.hide()

        self.attach_button = QPushButton("Add image…")
        self.attach_button.setAccessibleName("Add image")
        self.attach_button.setToolTip("Choose pictures, clips or PDFs to ask about")
        self.attach_button.clicked.connect(self._choose_files)
        self.send_button = QPushButton("Send")
        self.send_button.setAccessibleName("Send")
        self.send_button.setToolTip("Send the message (Enter)")
        self.send_button.clicked.connect(self._send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName("Stop")
        self.stop_button.setToolTip("Stop the answer (Esc); what was written stays")
        self.stop_button.clicked.connect(self.stop_requested)
        self.stop_button.hide()

        self.meter = QProgressBar()
        self.meter.setAccessibleName("Context used")
        self.meter.setTextVisible(True)
        self.meter.setMaximumHeight(16)
        self.meter_note = QLabel("")
        self.meter_note.setWordWrap(True)
        self.meter_note.setObjectName("meterNote")

        buttons = QHBoxLayout()
        buttons.addWidget(self.attach_button)
        buttons.addWidget(self.meter, 1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.drop_hint)
        layout.addLayout(self.strip)
        layout.addWidget(self.edit)
        layout.addLayout(buttons)
        layout.addWidget(self.meter_note)

    # -- what is attached ------------------------------------------------------------------

    @property
    def images(self) -> list[Path]:
        return list(self._images)

    def thumbnail(self, path: Path) -> Thumbnail:
        return self._thumbs[path]

    def add_files(self, files: list[Path]) -> None:
        """Offer files to the controller, which attaches the pictures among them."""
        if files:
            self.files_offered.emit([Path(f) for f in files])

    def attach(self, pictures: list[tuple[Path, str]]) -> None:
        """Show checked pictures as thumbnails: each a file to send and the name to show for it."""
        added = False
        for path, name in pictures:
            if path in self._images:
                continue
            self._images.append(path)
            thumb = Thumbnail(path, name)
            thumb.removed.connect(self.remove_image)
            thumb.opened.connect(self.picture_opened)
            self._thumbs[path] = thumb
            self.strip.insertWidget(self.strip.count() - 1, thumb)
            added = True
        if added:
            self.images_changed.emit(self.images)

    def remove_image(self, path: Path) -> None:
        if path in self._images:
            self._images.remove(path)
            self._thumbs.pop(path).deleteLater()
            self.images_changed.emit(self.images)

    def clear(self) -> None:
        self.edit.clear()
        for path in list(self._images):
            self._images.remove(path)
            self._thumbs.pop(path).deleteLater()

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)

    def focus(self) -> None:
        """Put the cursor in the message box."""
        self.edit.setFocus()

    def refuse(self, reason: str) -> None:
        """Say why something offered was not attached."""
        self.refused.emit(reason)

    # -- state the controller sets ---------------------------------------------------------

    def set_cost(self, path: Path, text: str, wait: str = "") -> None:
        """What the attachment costs; ``wait``: how long reading it takes, shown until it is read."""
        if path in self._thumbs:
            self._thumbs[path].set_cost(text, wait)

    def set_tiles(self, path: Path, tiles: int) -> None:
        if path in self._thumbs:
            self._thumbs[path].tiles = tiles

    def set_reading(self, reading: bool) -> None:
        """Reading starts (the engine reads the attachments while the question is typed), or
        stops: finished (``set_ready`` says so) or cancelled."""
        for thumb in self._thumbs.values():
            if reading:
                thumb.set_reading(True)
            elif not thumb.ready:
                thumb.clear_state()

    def set_reading_progress(self, done: int, total: int) -> None:
        """The engine has read ``done`` of the ``total`` tiles it had to. What it had to read
        are the newest attachments (those before were read already): shown on each thumbnail."""
        thumbs = list(self._thumbs.values())
        counts = [t.tiles for t in thumbs]
        if None in counts:  # not counted yet: each shows the whole
            for thumb in thumbs:
                thumb.set_progress(done, total)
            return
        reading, left = [], total
        for thumb in reversed(thumbs):
            if left <= 0:
                thumb.set_ready()
                continue
            reading.insert(0, thumb)
            left -= thumb.tiles or 0
        for thumb in reading:
            share = thumb.tiles or 0
            read = max(0, min(done, share))
            done -= read
            if read < share:
                thumb.set_progress(read, share)
            else:
                thumb.set_ready()

    def set_ready(self) -> None:
        """Every attachment is read: Send costs only the text."""
        for thumb in self._thumbs.values():
            thumb.set_ready()

    def set_drop_highlight(self, shown: bool) -> None:
        """While a file is dragged over the window: the composer becomes the drop zone."""
        if self.property("dragging") == shown:
            return
        self.setProperty("dragging", shown)
        self.drop_hint.setVisible(shown)
        self.style().unpolish(self)
        self.style().polish(self)

    def set_busy(self, busy: bool) -> None:
        """While an answer is written: Stop instead of Send."""
        self.stop_button.setVisible(busy)
        self.send_button.setVisible(not busy)

    def set_meter(self, used: int, n_ctx: int, level: str, note: str, tooltip: str, *, estimate: bool = False) -> None:
        """``estimate``: counted without the model's vocabulary (a server's model)."""
        self.meter.setRange(0, max(n_ctx, 1))
        self.meter.setValue(min(used, n_ctx))
        self.meter.setFormat(f"{'about ' if estimate else ''}{used:,} / {n_ctx:,} tokens")
        self.meter.setProperty("level", level)  # ok / near / over: the style sheet colours it
        self.meter.setToolTip(tooltip)
        self.meter.style().unpolish(self.meter)
        self.meter.style().polish(self.meter)
        self.meter_note.setText(note)

    # -- events ----------------------------------------------------------------------------

    def _send(self) -> None:
        text = self.edit.toPlainText().strip()
        if text or self._images:
            self.send_requested.emit(text, self.images)

    def _choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add pictures, clips or PDFs", "", IMAGE_FILTER)
        self.add_files([Path(f) for f in files])

    def take_mime(self, mime: QMimeData) -> None:
        local = [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
        if local:
            self.add_files(local)
        elif mime.hasImage():
            self.image_pasted.emit(QImage(mime.imageData()))
        else:
            self.refuse("Only pictures, clips and PDFs can be added here.")

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()
            self.set_drop_highlight(True)

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self.set_drop_highlight(False)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.set_drop_highlight(False)
        self.take_mime(event.mimeData())
        event.acceptProposedAction()
