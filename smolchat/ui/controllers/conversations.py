"""The conversations: the list in the sidebar (search, rename, delete), opening one into the
chat view, export, and the store's cleanup at start. Database writes go to the store's
background thread, in order; files are written in a thread of their own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from smolchat import paths
from smolchat.errors import SmolChatError
from smolchat.store import Store, StoredMessage
from smolchat.store.export import suggested_file_name, to_json, to_markdown
from smolchat.ui.views.main_window import MainWindow
from smolchat.ui.workers.background import Background

NEW_TITLE = "New chat"
UNDO_S = 10  # how long a deleted conversation can be brought back


def drafts_dir() -> Path:
    """Pictures of a question taken back for editing, until it is sent again."""
    return paths.cache_dir() / "drafts"


def store_error_message(error: BaseException) -> str:
    return (
        str(error)
        if isinstance(error, SmolChatError)
        else f"The conversation could not be saved ({type(error).__name__}: {error})."
    )


class ConversationController(QObject):
    opened = Signal(int)  # the conversation now shown (its id)
    deleting = Signal(int)  # a conversation about to be deleted (its id)

    def __init__(self, window: MainWindow, store: Store, writer: Background) -> None:
        super().__init__(window)
        self.window, self.store = window, store
        self.conversation_id: int | None = None
        self.model_name: str | None = None  # the model a new conversation is started with
        self._writer = writer  # the store's thread: database writes and picture copies, in order
        self._files = Background("export", self)
        # A deleted conversation leaves the list at once but the store only when Undo is no
        # longer offered (or SmolChat closes): until then it is all still there.
        self.pending_delete: int | None = None
        self._delete_timer = QTimer(self, singleShot=True, interval=UNDO_S * 1000, timeout=self._commit_delete)
        side = window.sidebar
        side.new_requested.connect(self.new_conversation)
        side.selected.connect(self.open_conversation)
        side.rename_requested.connect(self._rename)
        side.delete_requested.connect(self._delete)
        side.search_changed.connect(self.refresh_list)
        window.export_requested.connect(self.export)

    def refresh_list(self, *_: object) -> None:
        shown = [c for c in self.store.conversations(self.window.sidebar.search_text()) if c.id != self.pending_delete]
        self.window.sidebar.show_conversations(shown, self.conversation_id)

    def start(self) -> None:
        existing = [c for c in self.store.conversations() if c.id != self.pending_delete]
        if existing:
            self.open_conversation(existing[0].id)
        else:
            self.new_conversation()

    def new_conversation(self) -> None:
        if self.conversation_id is not None and not self.stored():  # this one is still empty: use it
            self.window.composer.focus()
            return
        conversation = self.store.create_conversation(NEW_TITLE, self.model_name)
        self.open_conversation(conversation.id)

    def open_conversation(self, cid: int) -> None:
        if cid == self.conversation_id:
            return
        self.conversation_id = cid
        chat = self.window.chat
        chat.clear()
        for m in self.store.messages(cid):
            chat.add(m.role, m.text, list(m.images), m.status, m.stats)
        self.refresh_list()
        self.opened.emit(cid)

    def stored(self) -> list[StoredMessage]:
        """The messages of the conversation shown."""
        return self.store.messages(self.conversation_id) if self.conversation_id is not None else []

    def question_asked(self, cid: int, text: str) -> None:
        """A new chat takes its title from its first question."""
        if text and self.store.conversation(cid).title == NEW_TITLE:
            self.store.rename(cid, _title_from(text))

    def _rename(self, cid: int, title: str) -> None:
        self.store.rename(cid, title)
        self.refresh_list()

    def _delete(self, cid: int) -> None:
        """Out of the list now, with Undo in the window for a few seconds; out of the store after."""
        self._commit_delete()  # only one deletion waits at a time
        title = self.store.conversation(cid).title
        self.deleting.emit(cid)
        self.pending_delete = cid
        self._delete_timer.start()
        if cid == self.conversation_id:
            self.conversation_id = None
            self.window.chat.clear()
            self.start()
        else:
            self.refresh_list()
        self.window.show_notice(f"Deleted “{title}”.", ("Undo", self.undo_delete))

    def undo_delete(self) -> None:
        """Bring back the conversation deleted last, and show it."""
        cid = self._take_pending()
        if cid is not None:
            self.open_conversation(cid)
            self.refresh_list()

    def _commit_delete(self) -> None:
        cid = self._take_pending()
        if cid is None:
            return
        self._writer.run(self.store.delete, cid, done=lambda _: self._deleted(), failed=self.store_failed)

    def _take_pending(self) -> int | None:
        """The deletion waiting for Undo, no longer waiting (None: there is none)."""
        cid, self.pending_delete = self.pending_delete, None
        self._delete_timer.stop()
        if cid is not None:
            self.window.hide_notice()
        return cid

    def _deleted(self) -> None:
        if self.conversation_id is None:
            self.start()
        else:
            self.refresh_list()

    def store_failed(self, error: BaseException) -> None:
        self.window.show_error(store_error_message(error))

    # -- export --------------------------------------------------------------------------------

    def export(self) -> None:
        if self.conversation_id is None:
            return
        conversation = self.store.conversation(self.conversation_id)
        chosen = self.window.ask_export_file(suggested_file_name(conversation))
        if chosen is None:
            return
        path, as_json = chosen
        messages = self.store.messages(self.conversation_id)
        self._files.run(
            to_json if as_json else to_markdown,
            conversation,
            messages,
            path,
            done=lambda _: self.window.show_status(f"Exported to {path}"),
            failed=lambda e: self.window.show_error(
                f"The conversation could not be exported: {getattr(e, 'strerror', None) or e}."
            ),
        )

    # -- start and end -------------------------------------------------------------------------

    def tidy_up(self) -> None:
        """At start, in the store's thread (so before any picture attached now is kept): pictures
        taken back for editing by the last run, image files no message refers to any more (those
        attached and never sent too), and projector copies whose model another tool removed."""

        def tidy() -> None:
            from smolchat.engine.vision.projector_files import remove_copies

            # "pasted": where earlier versions kept pasted pictures until they were sent
            for folder in (paths.cache_dir() / "pasted", drafts_dir()):
                shutil.rmtree(folder, ignore_errors=True)
            self.store.collect_garbage()
            remove_copies()

        self._writer.run(tidy, failed=lambda e: None)  # only disk space is at stake: never an error

    def close(self) -> None:
        self._commit_delete()  # before the store's thread closes: it runs what was queued
        self._files.close()


def _title_from(text: str) -> str:
    words = " ".join(text.split())
    return words if len(words) <= 48 else words[:47].rsplit(" ", 1)[0] + "…"
