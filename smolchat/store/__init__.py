"""Conversations and their images, kept on disk (SQLite, WAL)."""

from smolchat.store.conversations import (
    COMPLETE,
    INTERRUPTED,
    STOPPED,
    STREAMING,
    Conversation,
    Store,
    StoredMessage,
    StoreError,
)

__all__ = ["COMPLETE", "INTERRUPTED", "STOPPED", "STREAMING", "Conversation", "Store", "StoreError", "StoredMessage"]
