"""Pictures decoded at the size they are shown, in worker threads.

A photo is decoded straight to thumbnail size (JPEG scales while it decodes), so a conversation
with twenty 12-megapixel photos opens without the window freezing. Results come back to the UI
thread as QImages; a result for a widget deleted meanwhile (the user switched conversation) is
dropped, and a picture whose widget is gone before its turn is not decoded at all.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QFile, QIODevice, QObject, QRect, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter

from smolchat.errors import SmolChatError
from smolchat.media.attach import media_kind
from smolchat.media.pdf import page_count, render_pages
from smolchat.media.video import preview, timestamp

# Opening never waits on a FIFO (O_NONBLOCK); Windows has neither flag's need nor the name.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def decode_thumbnail(path: Path, side: int, page: int = 1) -> QImage:
    """The picture at ``path`` scaled down to fit a ``side`` x ``side`` square (never enlarged),
    or a null QImage when it cannot be read. Only regular files are read: a FIFO would block and a
    device such as /dev/zero never ends. A clip shows four of its frames with their times; a PDF
    its first four pages, numbered (or just ``page``, when one is asked for)."""
    try:
        kind = media_kind(path) if path.is_file() else None
        if kind == "video":
            return contact_sheet([(timestamp(t), frame) for t, frame in preview(path, 4, side // 2)], side)
        if kind == "pages":
            count = 1 if page != 1 else min(page_count(path), 4)
            if count == 1:
                (shown,) = render_pages(path, [page], side)
                return _qimage(shown.rgb, shown.width, shown.height).copy()
            pages = render_pages(path, list(range(1, count + 1)), side // 2)
            return contact_sheet([(f"p. {n}", _pil(p)) for n, p in enumerate(pages, 1)], side)
    except SmolChatError:
        return QImage()
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return QImage()
    try:
        file = QFile()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or not file.open(fd, QIODevice.OpenModeFlag.ReadOnly):
            return QImage()
        reader = QImageReader(file)
        reader.setAutoTransform(True)  # photos taken sideways stand up
        box = QSize(side, side)
        size = reader.size()
        if size.isValid() and (size.width() > side or size.height() > side):
            reader.setScaledSize(size.scaled(box, Qt.AspectRatioMode.KeepAspectRatio).expandedTo(QSize(1, 1)))
        image = reader.read()
        file.close()
    finally:
        os.close(fd)
    if image.width() > side or image.height() > side:  # a format that cannot tell its size before decoding
        image = image.scaled(box, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    return image


def _qimage(rgb: bytes, width: int, height: int) -> QImage:
    return QImage(rgb, width, height, 3 * width, QImage.Format.Format_RGB888)


def _pil(image):
    from PIL import Image

    return Image.frombytes("RGB", (image.width, image.height), image.rgb)


def contact_sheet(frames: list, side: int) -> QImage:
    """Pictures in a square, two by two, each with its label: a clip's frames and their times,
    or a document's first pages."""
    sheet = QImage(side, side, QImage.Format.Format_RGB32)
    sheet.fill(QColor(24, 24, 24))
    cell = side // 2
    painter = QPainter(sheet)
    font = painter.font()
    font.setPixelSize(max(cell // 5, 7))
    painter.setFont(font)
    for i, (label, picture) in enumerate(frames[:4]):
        x, y = (i % 2) * cell, (i // 2) * cell
        image = _qimage(picture.tobytes(), picture.width, picture.height)
        painter.drawImage(x + (cell - picture.width) // 2, y + (cell - picture.height) // 2, image)
        box = QRect(x, y + cell - font.pixelSize() - 2, cell, font.pixelSize() + 2)
        painter.fillRect(box, QColor(0, 0, 0, 160))
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, label)
    painter.end()
    return sheet


class ThumbnailLoader(QObject):
    """Decodes pictures in a pool of threads and hands each QImage to its widget in the UI thread."""

    _decoded = Signal(int, QImage)  # ticket, image (null when unreadable)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._waiting: dict[int, Callable[[QImage], None]] = {}
        self._tickets = itertools.count()
        self._decoded.connect(self._deliver)  # emitted in a pool thread, so queued to this (the UI) thread

    def request(self, path: Path, side: int, owner: QObject, deliver: Callable[[QImage], None], page: int = 1) -> None:
        """Decode ``path`` (a PDF's ``page``) to fit ``side`` px; ``deliver`` gets the image unless
        ``owner`` is deleted first."""
        ticket = next(self._tickets)
        self._waiting[ticket] = deliver
        owner.destroyed.connect(lambda *_: self._waiting.pop(ticket, None))
        self._pool.start(lambda: self._decode(ticket, path, side, page))

    def _decode(self, ticket: int, path: Path, side: int, page: int) -> None:  # in a pool thread
        if ticket in self._waiting:
            self._decoded.emit(ticket, decode_thumbnail(path, side, page))

    def _deliver(self, ticket: int, image: QImage) -> None:
        deliver = self._waiting.pop(ticket, None)
        if deliver is not None:
            deliver(image)

    def wait(self) -> None:
        """Drop the pictures not started yet and wait for the others (the application is ending)."""
        self._pool.clear()
        self._pool.waitForDone()


_loader: ThumbnailLoader | None = None


def thumbnail_loader() -> ThumbnailLoader:
    """The application's loader, made on first use (in the UI thread); it ends with the application."""
    global _loader
    if _loader is None:
        application = QCoreApplication.instance()
        _loader = ThumbnailLoader(application)
        application.aboutToQuit.connect(_loader.wait)
    return _loader
