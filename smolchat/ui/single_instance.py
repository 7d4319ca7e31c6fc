"""One window per SmolChat home: a second start brings the running window to the front.

Two windows on one conversation store would fight over it: the second would mark the first's
answer in progress as interrupted, and a Regenerate there would delete the row the first is
still writing. The first start takes a lock file in the data folder (Qt removes it when the
process that held it is gone, so a crash never locks SmolChat out) and listens on a local
socket named after that folder; a later start finds the lock taken, asks the first to show its
window, and ends.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

_SHOW = b"show\n"
CONNECT_TIMEOUT_MS = 2000


def _server_name(data_dir: Path) -> str:
    """A socket name of this user and folder (names are per user on Windows, files in /tmp elsewhere)."""
    folder = str(data_dir.resolve()).encode()
    user = str(os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "")).encode()
    return "smolchat-" + hashlib.sha256(user + b"\0" + folder).hexdigest()[:16]


class SingleInstance(QObject):
    """``acquire()`` once at start: True for the first instance, which then emits
    ``show_requested`` whenever a later start asks for its window."""

    show_requested = Signal()

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = QLockFile(str(data_dir / "smolchat.lock"))
        self._lock.setStaleLockTime(0)  # never stale by age: only when its process is gone
        self._name = _server_name(data_dir)
        self._server: QLocalServer | None = None

    def acquire(self) -> bool:
        if not self._lock.tryLock(0):
            return False
        QLocalServer.removeServer(self._name)  # a socket file left by a crash
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._connected)
        self._server.listen(self._name)  # without it a second start still stops; it just cannot raise us
        return True

    def ask_running_to_show(self) -> bool:
        """From a later start: ask the first instance to show its window. False if it did not answer."""
        socket = QLocalSocket()
        socket.connectToServer(self._name)
        if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
            return False
        socket.write(_SHOW)
        sent = socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
        socket.disconnectFromServer()
        return sent

    def _connected(self) -> None:
        while self._server is not None and (client := self._server.nextPendingConnection()) is not None:
            client.readyRead.connect(lambda c=client: self._read(c))
            client.disconnected.connect(client.deleteLater)
            if client.bytesAvailable():
                self._read(client)

    def _read(self, client: QLocalSocket) -> None:
        if bytes(client.readAll().data()).startswith(_SHOW.strip()):
            self.show_requested.emit()

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()
