"""The window never waits on the model or on files: the engine stays in its thread, results of
requests the window stopped waiting for are dropped, and templates, tokenizing, hashing,
copying and decoding happen off the UI thread."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage

from smolchat.engine.chat_template import ChatTemplate
from smolchat.engine.engine import Engine
from smolchat.engine.synthetic import TINY, write_mmproj, write_pair, write_text_model
from smolchat.models.library import InstalledModel
from smolchat.ui.workers.engine_worker import LoadedModel
from tests.ui.test_chat_window import attach, send


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
        app.chat.start()
        loaded = []
        app.worker.loaded.connect(loaded.append)
        with qtbot.waitSignal(app.chat.model_ready, timeout=60_000):
            app.chat.load_model(tiny_model)
        assert isinstance(loaded[0], LoadedModel) and not isinstance(loaded[0].info, Engine)
        attach(qtbot, app, images["photo"])  # costs, read-ahead, the meter
        app.window.composer.edit.setPlainText("What is it?")
        with qtbot.waitSignal(app.chat.meter_updated, timeout=30_000):
            app.chat.update_meter()
        send(qtbot, app, "What is it?")
        with qtbot.waitSignal(app.chat.answered, timeout=60_000):
            app.chat.regenerate()
        dialog = app.chat.settings_dialog()
        qtbot.addWidget(dialog)
    finally:
        app.close()
    assert {"__init__", "run_turn", "prefill", "close"} <= engine_calls.names()
    assert engine_calls.on_ui_thread() == []


def test_templates_tokens_and_pictures_are_handled_off_the_ui_thread(qtbot, app, images, monkeypatch):
    from smolchat.store import conversations
    from smolchat.ui.controllers import chat as chat_module

    log = ThreadLog()
    monkeypatch.setattr(ChatTemplate, "render", log.wrap("template", ChatTemplate.render))
    monkeypatch.setattr(conversations.hashlib, "sha256", log.wrap("hash", conversations.hashlib.sha256))
    monkeypatch.setattr(chat_module, "prepared_size", log.wrap("header", chat_module.prepared_size))
    monkeypatch.setattr(conversations.hashlib, "sha1", log.wrap("paste", conversations.hashlib.sha1))  # names it

    attach(qtbot, app, images["photo"])
    picture = QImage(640, 480, QImage.Format.Format_RGB32)
    picture.fill(Qt.GlobalColor.darkCyan)
    QGuiApplication.clipboard().setImage(picture)
    with qtbot.waitSignal(app.window.composer.images_changed, timeout=30_000):
        app.window.composer.edit.paste()
    send(qtbot, app, "Compare them.")
    assert {"template", "hash", "header", "paste"} <= log.names()
    assert log.on_ui_thread() == []
    stored = app.store.messages(app.chat.conversation_id)[0]
    assert len(stored.images) == 2 and all(p.exists() for p in stored.images)
    assert not list(chat_module.pasted_dir().glob("*.png")), "the pasted file goes once the store keeps it"


def _second_pair(folder) -> InstalledModel:
    text, mmproj = write_pair(folder, TINY, text_type="Q8_0")
    return InstalledModel("second", text, mmproj, None, text.stat().st_size + mmproj.stat().st_size)


def test_a_model_replaced_while_it_loads_is_never_adopted(qtbot, app, tiny_model, tmp_path):
    second = _second_pair(tmp_path / "second")
    ready, loaded = [], []
    app.chat.model_ready.connect(lambda: ready.append(app.chat.model_info.text_info.path))
    app.worker.loaded.connect(lambda result: loaded.append(result.name))
    with qtbot.waitSignal(app.worker.loading, timeout=30_000):
        app.chat.load_model(tiny_model)  # the first is being loaded...
    with qtbot.waitSignal(app.chat.model_ready, timeout=60_000):
        app.chat.load_model(second)  # ... when the second is asked for
    qtbot.wait(200)
    assert loaded[0] == "tiny", "the first load finished after the second was asked for"
    assert ready == [second.text]  # the window adopted only the second
    assert app.chat.model.name == "second" and "second" in app.window.model_label.text()
    send(qtbot, app, "Still there?")  # counts and answers with the second model
    assert app.store.messages(app.chat.conversation_id)[-1].text


def test_loads_asked_for_in_a_row_load_only_the_last(qtbot, app, tiny_model, tmp_path):
    second = _second_pair(tmp_path / "second")
    loading = []
    app.worker.loading.connect(lambda _id, name: loading.append(name))
    with qtbot.waitSignal(app.chat.model_ready, timeout=60_000):
        for model in (tiny_model, second, tiny_model, second):
            app.chat.load_model(model)
    assert loading[-1] == "second" and len(loading) <= 2  # the first may have started; those between never do
    assert app.chat.model_info.text_info.path == second.text


def _model_with_template(folder, name: str, template: str) -> InstalledModel:
    text = write_text_model(folder / f"{name}-F16.gguf", TINY.text, name=name, chat_template=template)
    mmproj = write_mmproj(folder / f"mmproj-{name}-F16.gguf", TINY.vision, output_width=TINY.text.n_embd, name=name)
    return InstalledModel(name, text, mmproj, None, text.stat().st_size + mmproj.stat().st_size)


# Renders fine for a first question; spins without end once there is history.
SPINS_ON_HISTORY = ("{% if messages|length > 1 %}{% for a in range(100000) %}{% for b in range(100000) %}"
                    "{% endfor %}{% endfor %}{% endif %}"
                    "{% for m in messages %}{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}"
                    "{% else %}<image>{% endif %}{% endfor %}{% endfor %}")


@pytest.mark.timeout(120)
def test_a_hostile_template_stops_with_a_message_and_the_window_stays_responsive(qtbot, app, tmp_path):
    hostile = _model_with_template(tmp_path, "hostile", SPINS_ON_HISTORY)
    with qtbot.waitSignal(app.chat.model_ready, timeout=60_000):
        app.chat.load_model(hostile)
    send(qtbot, app, "First")  # one message: the template renders
    composer = app.window.composer
    composer.edit.setPlainText("Second")
    ticks = []
    timer = qtbot_timer(app, ticks)
    with qtbot.waitSignal(app.chat.meter_updated, timeout=60_000):
        app.chat.update_meter()
    timer.stop()
    assert "chat template was stopped" in composer.meter_note.text()
    assert len(ticks) >= 5, "the window kept handling events while the template was stopped"
    started = time.monotonic()
    app.chat.send("Second", [])
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
    with qtbot.waitSignal(app.chat.model_ready, timeout=60_000):
        app.chat.load_model(broken)
    message = app.window.statusBar().currentMessage()
    assert "does not parse" in message and "SmolVLM's chat template instead" in message
    send(qtbot, app, "Hello")
    assert app.store.messages(app.chat.conversation_id)[-1].status == "complete"
