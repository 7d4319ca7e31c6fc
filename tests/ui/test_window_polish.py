"""What makes the window pleasant: themes, bubbles and code blocks, following the answer,
thumbnails that show their reading, the drop zone, the sidebar by day with undo, the picker's
layout, keyboard access. Views are driven directly where no model is needed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QLineEdit, QWidget

from smolchat import settings as settings_module
from smolchat.models.catalog import CATALOG
from smolchat.store import Conversation
from smolchat.store.days import day_group
from smolchat.ui import theme
from smolchat.ui.views.chat_view import ChatView
from smolchat.ui.views.composer import Composer
from smolchat.ui.views.model_picker import ModelPicker
from smolchat.ui.views.sidebar import Sidebar


@pytest.fixture
def window_app(qtbot, home):
    """The whole window with no model: for what needs no answer."""
    from smolchat.ui.app import App

    app = App()
    qtbot.addWidget(app.window)
    app.window.show()
    app.conversations.start()
    yield app
    app.close()
    theme.apply(theme.LIGHT)  # the next test starts as the suite does


# -- themes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [theme.LIGHT, theme.DARK])
def test_every_text_colour_is_readable_on_what_it_is_drawn_on(name):
    colours = theme.THEMES[name]
    poor = {
        (fg, bg): round(theme.contrast(getattr(colours, fg), getattr(colours, bg)), 2)
        for fg, bg in theme.READABLE_PAIRS
        if theme.contrast(getattr(colours, fg), getattr(colours, bg)) < 4.5
    }
    assert poor == {}


def test_the_theme_chosen_is_painted_kept_and_follows_the_desktop(qtbot, window_app, monkeypatch):
    app, window = window_app, window_app.window
    bubble = window.chat.add("assistant", "Here:\n\n```python\nprint('hi')\n```\n")
    window.theme_actions["dark"].trigger()
    assert QApplication.palette().color(QPalette.ColorRole.Window).name() == theme.DARK_COLOURS.window
    assert theme.DARK_COLOURS.code_background in bubble.code_blocks[0].text.text()  # code repainted dark
    assert json.loads(settings_module.settings_file().read_text())["theme"] == "dark"
    assert settings_module.load().theme == "dark"  # what the next start paints first
    assert window.theme_actions["dark"].isChecked()

    window.theme_actions["system"].trigger()
    assert app.theme.shown == theme.system_scheme()
    monkeypatch.setattr(theme, "system_scheme", lambda: theme.DARK)  # the desktop switches to dark
    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert app.theme.shown == theme.DARK
    assert QApplication.palette().color(QPalette.ColorRole.Base).name() == theme.DARK_COLOURS.base
    window.theme_actions["light"].trigger()  # a fixed choice: the desktop no longer decides
    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert app.theme.shown == theme.LIGHT and settings_module.load().theme == "light"


def test_an_unknown_theme_in_the_settings_file_means_the_system(home):
    settings_module.settings_file().parent.mkdir(parents=True, exist_ok=True)
    settings_module.settings_file().write_text(json.dumps({"theme": "neon"}))
    assert settings_module.load().theme == "system"


# -- the conversation ---------------------------------------------------------------------------


@pytest.fixture
def chat(qtbot):
    view = ChatView()
    view.resize(700, 400)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_questions_and_answers_look_different_and_markdown_is_rendered(qtbot, chat):
    question = chat.add("user", "What is this?")
    answer = chat.add(
        "assistant", "## Parts\n\n- a lens\n- a `shutter`\n\n| part | job |\n|---|---|\n| lens | focus |\n"
    )
    assert question.objectName() == "userBubble" and answer.objectName() == "answerBubble"
    qtbot.waitUntil(lambda: question.geometry().right() > answer.geometry().center().x())
    assert question.width() < answer.width()  # the question hugs the right, the answer takes the width
    rich = answer.body.text()
    assert "<h2" in rich and "<li" in rich and "<table" in rich and "shutter" in rich


def test_a_code_block_names_its_language_and_copies_exactly(qtbot, chat):
    code = "def area(r):\n    return 3.14159 * r ** 2  # <b>not bold</b>\n"
    bubble = chat.add("assistant", f"Use this:\n\n```python\n{code}```\n\nand then:\n\n```\nls -l\n```\n")
    first, second = bubble.code_blocks
    assert first.language == "python" and second.language == ""
    assert [
        label.text() for label in first.findChildren(type(bubble.body)) if label.objectName() == "codeLanguage"
    ] == ["python"]
    assert "and then" in bubble.labels[1].text()  # the prose between the blocks, in order
    qtbot.mouseClick(first.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == code
    assert first.copy_button.text() == "Copied"
    qtbot.waitUntil(lambda: first.copy_button.text() == "Copy", timeout=5000)


def test_the_view_follows_the_answer_unless_the_reader_scrolled_up(qtbot, chat):
    for i in range(12):
        chat.add("user" if i % 2 == 0 else "assistant", f"message {i}\n" * 6)
    bar = chat.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())
    answer = chat.bubbles[-1]
    answer.append("\nmore" * 20)  # streaming at the bottom: it stays in view
    qtbot.waitUntil(lambda: bar.value() == bar.maximum())
    assert not chat.jump_button.isVisible()

    bar.setValue(0)  # the reader goes back up to read
    answer.append("\nstill more" * 20)
    qtbot.wait(50)
    assert bar.value() == 0 and chat.jump_button.isVisible()
    qtbot.mouseClick(chat.jump_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bar.value() == bar.maximum())
    assert chat.following and not chat.jump_button.isVisible()


# -- attachments --------------------------------------------------------------------------------


@pytest.fixture
def composer(qtbot, images):
    view = Composer()
    qtbot.addWidget(view)
    view.show()
    view.attach([(images["photo"], "photo.png"), (images["second"], "second.png")])
    return view


def test_thumbnails_show_their_reading_then_ready(composer, images):
    first, second = (composer.thumbnail(p) for p in composer.images)
    composer.set_tiles(images["photo"], 5)
    composer.set_tiles(images["second"], 3)
    composer.set_cost(images["second"], "3 tiles · 199 tokens", "~2 s")
    assert second.cost.text() == "3 tiles · 199 tokens · ~2 s"  # the wait, while it is still to read
    composer.set_reading(True)
    assert first.state.text() == "reading…" and not first.reading.isHidden()
    composer.set_reading_progress(1, 3)  # only the newest had to be read: the first was read before
    assert first.state.text() == "✓ ready"
    assert second.state.text() == "reading 1/3 tiles" and second.reading.value() == 1
    composer.set_ready()
    assert [t.state.text() for t in (first, second)] == ["✓ ready", "✓ ready"] and second.reading.isHidden()
    assert second.cost.text() == "3 tiles · 199 tokens"  # read: Send costs no wait for it
    composer.set_reading(True)  # another picture came: read again, then cancelled
    composer.set_reading(False)
    assert first.state.text() == "" and first.reading.isHidden()


def test_the_x_removes_a_thumbnail(qtbot, composer, images):
    thumb = composer.thumbnail(composer.images[0])
    remove = next(b for b in thumb.findChildren(QWidget) if b.accessibleName() == "Remove photo.png")
    with qtbot.waitSignal(composer.images_changed) as changed:
        qtbot.mouseClick(remove, Qt.MouseButton.LeftButton)
    assert changed.args[0] == [images["second"]]


def _drag(target: QWidget, files: list[Path]) -> QDragEnterEvent:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    event = QDragEnterEvent(
        QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    event._mime = mime  # kept alive as long as the event
    return event


def test_dragging_a_file_over_the_window_highlights_the_drop_zone(qtbot, window_app, images):
    window = window_app.window
    composer = window.composer
    QApplication.sendEvent(window, _drag(window, [images["photo"]]))
    assert composer.property("dragging") is True and composer.drop_hint.isVisible()
    QApplication.sendEvent(window, QDragLeaveEvent())
    assert composer.property("dragging") is False and not composer.drop_hint.isVisible()
    # over the message box itself, too
    QApplication.sendEvent(composer.edit.viewport(), _drag(composer.edit.viewport(), [images["photo"]]))
    assert composer.drop_hint.isVisible()
    QApplication.sendEvent(composer.edit.viewport(), QDragLeaveEvent())
    assert not composer.drop_hint.isVisible()


def test_a_thumbnail_opens_the_picture_full_size(qtbot, window_app, images):
    window = window_app.window
    with qtbot.waitSignal(window.composer.images_changed, timeout=30_000):
        window.composer.add_files([images["photo"]])
    thumb = window.composer.thumbnail(window.composer.images[0])
    qtbot.mouseClick(thumb.picture, Qt.MouseButton.LeftButton)
    viewer = window.picture_viewer
    assert viewer is not None and viewer.isVisible() and viewer.windowTitle() == "photo.png"
    qtbot.waitUntil(
        lambda: viewer.picture.pixmap() is not None and not viewer.picture.pixmap().isNull(), timeout=10_000
    )
    qtbot.keyClick(viewer, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not viewer.isVisible())


# -- the sidebar --------------------------------------------------------------------------------


def test_conversations_are_grouped_by_day(qtbot):
    now = time.mktime((2026, 12, 4, 15, 0, 0, 0, 0, -1))
    day = 86400
    side = Sidebar()
    qtbot.addWidget(side)
    conversations = [
        Conversation(1, "this afternoon", None, now - 3600, now - 3600),
        Conversation(2, "last night", None, now - day, now - day),
        Conversation(3, "monday", None, now - 4 * day, now - 4 * day),
        Conversation(4, "in november", None, now - 20 * day, now - 20 * day),
        Conversation(5, "last summer", None, now - 150 * day, now - 150 * day),
    ]
    side.show_conversations(conversations, 1, now)
    assert side.headings() == ["Today", "Yesterday", "Previous 7 days", "Previous 30 days", "July 2026"]
    assert side.list.currentItem().text() == "this afternoon"
    side.list.setFocus()
    qtbot.keyClick(side.list, Qt.Key.Key_Down)  # over the "Yesterday" heading, to the conversation
    assert side.list.currentItem().text() == "last night"
    assert day_group(now + day, now) == "Today"  # a clock set back: nothing in the future


def test_rename_in_place_and_delete_with_undo(qtbot, window_app):
    app = window_app
    store, side = app.store, app.window.sidebar
    keep = store.create_conversation("Lighthouse photos", None)
    store.add_message(keep.id, "user", "Which lighthouse is this, at dusk?")
    other = store.create_conversation("Receipts", None)
    app.conversations.refresh_list()

    item = side.item_for(keep.id)
    rename, _delete = side.menu_for(item).actions()
    rename.trigger()  # the title becomes editable where it is
    (editor,) = side.list.findChildren(QLineEdit)
    assert editor.text() == "Lighthouse photos"
    editor.selectAll()
    qtbot.keyClicks(editor, "Lighthouses")
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # the list commits what was typed once the key is handled
    qtbot.waitUntil(lambda: store.conversation(keep.id).title == "Lighthouses")
    assert side.item_for(keep.id).text() == "Lighthouses"

    app.conversations.open_conversation(keep.id)
    side.menu_for(side.item_for(keep.id)).actions()[1].trigger()
    assert side.item_for(keep.id) is None and app.conversations.conversation_id != keep.id
    assert store.conversation(keep.id).title == "Lighthouses"  # still all there while Undo is offered
    banner = app.window.banner
    assert banner.isVisible() and "Lighthouses" in banner.text.text() and banner.action.text() == "Undo"
    qtbot.mouseClick(banner.action, Qt.MouseButton.LeftButton)
    assert side.item_for(keep.id) is not None and app.conversations.conversation_id == keep.id
    assert [m.text for m in store.messages(keep.id)] == ["Which lighthouse is this, at dusk?"]

    side.menu_for(side.item_for(other.id)).actions()[1].trigger()
    app.conversations._delete_timer.setInterval(20)  # the Undo offer runs out
    app.conversations._delete_timer.start()
    qtbot.waitUntil(lambda: other.id not in [c.id for c in store.conversations()], timeout=10_000)
    assert not banner.isVisible()


def test_search_finds_what_was_said_not_only_titles(qtbot, window_app):
    app = window_app
    store, side = app.store, app.window.sidebar
    found = store.create_conversation("Holiday", None)
    store.add_message(found.id, "assistant", "The LIGHTHOUSE stands on a cliff.")
    store.create_conversation("Receipts", None)
    qtbot.keyClicks(side.search, "lighthouse")
    shown = [
        side.list.item(i).text() for i in range(side.list.count()) if side.list.item(i).data(Qt.ItemDataRole.UserRole)
    ]
    assert shown == ["Holiday"]
    assert store.conversations("100%") == []  # LIKE's wildcards are only text


# -- the picker ---------------------------------------------------------------------------------


def test_the_picker_fits_without_sideways_scrolling_and_colours_the_fit(qtbot):
    picker = ModelPicker()
    qtbot.addWidget(picker)
    picker.show_catalog([(e.repo, f"{e.title} · {e.parameters} · {e.note}") for e in CATALOG], CATALOG[0].repo)
    rows = [
        {
            "path": f"SmolVLM2-500M-Video-Instruct-with-a-rather-long-file-name-{q}.gguf",
            "format": q,
            "size": "436.8 MB",
            "memory": "1.3 GB (from file size)",
            "fit": fit,
            "message": "",
            "summary": "",
            "default": q == "Q8_0",
            "downloaded": q == "Q8_0",
        }
        for q, fit in (("Q8_0", "fits"), ("F16", "tight"), ("BF16", "does not fit"))
    ]
    picker.show_listing("<b>repo</b>", rows, [("mmproj.gguf", "F16 · 190 MB")], "mmproj.gguf")
    picker.show()
    qtbot.waitExposed(picker)
    assert picker.catalog.horizontalScrollBar().maximum() == 0
    assert picker.files.horizontalScrollBar().maximum() == 0
    assert picker.files.item(0, 4).text() == "✓ downloaded · fits"
    colours = [picker.files.item(r, 4).foreground().color().name() for r in range(3)]
    assert colours == [theme.current().ok, theme.current().warn, theme.current().error]
    picker.mark_downloading(rows[1]["path"])
    picker.show_progress(50, 200, "25%")
    assert picker.files.item(1, 4).text() == "⬇ 25%"  # the download's progress in its own row


# -- keyboard and access ------------------------------------------------------------------------


def test_tab_walks_the_window_in_order_and_every_stop_has_a_name(qtbot, window_app):
    window = window_app.window
    qtbot.waitExposed(window)
    start = window.sidebar.new_button
    start.setFocus()
    seen, widget = [], start
    for _ in range(40):
        seen.append(widget)
        widget = widget.nextInFocusChain()
        while not (widget.isVisible() and widget.focusPolicy() & Qt.FocusPolicy.TabFocus and widget.isEnabled()):
            widget = widget.nextInFocusChain()
        if widget is start:
            break
    names = [w.accessibleName() or getattr(w, "text", lambda: "")() for w in seen]
    assert all(names), [type(w).__name__ for w, n in zip(seen, names, strict=True) if not n]
    order = [n for n in names if n in ("New chat", "Search conversations", "Conversations", "Message", "Send")]
    assert order == ["New chat", "Search conversations", "Conversations", "Message", "Send"]


def test_the_window_icon_has_sizes_for_200_percent_screens():
    from smolchat.ui.app import app_icon

    sizes = {s.width() for s in app_icon().availableSizes()}
    assert {16, 32, 64, 128, 256} <= sizes  # 16 and 32 px drawn at 200% use the 32 and 64 px files


def test_progress_of_loading_and_reading_reaches_the_window(qtbot, app, tiny_model, images):
    reports: list[tuple[str, float, float]] = []
    app.worker.progress.connect(lambda _id, stage, done, total: reports.append((stage, done, total)))
    values: list[int] = []
    app.window.activity.bar.valueChanged.connect(values.append)
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        app.turns.load_model(tiny_model)
    assert ("Loading the text model", 1.0, 1.0) in reports and 1000 in values  # a determinate bar, filled
    assert not app.window.activity.isVisible()

    composer = app.window.composer
    with qtbot.waitSignal(composer.images_changed, timeout=30_000):
        composer.add_files([images["photo"]])
    thumb = composer.thumbnail(composer.images[0])
    qtbot.waitUntil(lambda: thumb.state.text() == "✓ ready", timeout=60_000)
    reading = [(done, total) for stage, done, total in reports if stage == "Reading the images"]
    assert reading and reading[-1][0] == reading[-1][1] == thumb.tiles  # every tile, counted as it was read
