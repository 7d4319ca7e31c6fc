"""Pictures in messages and in the composer: decoded at the size they are shown, in worker threads,
so opening a conversation full of photos never freezes the window."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QCoreApplication, QEvent, QSize
from PySide6.QtGui import QImageReader

from smolchat.ui.views import picture as picture_module
from smolchat.ui.views.chat_view import PICTURE_SIDE, ChatView, MessageBubble
from smolchat.ui.views.composer import THUMB, Thumbnail
from smolchat.ui.workers import thumbnails


@pytest.fixture(scope="module")
def photo_12mp(tmp_path_factory) -> Path:
    """A 4000 x 3000 JPEG, as a phone takes them."""
    rows = np.linspace(0, 255, 3000, dtype=np.uint8)[:, None, None]
    cols = np.linspace(0, 255, 4000, dtype=np.uint8)[None, :, None]
    pixels = np.broadcast_to(rows // 2 + cols // 2, (3000, 4000, 3)).copy()
    path = tmp_path_factory.mktemp("photos") / "phone.jpg"
    Image.fromarray(pixels).save(path, quality=85)
    return path


@dataclass
class Decodes:
    in_ui_thread: list[bool] = field(default_factory=list)  # one per decode
    asked: list[QSize] = field(default_factory=list)  # the sizes the image reader was asked for


@pytest.fixture
def decodes(monkeypatch) -> Decodes:
    record = Decodes()

    class RecordingReader(QImageReader):
        def setScaledSize(self, size: QSize) -> None:  # noqa: N802 (Qt's name)
            record.asked.append(size)
            super().setScaledSize(size)

    real = thumbnails.decode_thumbnail

    def recorded(path: Path, side: int, page: int = 1):
        record.in_ui_thread.append(threading.current_thread() is threading.main_thread())
        return real(path, side, page)

    monkeypatch.setattr(thumbnails, "QImageReader", RecordingReader)
    monkeypatch.setattr(thumbnails, "decode_thumbnail", recorded)
    return record


def test_a_bubbles_photos_are_decoded_at_thumbnail_size_off_the_ui_thread(qtbot, photo_12mp, decodes):
    bubble = MessageBubble("user", "What are these?", [photo_12mp] * 4)
    qtbot.addWidget(bubble)
    assert len(bubble.pictures) == 4
    assert all(p.pixmap().isNull() for p in bubble.pictures)  # placeholders until the pictures arrive
    with qtbot.waitSignals([p.ready for p in bubble.pictures], timeout=30_000):
        pass
    assert [p.pixmap().size() for p in bubble.pictures] == [QSize(PICTURE_SIDE, 120)] * 4
    assert decodes.in_ui_thread == [False] * 4
    assert decodes.asked == [QSize(PICTURE_SIDE, 120)] * 4  # scaled while decoding, not after


def test_the_composers_thumbnail_is_decoded_off_the_ui_thread(qtbot, photo_12mp, decodes):
    thumb = Thumbnail(photo_12mp)
    qtbot.addWidget(thumb)
    assert thumb.picture.pixmap().isNull()
    with qtbot.waitSignal(thumb.picture.ready, timeout=30_000) as ready:
        pass
    assert ready.args == [True] and thumb.picture.pixmap().size() == QSize(THUMB, 54)
    assert decodes.in_ui_thread == [False] and decodes.asked == [QSize(THUMB, 54)]


def test_a_small_picture_is_not_enlarged(tmp_path):
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 30), (10, 120, 200)).save(small)
    assert thumbnails.decode_thumbnail(small, PICTURE_SIDE).size() == QSize(40, 30)


@pytest.mark.timeout(60)
def test_a_fifo_or_a_device_is_refused_without_reading(qtbot, tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # nobody writes: reading it would wait forever
    assert thumbnails.decode_thumbnail(fifo, THUMB).isNull()
    writer = os.open(fifo, os.O_RDWR)  # now a picture waits in it: still not read
    try:
        png = tmp_path / "small.png"
        Image.new("RGB", (40, 30)).save(png)
        os.write(writer, png.read_bytes())
        assert thumbnails.decode_thumbnail(fifo, THUMB).isNull()
    finally:
        os.close(writer)
    assert thumbnails.decode_thumbnail(Path("/dev/zero"), THUMB).isNull()
    bubble = MessageBubble("user", "and this?", [fifo])
    qtbot.addWidget(bubble)
    with qtbot.waitSignal(bubble.pictures[0].ready, timeout=30_000) as ready:
        pass
    assert ready.args == [False] and "could not be read" in bubble.pictures[0].toolTip()


def test_switching_conversation_while_pictures_decode_is_safe(qtbot, tmp_path, monkeypatch):
    files = []
    for i in range(5):
        files.append(tmp_path / f"p{i}.png")
        Image.new("RGB", (600, 400), (40 * i, 80, 160)).save(files[-1])
    release = threading.Event()
    real = thumbnails.decode_thumbnail

    def held(path: Path, side: int, page: int = 1):
        release.wait(30)  # the decodes are still running when the conversation changes
        return real(path, side, page)

    shown = []
    real_show = picture_module.Picture._show

    def recorded_show(self, image):
        shown.append(self.path)
        real_show(self, image)

    monkeypatch.setattr(thumbnails, "decode_thumbnail", held)
    monkeypatch.setattr(picture_module.Picture, "_show", recorded_show)
    view = ChatView()
    qtbot.addWidget(view)
    view.add("user", "four photos", files[:4])
    view.clear()  # the user opens another conversation
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    bubble = view.add("user", "one photo", files[4:])
    release.set()
    with qtbot.waitSignal(bubble.pictures[0].ready, timeout=30_000):
        pass
    thumbnails.thumbnail_loader().wait()
    QCoreApplication.processEvents()
    assert shown == [files[4]]  # what was decoded for the deleted bubble was dropped
