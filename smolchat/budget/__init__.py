"""What a conversation costs before it is sent: image tokens by detail level, the context
budget of every turn, the wait, and the context sizes that fit in memory."""
