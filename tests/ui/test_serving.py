"""Model → Serve on this computer: the window's own model answers other programs, and the
window stays responsive while it does."""

from __future__ import annotations

import socket
import threading

import httpx2 as httpx
from PySide6.QtGui import QGuiApplication


def serve_from_the_menu(app, qtbot, port: int = 0):
    action = next(a for a in app.window.menuBar().actions() if a.text() == "&Model").menu()
    serve = next(a for a in action.actions() if a.text().startswith("Serve on this"))
    serve.trigger()
    dialog = app.serving.dialog
    assert dialog is not None and dialog.isVisible()
    dialog.port.setValue(port)
    qtbot.mouseClick(dialog.toggle, qtbot_left())
    return dialog


def qtbot_left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_serving_the_windows_model_to_other_programs(app, qtbot, images):
    dialog = serve_from_the_menu(app, qtbot)
    base = dialog.ollama_url.text()
    assert base.startswith("http://127.0.0.1:") and dialog.openai_url.text() == f"{base}/v1"
    assert "tiny" in dialog.status.text()
    qtbot.mouseClick(dialog.copy_openai, qtbot_left())
    assert QGuiApplication.clipboard().text() == f"{base}/v1"

    models = httpx.get(f"{base}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    replies: list[httpx.Response] = []
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 400, "ignore_eos": True}
    client = threading.Thread(
        target=lambda: replies.append(httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60))
    )
    client.start()
    ticks = []
    qtbot.waitUntil(lambda: ticks.append(1) or bool(replies), timeout=60_000)  # the event loop ran meanwhile
    client.join()
    assert replies[0].status_code == 200 and replies[0].json()["usage"]["completion_tokens"] == 400
    assert len(ticks) > 1
    tags = httpx.get(f"{base}/api/tags", timeout=10).json()
    assert tags["models"][0]["name"] == "tiny"

    qtbot.mouseClick(dialog.toggle, qtbot_left())  # stop
    assert dialog.toggle.text() == "Start serving" and not dialog.copy_openai.isEnabled()
    qtbot.waitUntil(lambda: not _listening(base), timeout=10_000)


def test_a_port_in_use_is_said_in_the_dialog(app, qtbot):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        dialog = serve_from_the_menu(app, qtbot, taken.getsockname()[1])
        assert "cannot be used" in dialog.status.text() and dialog.toggle.text() == "Start serving"
    finally:
        taken.close()


def test_the_window_answers_while_serving(app, qtbot):
    from PySide6.QtCore import Qt

    dialog = serve_from_the_menu(app, qtbot)
    base = dialog.ollama_url.text()
    replies: list[httpx.Response] = []
    body = {"model": "tiny", "prompt": "Go on", "stream": False, "options": {"num_predict": 2000}}
    client = threading.Thread(target=lambda: replies.append(httpx.post(f"{base}/api/generate", json=body, timeout=60)))
    client.start()
    composer = app.window.composer
    composer.edit.setPlainText("Hello from the window")
    with qtbot.waitSignal(app.turns.answered, timeout=60_000):
        qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    client.join()
    assert replies[0].status_code == 200 and replies[0].json()["done"]
    question, answer = app.window.chat.bubbles[-2:]
    assert answer.role == "assistant" and "failed" not in answer.status.text()


def _listening(base: str) -> bool:
    try:
        httpx.get(f"{base}/health", timeout=1)
        return True
    except httpx.HTTPError:
        return False
