"""Clips and PDFs in the window: attached like pictures, costed by their frames and pages,
read while the question is typed, and not read again on a follow-up."""

from __future__ import annotations

from tests.media.clips import write_clip
from tests.media.test_pdf import write_pdf
from tests.ui.test_chat_window import attach, drop, send, urls


def last_stats(app) -> dict:
    return app.store.messages(app.conversations.conversation_id)[-1].stats


def test_a_dropped_clip_is_costed_by_its_frames_and_read_once(qtbot, app, tmp_path):
    clip = write_clip(tmp_path / "square.mp4")
    composer = app.window.composer
    with qtbot.waitSignal(app.turns.costs_shown, timeout=30_000):
        drop(composer, urls(clip))
    (kept,) = composer.images
    assert kept.parent == app.store.images_dir and kept.read_bytes() == clip.read_bytes()
    thumb = composer.thumbnail(kept)
    assert thumb.name == "square.mp4"
    assert thumb.cost.text().startswith("12 frames · ")  # one tile each, at any detail
    assert "not trained on video" in app.window.statusBar().currentMessage()  # the tiny model is no SmolVLM2
    qtbot.waitUntil(lambda: thumb.picture.pixmap() is not None and not thumb.picture.pixmap().isNull(), timeout=30_000)
    send(qtbot, app, "What happens?")
    stats = last_stats(app)
    assert stats["frames"] == 12 and stats["images"] == 0
    assert stats["image_tiles_encoded"] <= 12  # some or all were read while the question was typed
    send(qtbot, app, "And at the end?")
    assert last_stats(app)["image_tiles_encoded"] == 0  # the frames are in the cache


def test_a_long_pdf_asks_which_pages_and_keeps_only_those(qtbot, app, tmp_path, monkeypatch):
    from smolchat.media.pdf import page_count

    report = write_pdf(tmp_path / "report.pdf", 10, size=(120, 160))
    asked = []
    monkeypatch.setattr(app.window, "ask_pages", lambda path, name, count: asked.append((name, count)) or "2-3")
    composer = app.window.composer
    with qtbot.waitSignal(app.turns.costs_shown, timeout=30_000):
        drop(composer, urls(report))
    assert asked == [("report.pdf", 10)]
    (kept,) = composer.images
    assert kept.suffix == ".pdf" and page_count(kept) == 2
    thumb = composer.thumbnail(kept)
    assert thumb.name == "report.pdf (pages 2-3)" and thumb.cost.text().startswith("2 pages · ")
    send(qtbot, app, "What do they say?")
    assert last_stats(app)["images"] == 2


def test_a_short_pdf_is_attached_whole_and_a_broken_clip_is_refused(qtbot, app, tmp_path, monkeypatch):
    monkeypatch.setattr(app.window, "ask_pages", lambda *_: (_ for _ in ()).throw(AssertionError("not asked")))
    attach(qtbot, app, write_pdf(tmp_path / "form.pdf", 2))
    (kept,) = app.window.composer.images
    picture = app.window.composer.thumbnail(kept).picture
    qtbot.waitUntil(lambda: picture.pixmap() is not None and not picture.pixmap().isNull(), timeout=30_000)
    broken = tmp_path / "holiday.mov"
    broken.write_text("not a film")
    with qtbot.waitSignal(app.window.composer.refused) as refused:
        drop(app.window.composer, urls(broken))
    assert "holiday.mov was not added: is not a video SmolChat can read" in refused.args[0]


def test_frames_per_clip_is_a_model_setting(qtbot, app, tmp_path):
    dialog = app.turns.settings_dialog()
    qtbot.addWidget(dialog)
    assert dialog.video_max_frames.value() == 16
    dialog.video_max_frames.setValue(5)
    assert "load again" in dialog.reload_note.text()
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        app.turns.apply_settings(dialog.chosen())
    composer = app.window.composer
    with qtbot.waitSignal(app.turns.costs_shown, timeout=30_000):
        drop(composer, urls(write_clip(tmp_path / "square.mp4")))
    assert composer.thumbnail(composer.images[0]).cost.text().startswith("5 frames · ")
    send(qtbot, app, "What happens?")
    assert last_stats(app)["frames"] == 5


def test_the_page_picker_shows_the_pages_to_tick(qtbot, app, tmp_path):
    from PySide6.QtCore import Qt

    from smolchat.ui.views.page_picker import PagePicker, page_list

    report = write_pdf(tmp_path / "report.pdf", 12, size=(120, 160))
    picker = PagePicker(report, "report.pdf", 12, app.window)
    qtbot.addWidget(picker)
    assert picker.pages.count() == 12 and picker.spec() == "1-3"  # the first pages, ticked
    qtbot.waitUntil(lambda: not picker.pages.item(11).icon().isNull(), timeout=30_000)  # thumbnails arrive
    picker.pages.item(1).setCheckState(Qt.CheckState.Unchecked)
    picker.pages.item(6).setCheckState(Qt.CheckState.Checked)
    assert picker.spec() == "1,3,7"
    picker.typed.setText("4-5")  # or typed
    assert picker.spec() == "4-5"
    assert page_list([5, 1, 2, 3, 9, 10]) == "1-3,5,9-10"
