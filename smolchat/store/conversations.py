"""Conversations, kept in SQLite (WAL) in the user data folder.

Every message is written when it starts and as it grows, so a crash or a killed process
loses at most the last moments of an unfinished answer: on the next start an answer left
"streaming" is marked "interrupted" and kept. Images are copied into the data folder under
the hash of their bytes, so the history keeps them after the original file is gone, and the
same picture sent twice is stored once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from smolchat import paths
from smolchat.engine import Message
from smolchat.errors import SmolChatError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    model TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    images TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'complete',
    stats TEXT,
    model TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
"""

# What a message can be: the answer being written, and how it ended.
COMPLETE, STREAMING, STOPPED, INTERRUPTED = "complete", "streaming", "stopped", "interrupted"


class StoreError(SmolChatError):
    pass


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: str
    text: str
    images: tuple[Path, ...] = ()
    status: str = COMPLETE
    stats: dict | None = None
    model: str | None = None
    created_at: float = field(default=0.0, compare=False)

    def to_message(self) -> Message:
        """As the engine takes it."""
        if self.role == "user":
            return Message.user(self.text, images=list(self.images))
        return Message(self.role, (self.text,))


class Store:
    """One SQLite database; safe to use from several threads (one connection, one lock)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or paths.data_dir()
        self.images_dir = self.folder / "images"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "conversations.sqlite3"
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            # An answer still "streaming" was cut short by a crash or a kill: keep it, say so.
            self._db.execute("UPDATE messages SET status = ? WHERE status = ?", (INTERRUPTED, STREAMING))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"The conversation history at {self.path} cannot be read ({e}). Move the file "
                             "away to start a new history; SmolChat will not overwrite it.") from e

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"The conversation history at {self.path} was written by a newer SmolChat; "
                             "update SmolChat to open it.")
        if version == 0:  # one script, one transaction: a half-made schema is never left behind
            self._db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- conversations ---------------------------------------------------------------------

    def create_conversation(self, title: str = "New chat", model: str | None = None) -> Conversation:
        now = time.time()
        with self._transaction() as db:
            cid = db.execute("INSERT INTO conversations (title, model, created_at, updated_at) VALUES (?, ?, ?, ?)",
                             (title, model, now, now)).lastrowid
        return Conversation(cid, title, model, now, now)

    def conversations(self, search: str = "") -> list[Conversation]:
        """Newest first; ``search`` matches titles, ignoring case."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, title, model, created_at, updated_at FROM conversations "
                "WHERE title LIKE ? ESCAPE '\\' ORDER BY updated_at DESC, id DESC",
                (f"%{_escape_like(search)}%",)).fetchall()
        return [Conversation(*row) for row in rows]

    def conversation(self, cid: int) -> Conversation:
        with self._lock:
            row = self._db.execute("SELECT id, title, model, created_at, updated_at FROM conversations WHERE id = ?",
                                   (cid,)).fetchone()
        if row is None:
            raise StoreError(f"Conversation {cid} no longer exists.")
        return Conversation(*row)

    def rename(self, cid: int, title: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title.strip() or "Untitled", cid))

    def delete(self, cid: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (cid,))

    # -- messages --------------------------------------------------------------------------

    def add_message(self, cid: int, role: str, text: str = "", *, images: list[Path] = (), status: str = COMPLETE,
                    model: str | None = None, stats: dict | None = None) -> StoredMessage:
        """Add a message; its images are copied into the data folder first."""
        kept = tuple(self.keep_image(p) for p in images)
        now = time.time()
        with self._transaction() as db:
            mid = db.execute(
                "INSERT INTO messages (conversation_id, role, text, images, status, stats, model, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, role, text, json.dumps([str(p) for p in kept]), status,
                 json.dumps(stats) if stats else None, model, now)).lastrowid
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, cid))
        return StoredMessage(mid, cid, role, text, kept, status, stats, model, now)

    def update_message(self, mid: int, *, text: str | None = None, status: str | None = None,
                       stats: dict | None = None) -> None:
        sets, values = [], []
        for column, value in (("text", text), ("status", status), ("stats", json.dumps(stats) if stats else None)):
            if value is not None:
                sets.append(f"{column} = ?")
                values.append(value)
        if sets:
            with self._transaction() as db:
                db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", (*values, mid))

    def messages(self, cid: int) -> list[StoredMessage]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, conversation_id, role, text, images, status, stats, model, created_at "
                "FROM messages WHERE conversation_id = ? ORDER BY id", (cid,)).fetchall()
        return [StoredMessage(r[0], r[1], r[2], r[3], tuple(Path(p) for p in json.loads(r[4])), r[5],
                              json.loads(r[6]) if r[6] else None, r[7], r[8]) for r in rows]

    def delete_from(self, cid: int, mid: int) -> None:
        """Delete message ``mid`` and everything after it (to regenerate or edit)."""
        with self._transaction() as db:
            db.execute("DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (cid, mid))

    # -- images ----------------------------------------------------------------------------

    def keep_image(self, path: Path) -> Path:
        """A copy of the image file in the data folder, named by the hash of its bytes."""
        path = Path(path)
        if path.parent == self.images_dir:
            return path
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError as e:
            raise StoreError(f"{path.name} cannot be read: {e.strerror or e}.") from e
        kept = self.images_dir / (digest.hexdigest() + path.suffix.lower())
        if not kept.exists():
            self.images_dir.mkdir(parents=True, exist_ok=True)
            partial = kept.with_suffix(kept.suffix + ".partial")
            shutil.copyfile(path, partial)
            partial.replace(kept)
        return kept


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
