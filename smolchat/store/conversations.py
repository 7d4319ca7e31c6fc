"""Conversations, kept in SQLite (WAL) in the user data folder.

Every message is written when it starts and as it grows, so a crash or a killed process
loses at most the last moments of an unfinished answer: on the next start an answer left
"streaming" is marked "interrupted" and kept. Images are copied into the data folder under
the hash of their bytes, so the history keeps them after the original file is gone, and the
same picture sent twice is stored once.

An image file lives as long as a message refers to it. Files are removed, and a message that
refers to one is added, only while holding SQLite's write lock, and a message is added only
once its files are there: so a removal never takes a file that a message being added at the
same moment (in another thread or another SmolChat) refers to.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from smolchat import paths
from smolchat.engine import Message
from smolchat.errors import SmolChatError
from smolchat.files import replacing

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

# A kept image is named by the sha256 of its bytes and the original suffix; only such files are ever removed.
_KEPT_NAME = re.compile(r"[0-9a-f]{64}(\.[^.]*)?")
PARTIAL = ".partial"
# A copy still being written is touched by every write; one this old was left by a crash.
STALE_PARTIAL_S = 3600.0
_MESSAGE_COLUMNS = "id, conversation_id, role, text, images, status, stats, model, created_at"


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
            raise StoreError(
                f"The conversation history at {self.path} cannot be read ({e}). Move the file "
                "away to start a new history; SmolChat will not overwrite it."
            ) from e

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"The conversation history at {self.path} was written by a newer SmolChat; update SmolChat to open it."
            )
        if version == 0:  # one script, one transaction: a half-made schema is never left behind
            self._db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Holds the write lock from the start: for this thread, the others, and other processes."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
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
            cid = db.execute(
                "INSERT INTO conversations (title, model, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (title, model, now, now),
            ).lastrowid
        assert cid is not None  # an INSERT sets it
        return Conversation(cid, title, model, now, now)

    def conversations(self, search: str = "") -> list[Conversation]:
        """Newest first; ``search`` matches titles and the text of messages, ignoring case."""
        pattern = f"%{_escape_like(search)}%"
        with self._lock:
            rows = self._db.execute(
                "SELECT id, title, model, created_at, updated_at FROM conversations c "
                "WHERE title LIKE ?1 ESCAPE '\\' OR (?1 != '%%' AND EXISTS ("
                "SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.text LIKE ?1 ESCAPE '\\')) "
                "ORDER BY updated_at DESC, id DESC",
                (pattern,),
            ).fetchall()
        return [Conversation(*row) for row in rows]

    def conversation(self, cid: int) -> Conversation:
        with self._lock:
            row = self._db.execute(
                "SELECT id, title, model, created_at, updated_at FROM conversations WHERE id = ?", (cid,)
            ).fetchone()
        if row is None:
            raise StoreError(f"Conversation {cid} no longer exists.")
        return Conversation(*row)

    def rename(self, cid: int, title: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title.strip() or "Untitled", cid))

    def delete(self, cid: int) -> None:
        """Delete the conversation, and the image files no other message refers to."""
        with self._transaction() as db:
            deleted = _read_messages(db, "conversation_id = ?", (cid,))
            db.execute("DELETE FROM conversations WHERE id = ?", (cid,))
        self._remove_unreferenced(_image_names(deleted))

    # -- messages --------------------------------------------------------------------------

    def add_message(
        self,
        cid: int,
        role: str,
        text: str = "",
        *,
        images: Sequence[Path] = (),
        status: str = COMPLETE,
        model: str | None = None,
        stats: dict | None = None,
    ) -> StoredMessage:
        """Add a message; its images are copied into the data folder first."""
        sources = [Path(p) for p in images]
        copies = [self.keep_image(p) for p in sources]
        now = time.time()
        with self._transaction() as db:
            # A cleanup between the copy and now may have taken a copy no message referred to yet.
            kept = tuple(k if k.is_file() else self.keep_image(s) for s, k in zip(sources, copies))
            mid = db.execute(
                "INSERT INTO messages (conversation_id, role, text, images, status, stats, model, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cid,
                    role,
                    text,
                    json.dumps([str(p) for p in kept]),
                    status,
                    json.dumps(stats) if stats else None,
                    model,
                    now,
                ),
            ).lastrowid
            assert mid is not None  # an INSERT sets it
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, cid))
        return StoredMessage(mid, cid, role, text, kept, status, stats, model, now)

    def update_message(
        self, mid: int, *, text: str | None = None, status: str | None = None, stats: dict | None = None
    ) -> None:
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
            return _read_messages(self._db, "conversation_id = ?", (cid,))

    def delete_from(self, cid: int, mid: int, *, keep_images_in: Path | None = None) -> list[StoredMessage]:
        """Delete message ``mid`` and everything after it (to regenerate or edit); returns what was deleted.

        Image files no other message refers to are removed. To edit a question, pass a folder of your
        own as ``keep_images_in``: the deleted messages' images are copied there first, and the
        returned messages refer to those copies, which the store never touches again."""
        with self._transaction() as db:
            deleted = _read_messages(db, "conversation_id = ? AND id >= ?", (cid, mid))
            if keep_images_in is not None:
                deleted = [self._hand_over(m, Path(keep_images_in)) for m in deleted]
            db.execute("DELETE FROM messages WHERE conversation_id = ? AND id >= ?", (cid, mid))
        self._remove_unreferenced(_image_names(deleted))
        return deleted

    # -- images ----------------------------------------------------------------------------

    def keep_image(self, path: Path) -> Path:
        """A copy of the image file in the data folder, named by the hash of its bytes.

        The copy lasts while a message refers to it: ``add_message`` keeps a message's images."""
        path = Path(path)
        if path.parent == self.images_dir and path.is_file():
            return path
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError as e:
            raise StoreError(f"{path.name} cannot be read: {e.strerror or e}.") from e
        kept = self.images_dir / (digest.hexdigest() + path.suffix.lower())
        if not kept.is_file():
            try:
                self.images_dir.mkdir(parents=True, exist_ok=True)
                _copy_atomically(path, kept)
            except OSError as e:
                raise StoreError(f"{path.name} cannot be copied into {self.images_dir}: {e.strerror or e}.") from e
        return kept

    def keep_image_data(self, data: bytes, suffix: str) -> Path:
        """Picture data (pasted or dropped from a browser) kept as ``keep_image`` keeps a file."""
        kept = self.images_dir / (hashlib.sha256(data).hexdigest() + suffix.lower())
        if not kept.is_file():
            try:
                self.images_dir.mkdir(parents=True, exist_ok=True)
                with replacing(kept, suffix=PARTIAL) as out:  # a crash leaves a part the sweep removes
                    out.write(data)
            except OSError as e:
                raise StoreError(f"The picture cannot be kept in {self.images_dir}: {e.strerror or e}.") from e
        return kept

    def collect_garbage(self) -> int:
        """Remove what a crash can leave in the images folder: images no message refers to, and
        copies never finished. Safe while messages are being added. Returns how many files went."""
        try:
            entries = [e for e in os.scandir(self.images_dir) if e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return 0
        except OSError as e:
            raise StoreError(f"The images folder {self.images_dir} cannot be read: {e.strerror or e}.") from e
        stale_before = time.time() - STALE_PARTIAL_S
        stale = [Path(e.path) for e in entries if e.name.endswith(PARTIAL) and _modified(e) < stale_before]
        kept = {e.name for e in entries if _KEPT_NAME.fullmatch(e.name)}
        return sum(_remove(p) for p in stale) + self._remove_unreferenced(kept)

    def _remove_unreferenced(self, names: set[str]) -> int:
        """Remove the kept images among ``names`` that no message refers to; returns how many went."""
        if not names:
            return 0
        with self._transaction() as db:  # the write lock: no message referring to one can be added meanwhile
            unreferenced = names - _referenced_names(db)
            return sum(_remove(self.images_dir / name) for name in unreferenced)

    def _hand_over(self, message: StoredMessage, folder: Path) -> StoredMessage:
        """The message with its images copied into ``folder``; images already gone are left out."""
        copies = []
        try:
            for image in message.images:
                if _KEPT_NAME.fullmatch(image.name) and image.is_file():
                    folder.mkdir(parents=True, exist_ok=True)
                    _copy_atomically(image, folder / image.name)
                    copies.append(folder / image.name)
        except OSError as e:
            raise StoreError(f"The pictures of the message cannot be copied into {folder}: {e.strerror or e}.") from e
        return replace(message, images=tuple(copies))


def _read_messages(db: sqlite3.Connection, where: str, params: tuple) -> list[StoredMessage]:
    rows = db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY id", params).fetchall()
    return [
        StoredMessage(
            r[0],
            r[1],
            r[2],
            r[3],
            tuple(Path(p) for p in json.loads(r[4])),
            r[5],
            json.loads(r[6]) if r[6] else None,
            r[7],
            r[8],
        )
        for r in rows
    ]


def _image_names(messages: list[StoredMessage]) -> set[str]:
    return {image.name for m in messages for image in m.images if _KEPT_NAME.fullmatch(image.name)}


def _referenced_names(db: sqlite3.Connection) -> set[str]:
    return {
        Path(p).name
        for (images,) in db.execute("SELECT images FROM messages WHERE images != '[]'")
        for p in json.loads(images)
    }


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy under a name of its own, then rename: ``target`` is never seen half written, and two
    copies of the same picture at once do not write into one file."""
    with replacing(target, suffix=PARTIAL) as out, open(source, "rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)


def _modified(entry: os.DirEntry) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:  # renamed into place meanwhile: not stale
        return math.inf


def _remove(path: Path) -> int:
    """1 if the file was removed; one that is in use or protected is tried again by the next sweep."""
    try:
        path.unlink()
    except OSError:
        return 0
    return 1


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
