"""The window never waits on the model or on files: the engine stays in its thread, results of
requests the window stopped waiting for are dropped, and templates, tokenizing, hashing,
copying and decoding happen off the UI thread."""

from __future__ import annotations

import gc
import sys
import threading
import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QToolButton

from smolchat.engine.chat_template import ChatTemplate
from smolchat.engine.engine import Engine
from smolchat.engine.synthetic import TINY, write_mmproj, write_pair, write_text_model
from smolchat.models.library import InstalledModel
from smolchat.service import engine_service
from smolchat.ui.workers.engine_worker import LoadedModel
from tests.service.snapshots import native_objects_in
from tests.ui.test_chat_window import attach, send

WORKER_SIGNALS = (
    "loading",
    "loaded",
    "load_failed",
    "delta",
    "turn_finished",
    "turn_failed",
    "prefill_finished",
    "speed_changed",
)


class ThreadLog:
    """Which threads called a function."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def wrap(self, name: str, function):
        def recorded(*args, **kwargs):
            self.calls.append((name, threading.current_thread() is threading.main_thread()))
            return function(*args, **kwargs)

        return recorded

    def on_ui_thread(self) -> list[str]:
        return sorted({name for name, on_main in self.calls if on_main})

    def names(self) -> set[str]:
        return {name for name, _ in self.calls}


@pytest.fixture
def engine_calls(monkeypatch) -> ThreadLog:
    """Every public method and property of the Engine, recorded with the thread that used it."""
    log = ThreadLog()
    for name, member in list(vars(Engine).items()):
        if name.startswith("__") and name not in ("__init__", "__enter__", "__exit__"):
            continue
        if isinstance(member, property):
            monkeypatch.setattr(Engine, name, property(log.wrap(name, member.fget)))
        elif callable(member):
            monkeypatch.setattr(Engine, name, log.wrap(name, member))
    return log


def test_the_ui_thread_never_calls_into_the_engine(qtbot, home, tiny_model, images, engine_calls):
    from smolchat.ui.app import App

    app = App()
    qtbot.addWidget(app.window)
    try:
        app.window.show()
        app.conversations.start()
        loaded, emitted = [], []
        app.worker.loaded.connect(loaded.append)
        for name in WORKER_SIGNALS:
            getattr(app.worker, name).connect(lambda *args, name=name: emitted.append((name, args)))
        # the first load of a test run measures this computer's vision speed: slow on a busy machine
        with qtbot.waitSignal(app.turns.model_ready, timeout=180_000):
            app.turns.load_model(tiny_model)
        assert isinstance(loaded[0], LoadedModel) and not isinstance(loaded[0].info, Engine)
        attach(qtbot, app, images["photo"])  # costs, read-ahead, the meter
        app.window.composer.edit.setPlainText("What is it?")
        with qtbot.waitSignal(app.turns.meter_updated, timeout=30_000):
            app.turns.update_meter()
        send(qtbot, app, "What is it?")
        with qtbot.waitSignal(app.turns.answered, timeout=60_000):
            app.turns.regenerate()
        dialog = app.turns.settings_dialog()
        qtbot.addWidget(dialog)
    finally:
        app.close()
    assert {"__init__", "run_turn", "prefill", "close"} <= engine_calls.names()
    assert engine_calls.on_ui_thread() == []
    # what reached the UI thread were snapshots: nothing in them calls into llama.cpp
    assert {"loading", "loaded", "delta", "turn_finished", "prefill_finished", "speed_changed"} <= {
        name for name, _ in emitted
    }
    assert native_objects_in(emitted, "emitted") == []


def test_only_the_engine_services_thread_holds_the_engine(qtbot, app):
    send(qtbot, app, "Hello")
    service = app.worker.service
    # the service's thread's frames, as they run now
    frame, frames = sys._current_frames()[service.thread.ident], []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    gc.collect()
    engines = [o for o in gc.get_objects() if type(o) is Engine and o.loaded]
    assert len(engines) == 1, "one model is loaded, once"
    # (the counting thread keeps a vocabulary of its own, apart from the engine)
    assert native_objects_in(app, "app", kinds=(Engine,), llama_cpp=False) == [], (
        "the window, its controllers and its worker hold no Engine"
    )
    holders = [r for r in gc.get_referrers(engines[0]) if r is not engines]
    owners = [r for r in holders if isinstance(r, engine_service._ModelOwner)]
    owners += [
        o
        for r in holders
        if isinstance(r, dict)
        for o in gc.get_referrers(r)
        if isinstance(o, engine_service._ModelOwner) and vars(o) is r
    ]
    assert len(owners) == 1 and len(holders) == 1, f"held by {holders}"
    # nothing on the heap refers to the model's owner: only a local variable of the service's thread
    assert [r for r in gc.get_referrers(owners[0]) if r is not owners and r is not holders] == []
    assert any(any(value is owners[0] for value in f.f_locals.values()) for f in frames)
    del frames, frame


def test_templates_tokens_and_pictures_are_handled_off_the_ui_thread(qtbot, app, images, monkeypatch):
    from smolchat.store import conversations
    from smolchat.ui.controllers import turns as turns_module

    log = ThreadLog()
    monkeypatch.setattr(ChatTemplate, "render", log.wrap("template", ChatTemplate.render))
    monkeypatch.setattr(conversations.hashlib, "sha256", log.wrap("hash", conversations.hashlib.sha256))
    monkeypatch.setattr(turns_module, "prepared_size", log.wrap("header", turns_module.prepared_size))
    monkeypatch.setattr(turns_module, "png_bytes", log.wrap("paste", turns_module.png_bytes))

    attach(qtbot, app, images["photo"])
    picture = QImage(640, 480, QImage.Format.Format_RGB32)
    picture.fill(Qt.GlobalColor.darkCyan)
    QGuiApplication.clipboard().setImage(picture)
    with qtbot.waitSignal(app.window.composer.images_changed, timeout=30_000):
        app.window.composer.edit.paste()
    send(qtbot, app, "Compare them.")
    assert {"template", "hash", "header", "paste"} <= log.names()
    assert log.on_ui_thread() == []
    stored = app.store.messages(app.conversations.conversation_id)[0]
    assert len(stored.images) == 2 and all(p.exists() for p in stored.images)
    assert all(p.parent == app.store.images_dir for p in stored.images), "the pasted picture is kept as any other"


def test_an_attached_picture_is_kept_once_and_read_ahead_and_answered_from_that_file(qtbot, app, images, monkeypatch):
    import hashlib

    from smolchat.store import conversations

    hashed, copied, prefills, turns = [], [], [], []

    class CountingHashlib:  # the store's hashing only: the engine hashes pixels on its own
        @staticmethod
        def sha256(*args):
            hashed.append(1)
            return hashlib.sha256(*args)

    copy = conversations._copy_atomically
    monkeypatch.setattr(conversations, "hashlib", CountingHashlib)
    monkeypatch.setattr(
        conversations, "_copy_atomically", lambda source, target: (copied.append(source), copy(source, target))[1]
    )
    prefill, run_turn = app.worker.prefill, app.worker.run_turn
    monkeypatch.setattr(app.worker, "prefill", lambda request: (prefills.append(request), prefill(request))[1])
    monkeypatch.setattr(app.worker, "run_turn", lambda request: (turns.append(request), run_turn(request))[1])

    attach(qtbot, app, images["photo"])
    send(qtbot, app, "What is it?")
    question = app.store.messages(app.conversations.conversation_id)[0]
    assert len(hashed) == 1 and copied == [images["photo"]], "read, hashed and copied once, when attached"
    assert prefills and prefills[-1].messages[-1].images == [question.images[0]]
    assert turns[-1].messages[-1].images == [question.images[0]]  # the read-ahead's file is the one answered


def test_a_picture_attached_then_removed_is_swept_at_the_next_start(qtbot, app, images):
    attach(qtbot, app, images["second"])
    composer = app.window.composer
    kept = composer.images[0]
    assert kept.is_file()
    with qtbot.waitSignal(composer.images_changed):
        composer.thumbnail(kept).findChild(QToolButton).click()  # its x
    assert composer.images == []
    app.store.collect_garbage()  # what the start's cleanup does
    assert not kept.exists()


def _second_pair(folder) -> InstalledModel:
    text, mmproj = write_pair(folder, TINY, text_type="Q8_0")
    return InstalledModel("second", text, mmproj, None, text.stat().st_size + mmproj.stat().st_size)


def test_a_model_replaced_while_it_loads_is_never_adopted(qtbot, app, tiny_model, tmp_path):
    second = _second_pair(tmp_path / "second")
    ready, loaded = [], []
    app.turns.model_ready.connect(lambda: ready.append(app.turns.model_info.text_info.path))
    app.worker.loaded.connect(lambda result: loaded.append(result.name))
    with qtbot.waitSignal(app.worker.loading, timeout=30_000):
        app.turns.load_model(tiny_model)  # the first is being loaded...
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        app.turns.load_model(second)  # ... when the second is asked for
    qtbot.wait(200)
    assert loaded[0] == "tiny", "the first load finished after the second was asked for"
    assert ready == [second.text]  # the window adopted only the second
    assert app.turns.model.name == "second" and "second" in app.window.model_label.text()
    send(qtbot, app, "Still there?")  # counts and answers with the second model
    assert app.store.messages(app.conversations.conversation_id)[-1].text


def test_loads_asked_for_in_a_row_load_only_the_last(qtbot, app, tiny_model, tmp_path):
    second = _second_pair(tmp_path / "second")
    loading = []
    app.worker.loading.connect(lambda _id, name: loading.append(name))
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        for model in (tiny_model, second, tiny_model, second):
            app.turns.load_model(model)
    assert loading[-1] == "second" and len(loading) <= 2  # the first may have started; those between never do
    assert app.turns.model_info.text_info.path == second.text


def _model_with_template(folder, name: str, template: str) -> InstalledModel:
    text = write_text_model(folder / f"{name}-F16.gguf", TINY.text, name=name, chat_template=template)
    mmproj = write_mmproj(folder / f"mmproj-{name}-F16.gguf", TINY.vision, output_width=TINY.text.n_embd, name=name)
    return InstalledModel(name, text, mmproj, None, text.stat().st_size + mmproj.stat().st_size)


# Renders fine for a first question; spins without end once there is history.
SPINS_ON_HISTORY = (
    "{% if messages|length > 1 %}{% for a in range(100000) %}{% for b in range(100000) %}"
    "{% endfor %}{% endfor %}{% endif %}"
    "{% for m in messages %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}"
    "{% else %}<image>{% endif %}{% endfor %}{% endfor %}"
)


@pytest.mark.timeout(120)
def test_a_hostile_template_stops_with_a_message_and_the_window_stays_responsive(qtbot, app, tmp_path):
    hostile = _model_with_template(tmp_path, "hostile", SPINS_ON_HISTORY)
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        app.turns.load_model(hostile)
    send(qtbot, app, "First")  # one message: the template renders
    composer = app.window.composer
    composer.edit.setPlainText("Second")
    ticks = []
    timer = qtbot_timer(app, ticks)
    with qtbot.waitSignal(app.turns.meter_updated, timeout=60_000):
        app.turns.update_meter()
    timer.stop()
    assert "chat template was stopped" in composer.meter_note.text()
    assert len(ticks) >= 5, "the window kept handling events while the template was stopped"
    started = time.monotonic()
    app.turns.send("Second", [])
    qtbot.waitUntil(lambda: "chat template" in app.window.statusBar().currentMessage(), timeout=60_000)
    assert time.monotonic() - started < 60
    assert composer.send_button.isVisible()  # ready for the next try


def qtbot_timer(app, ticks: list):
    from PySide6.QtCore import QTimer

    timer = QTimer(app.window, interval=50, timeout=lambda: ticks.append(time.monotonic()))
    timer.start()
    return timer


def test_a_template_that_does_not_parse_falls_back_and_says_so(qtbot, app, tmp_path):
    broken = _model_with_template(tmp_path, "broken", "{% for m in messages %}{{ m['content'] }")
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        app.turns.load_model(broken)
    message = app.window.statusBar().currentMessage()
    assert "does not parse" in message and "SmolVLM's chat template instead" in message
    send(qtbot, app, "Hello")
    assert app.store.messages(app.conversations.conversation_id)[-1].status == "complete"
