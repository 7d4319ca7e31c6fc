"""The main window driven as a user drives it, on the tiny fixture models."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication, QImage

from smolchat import settings as settings_module
from smolchat.budget.context import plan_context
from smolchat.budget.detail import Detail, max_tokens_for
from smolchat.budget.images import image_cost
from smolchat.engine import Message
from smolchat.engine.engine import Engine
from smolchat.engine.gguf_info import inspect_text_model
from smolchat.store import COMPLETE, STOPPED


def drop(widget, mime: QMimeData) -> None:
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    widget.dropEvent(event)


def urls(*files: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    return mime


def attach(qtbot, app, *files: Path) -> None:
    """Drop pictures on the composer and wait until they are checked and attached."""
    with qtbot.waitSignal(app.window.composer.images_changed, timeout=30_000):
        drop(app.window.composer, urls(*files))


def send(qtbot, app, text: str) -> None:
    composer = app.window.composer
    composer.edit.setPlainText(text)
    with qtbot.waitSignal(app.turns.answered, timeout=60_000):
        qtbot.keyClick(composer.edit, Qt.Key.Key_Return)


def test_dropped_images_get_thumbnails_with_their_cost(qtbot, app, images):
    composer = app.window.composer
    with qtbot.waitSignal(app.turns.costs_shown, timeout=30_000):
        drop(composer, urls(images["photo"], images["second"]))
    # kept in the store's folder, and named as the user's files are
    assert [p.read_bytes() for p in composer.images] == [images["photo"].read_bytes(), images["second"].read_bytes()]
    assert all(p.parent == app.store.images_dir for p in composer.images)
    photo = composer.thumbnail(composer.images[0])
    assert photo.name == "photo.png" and photo.accessibleName() == "Attached image photo.png"
    assert photo.cost.text().startswith("5 tiles · ")  # balanced detail


def test_a_dropped_text_file_is_refused_by_name(qtbot, app, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    with qtbot.waitSignal(app.window.composer.refused) as refused:
        drop(app.window.composer, urls(notes))
    assert "notes.txt" in refused.args[0]
    assert "notes.txt" in app.window.statusBar().currentMessage()  # the window says so
    assert app.window.banner.isVisible() and "notes.txt" in app.window.banner.text.text()  # inline, above the composer
    assert app.window.composer.images == []


def test_paste_adds_an_image(qtbot, app):
    picture = QImage(64, 48, QImage.Format.Format_RGB32)
    picture.fill(Qt.GlobalColor.darkCyan)
    QGuiApplication.clipboard().setImage(picture)
    composer = app.window.composer
    with qtbot.waitSignal(composer.images_changed, timeout=30_000):
        composer.edit.paste()
    assert len(composer.images) == 1 and composer.images[0].suffix == ".png"
    assert composer.images[0].parent == app.store.images_dir  # kept where the store keeps pictures
    assert QImage(str(composer.images[0])).size() == picture.size()


def test_send_streams_the_answer_into_the_view_and_the_store(qtbot, app, images):
    attach(qtbot, app, images["small"])
    pieces = []
    app.worker.delta.connect(lambda _turn, piece: pieces.append(piece))
    send(qtbot, app, "What is in this picture?")

    question, answer = app.window.chat.bubbles
    assert question.text == "What is in this picture?" and answer.text
    assert "".join(pieces) == answer.text
    assert "first token" in answer.figures.text()
    stored = app.store.messages(app.conversations.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"] and stored[1].status == COMPLETE
    assert stored[1].text == answer.text and stored[0].images[0].exists()
    assert app.window.composer.images == [] and app.window.composer.edit.toPlainText() == ""
    assert app.store.conversation(app.conversations.conversation_id).title == "What is in this picture?"


def test_stop_cancels_mid_answer_and_keeps_what_was_written(qtbot, app):
    name = app.turns.model.name
    app.settings.set_model_settings(name, app.turns.model_settings.__class__(max_tokens=3500, temperature=0.0))
    app.worker.delta.connect(lambda *_: app.window.composer.stop_button.click())  # as soon as text appears
    app.window.composer.edit.setPlainText("Tell me a long story.")
    with qtbot.waitSignal(app.turns.answered, timeout=60_000):
        qtbot.keyClick(app.window.composer.edit, Qt.Key.Key_Return)
    answer = app.store.messages(app.conversations.conversation_id)[-1]
    assert answer.status == STOPPED and answer.text, answer.stats
    assert answer.stats["generated_tokens"] < 3500
    assert "stopped" in app.window.chat.bubbles[-1].status.text()
    assert app.window.composer.send_button.isVisible() and not app.window.composer.stop_button.isVisible()


def test_regenerate_writes_the_answer_again(qtbot, app):
    send(qtbot, app, "Hello there")
    first = app.store.messages(app.conversations.conversation_id)[-1]
    with qtbot.waitSignal(app.turns.answered, timeout=60_000):
        app.window.chat.regenerate_requested.emit()
    stored = app.store.messages(app.conversations.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"] and stored[-1].created_at > first.created_at
    assert len(app.window.chat.bubbles) == 2


def test_edit_puts_the_last_question_back(qtbot, app, images):
    attach(qtbot, app, images["small"])
    send(qtbot, app, "First question")
    composer = app.window.composer
    with qtbot.waitSignal(composer.images_changed, timeout=30_000):
        qtbot.keyClick(composer.edit, Qt.Key.Key_Up)  # Up in the empty box, as Edit on the question
    assert composer.edit.toPlainText() == "First question" and len(composer.images) == 1
    assert composer.images[0].read_bytes() == images["small"].read_bytes()  # the picture, kept while edited
    assert app.store.messages(app.conversations.conversation_id) == [] and app.window.chat.bubbles == []
    send(qtbot, app, "First question, again")  # and it goes with the question once more
    question = app.store.messages(app.conversations.conversation_id)[0]
    assert question.text == "First question, again" and question.images[0].read_bytes() == images["small"].read_bytes()


def test_the_context_meter_shows_the_budget_modules_numbers(qtbot, app, images, tiny_model):
    send(qtbot, app, "Hello")
    composer = app.window.composer
    attach(qtbot, app, images["photo"])
    composer.edit.setPlainText("Now this one?")
    with qtbot.waitSignal(app.turns.meter_updated, timeout=30_000):
        app.turns.update_meter()
    ms = app.turns.model_settings
    history = app.turns.history()
    new = Message.user("Now this one?", images=[images["photo"]])
    # the meter's counts (a tokenizer of its own, pictures by their predicted cost) are the engine's exact ones
    settings = ms.engine(max_tokens_for(Detail(ms.detail), tiny_model.mmproj))
    with Engine(tiny_model.text, tiny_model.mmproj, settings) as engine:
        expected = plan_context(engine, history, new, n_ctx=ms.n_ctx, reply_tokens=ms.max_tokens)
    assert composer.meter.value() == expected.used and composer.meter.maximum() == ms.n_ctx
    assert composer.meter.format() == f"{expected.used:,} / {ms.n_ctx:,} tokens"


def test_the_gpu_slider_spans_the_models_layers_and_is_off_on_a_cpu_build(qtbot, app, tiny_pair):
    dialog = app.turns.settings_dialog()
    qtbot.addWidget(dialog)
    layers = inspect_text_model(tiny_pair[0]).n_layer
    assert (dialog.gpu.minimum(), dialog.gpu.maximum()) == (0, layers + 1)
    if not llama_cpp.llama_supports_gpu_offload():
        assert not dialog.gpu.isEnabled() and "no GPU support" in dialog.gpu_note.text()


def test_settings_that_need_a_reload_reload_the_model(qtbot, app):
    dialog = app.turns.settings_dialog()
    qtbot.addWidget(dialog)
    dialog.n_ctx.setValue(2048)
    assert "load again" in dialog.reload_note.text()
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        app.turns.apply_settings(dialog.chosen())
    assert app.turns.model_info.settings.n_ctx == 2048
    assert settings_module.load().for_model(app.turns.model.name).n_ctx == 2048  # kept for next time
    qtbot.waitUntil(lambda: app.window.composer.meter.maximum() == 2048, timeout=30_000)


def test_exact_vision_reloads_the_model_reading_images_in_full_precision(qtbot, app):
    dialog = app.turns.settings_dialog()
    qtbot.addWidget(dialog)
    assert not dialog.exact_vision.isChecked()
    dialog.exact_vision.setChecked(True)
    assert "load again" in dialog.reload_note.text()
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        app.turns.apply_settings(dialog.chosen())
    plan = app.turns.model_info.vision_plan
    assert plan.precision not in ("INT8", "Q8_0")
    assert app.turns.model_info.settings.vision_precision == "exact"
    assert settings_module.load().for_model(app.turns.model.name).exact_vision  # kept for next time


def test_the_settings_chosen_in_the_dialog_are_the_ones_the_next_start_loads(qtbot, app):
    dialog = app.turns.settings_dialog()
    qtbot.addWidget(dialog)
    dialog.system.setPlainText("Answer in one word.")
    dialog.max_tokens.setValue(64)
    app.turns.apply_settings(dialog.chosen())  # no reload needed
    assert app.turns.model_settings.max_tokens == 64
    app.close()  # the window's own settings are saved too, without undoing the model's
    saved = settings_module.load()
    assert saved.model == "tiny" and saved.window_geometry
    assert saved.for_model("tiny").system_prompt == "Answer in one word." and saved.for_model("tiny").max_tokens == 64


def test_the_meters_breakdown_names_the_images_share(qtbot, app, images):
    composer = app.window.composer
    attach(qtbot, app, images["photo"])
    composer.edit.setPlainText("What is it?")
    with qtbot.waitSignal(app.turns.meter_updated, timeout=30_000):
        app.turns.update_meter()
    cost = image_cost(1024, 768, app.turns.model_info.projector_info, Detail(app.turns.model_settings.detail))
    assert cost.tiles == 5 and f"images {cost.tokens} " in composer.meter.toolTip()


def test_about_names_the_version_the_backend_and_the_folders(app):
    import html

    from smolchat import __version__, paths
    from smolchat.engine.backends import build_info
    from smolchat.ui.app import app_icon

    text = app.window.about_text()
    assert f"SmolChat {__version__}" in text
    assert html.escape(build_info().summary()) in text
    assert html.escape(str(paths.models_dir())) in text and html.escape(str(paths.data_dir())) in text
    sizes = {s.width() for s in app_icon().availableSizes()}
    assert {16, 32, 48, 256, 512} <= sizes


def test_an_unexpected_failure_while_loading_is_shown_not_left_loading(qtbot, app, tiny_model, monkeypatch):
    from smolchat.service import engine_service

    def broken(*_args, **_kwargs):
        raise RuntimeError("llama_model_load returned NULL")

    monkeypatch.setattr(engine_service, "load_engine", broken)  # stands in for a bug or a llama.cpp failure
    app.turns.load_model(tiny_model)
    qtbot.waitUntil(lambda: app.window.model_label.text() == "No model loaded", timeout=30_000)
    message = app.window.statusBar().currentMessage()
    assert "tiny could not be loaded" in message and "llama_model_load returned NULL" in message
    banner = app.window.banner
    assert banner.isVisible() and banner.text.text() == message and not app.window.activity.isVisible()
    assert banner.action.isVisible() and banner.action.text() == "Choose another model…"  # the way out, one click
