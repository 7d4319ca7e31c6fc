"""Model → Choose model… → Connect to a server…: the window asks a server's model, streams
its answer, and says that its counts are estimates."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.api.live import KEY
from tests.ui.conftest import app, home, tiny_model  # noqa: F401 (the window's fixtures)
from tests.ui.test_chat_window import attach, send


def connect_dialog(app, qtbot):  # noqa: F811
    picker = app.models.open()
    qtbot.mouseClick(picker.connect_button, Qt.MouseButton.LeftButton)
    dialog = app.models.connect_dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def test_a_servers_model_answers_in_the_window(app, qtbot, smolchat_server, images):  # noqa: F811
    url, _ = smolchat_server
    dialog = connect_dialog(app, qtbot)
    dialog.address.setText(url)
    dialog.key.setText("sk-wrong")
    qtbot.mouseClick(dialog.list_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "refused the API key" in dialog.status.text(), timeout=30_000)

    dialog.key.setText(KEY)
    qtbot.mouseClick(dialog.list_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.models.count() == 1, timeout=30_000)
    assert dialog.models.item(0).text() == "smolvlm-tiny · reads images · 4,096 tokens"
    with qtbot.waitSignal(app.turns.model_ready, timeout=30_000):
        qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    assert app.window.model_label.text() == f"smolvlm-tiny at {url} · counts estimated"

    attach(qtbot, app, images["small"])
    composer = app.window.composer
    composer.edit.setPlainText("What is in this picture?")
    with qtbot.waitSignal(app.turns.meter_updated, timeout=30_000):
        app.turns.update_meter()
    assert composer.meter.format().startswith("about ") and composer.meter.format().endswith("/ 4,096 tokens")
    assert "An estimate" in composer.meter.toolTip()
    send(qtbot, app, "What is in this picture?")
    question, answer = app.window.chat.bubbles
    assert answer.text and "first token" in answer.figures.text()
    stored = app.store.messages(app.conversations.conversation_id)
    assert stored[1].text == answer.text and stored[1].model == f"smolvlm-tiny at {url}"
    used = stored[1].stats["prompt_tokens"] + stored[1].stats["generated_tokens"]
    qtbot.waitUntil(lambda: f"The server counted {used:,} tokens" in composer.meter.toolTip(), timeout=30_000)


def test_nothing_at_the_address_is_said_in_the_dialog(app, qtbot):  # noqa: F811
    from tests.remote.conftest import free_port

    dialog = connect_dialog(app, qtbot)
    address = f"http://127.0.0.1:{free_port()}"
    dialog.address.setText(address)
    qtbot.mouseClick(dialog.list_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: f"Cannot reach {address}" in dialog.status.text(), timeout=30_000)
    assert dialog.list_button.isEnabled() and not dialog.use_button.isEnabled()
