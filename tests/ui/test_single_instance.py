"""A second start of SmolChat brings the running window to the front instead of opening a
second window on the same conversations; a crashed one never locks SmolChat out."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# The window, with a note printed whenever it is asked to come to the front.
WINDOW = textwrap.dedent("""
    import sys
    import smolchat.ui.app as app

    shown = app.bring_to_front
    def bring_to_front(window):
        print("brought to front", flush=True)
        shown(window)
    app.bring_to_front = bring_to_front
    sys.exit(app.main())
""")


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "SMOLCHAT_HOME": str(tmp_path / "home"),
        "QT_QPA_PLATFORM": "offscreen",
        "HF_HUB_OFFLINE": "1",
    }


def start_window(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WINDOW], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until_serving(env: dict[str, str], window: subprocess.Popen, timeout_s: float = 60) -> Path:
    """The running window's database, once it has taken the lock and opened it."""
    database = Path(env["SMOLCHAT_HOME"]) / "data" / "conversations.sqlite3"
    ends = time.monotonic() + timeout_s
    while time.monotonic() < ends:
        assert window.poll() is None, window.communicate()
        if database.exists() and (database.parent / "smolchat.lock").exists():
            try:
                with sqlite3.connect(database) as db:
                    if db.execute("SELECT count(*) FROM conversations").fetchone()[0]:
                        return database
            except sqlite3.OperationalError:  # its tables are being made
                pass
        time.sleep(0.2)
    raise AssertionError("the window did not start")


def stop(window: subprocess.Popen, how: int = signal.SIGTERM) -> str:
    window.send_signal(how)
    out, _ = window.communicate(timeout=30)
    return out


@pytest.mark.timeout(180)
def test_a_second_start_brings_the_first_window_to_the_front_and_touches_nothing(env):
    first = start_window(env)
    try:
        database = wait_until_serving(env, first)
        with sqlite3.connect(database) as db:  # an answer the first window is still writing
            cid = db.execute("SELECT id FROM conversations").fetchone()[0]
            db.execute(
                "INSERT INTO messages (conversation_id, role, text, status, created_at) "
                "VALUES (?, 'assistant', 'Half an ans', 'streaming', 0)",
                (cid,),
            )
        second = subprocess.run([sys.executable, "-m", "smolchat"], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert "already running; its window was brought to the front" in second.stderr
        with sqlite3.connect(database) as db:
            assert db.execute("SELECT status FROM messages WHERE text = 'Half an ans'").fetchone() == ("streaming",)
        assert first.poll() is None
    finally:
        out = stop(first)
    assert "brought to front" in out


@pytest.mark.timeout(180)
def test_a_window_that_crashed_does_not_lock_smolchat_out(env):
    crashed = start_window(env)
    try:
        wait_until_serving(env, crashed)
    finally:
        stop(crashed, signal.SIGKILL)  # the lock file stays behind
    assert (Path(env["SMOLCHAT_HOME"]) / "data" / "smolchat.lock").exists()
    again = start_window(env)
    try:
        wait_until_serving(env, again)
        time.sleep(1)
        assert again.poll() is None, again.communicate()
    finally:
        stop(again)
