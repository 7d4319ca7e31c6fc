"""Conversations kept aside: the KV cache of a conversation the engine left for another,
copied to host memory so that coming back to it costs a copy, not a re-read of its images.

Clients that take turns (two windows' conversations, several API clients resending their
own histories) would otherwise each evaluate their whole prompt every time. Entries go least
recently used first, within a byte budget.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from smolchat.engine.tokenize import ImageUnit, TokenizedPrompt, Unit, common_prefix

# Leaving a conversation keeps it when at least this many positions of it would be lost, or
# an image: editing the last message of the same conversation should not copy the cache.
KEEP_WHEN_LOSING = 256


@dataclass(frozen=True)
class KeptState:
    units: tuple[Unit, ...]  # what the state holds, in order
    n_past: int
    data: bytes  # llama.cpp's copy of the sequence (llama_state_seq_get_data)


class KeptConversations:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[int, KeptState] = OrderedDict()
        self._next_key = 0

    @property
    def used_bytes(self) -> int:
        return sum(len(e.data) for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def closest(self, units: Sequence[Unit]) -> tuple[int | None, int]:
        """The kept conversation sharing the longest start with ``units``, and how many units."""
        best_key, best = None, 0
        for key, entry in self._entries.items():
            n = common_prefix(entry.units, units)
            if n > best:
                best_key, best = key, n
        return best_key, best

    def take(self, key: int) -> KeptState:
        """Remove and return a kept conversation (it becomes the live one)."""
        return self._entries.pop(key)

    def fits(self, n_bytes: int) -> bool:
        return 0 < n_bytes <= self.budget_bytes

    def keep(self, state: KeptState) -> None:
        """Keep ``state``; those it makes pointless (its own earlier starts) and the least
        recently used beyond the budget go."""
        if not self.fits(len(state.data)):
            return
        for key in [k for k, e in self._entries.items() if common_prefix(e.units, state.units) == len(e.units)]:
            del self._entries[key]
        self._entries[self._next_key] = state
        self._next_key += 1
        while self.used_bytes > self.budget_bytes:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def worth_keeping(live: Sequence[Unit], wanted: Sequence[Unit]) -> bool:
    """Whether moving the live cache from ``live`` to ``wanted`` loses enough to keep it."""
    lost = live[common_prefix(live, wanted) :]
    return any(isinstance(u, ImageUnit) for u in lost) or sum(map(TokenizedPrompt.unit_pos, lost)) >= KEEP_WHEN_LOSING
