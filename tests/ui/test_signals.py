"""Signals emitted from Python leave Python's own objects as they were.

PySide6 6.12.0's ``emit()`` hands back True without a reference of its own, so every emit
from Python takes one from True. On Python 3.11, where True is counted like any object, the
app aborted ("bool_dealloc: deallocating True or False") once a few thousand answer pieces
had streamed in a session, or at exit.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

PIECES = 2000  # a few long answers, streamed a piece per signal as the engine worker does


class Stream(QObject):
    delta = Signal(int, str)  # the engine worker's: turn id, text
    ready = Signal(bool)


def test_streaming_answer_pieces_leaves_pythons_count_of_true_as_it_was(qtbot):
    stream = Stream()
    received = []
    stream.delta.connect(lambda turn, text: received.append(len(text)))
    stream.ready.connect(lambda shown: received.append(0))
    before = sys.getrefcount(True)  # on 3.12 and later True is immortal: the count never moves
    for piece in range(PIECES):
        stream.delta.emit(piece, " word")
        stream.ready.emit(False)
    after = sys.getrefcount(True)
    assert len(received) == 2 * PIECES
    # a few references may come or go elsewhere meanwhile; one lost per emit is thousands
    assert abs(after - before) < 50, f"True lost {before - after} references in {2 * PIECES} emits"
