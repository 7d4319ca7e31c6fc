"""Conversations and settings survive closing the window and starting again (a new process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from smolchat import settings as settings_module

FIRST_RUN = textwrap.dedent("""
    import sys
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    from smolchat.models.library import Library
    from smolchat.ui.app import App

    qt = QApplication([])
    Library().import_pair(sys.argv[1], sys.argv[2], name="tiny")
    app = App()
    app.turns.answered.connect(app.window.close)
    app.turns.model_ready.connect(lambda: app.turns.send("Remember this picture", [sys.argv[3]]))
    app.window.closing.connect(qt.quit)
    app.start()
    app.window.resize(720, 520)
    QTimer.singleShot(60_000, qt.quit)
    qt.exec()
""")


def test_a_conversation_comes_back_in_a_new_process(qtbot, home, tiny_pair, images):
    done = subprocess.run(
        [sys.executable, "-c", FIRST_RUN, *map(str, tiny_pair), str(images["small"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert settings_module.load().model == "tiny"

    from smolchat.ui.app import App

    app = App()
    qtbot.addWidget(app.window)
    try:
        with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
            app.start()
        assert [app.window.sidebar.list.item(i).text() for i in range(2)] == ["Today", "Remember this picture"]
        question, answer = app.window.chat.bubbles
        assert question.text == "Remember this picture" and answer.text and "first token" in answer.figures.text()
        assert (app.window.width(), app.window.height()) == (720, 520)  # and the window's size
        assert app.turns.model.name == "tiny"
    finally:
        app.close()
