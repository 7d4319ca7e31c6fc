"""Work the window must not wait for (file copies, hashing, database writes, image checks),
run in a thread of its own, one job after another, with the result handed back on the UI
thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

log = logging.getLogger(__name__)


class Background(QObject):
    """Jobs run in order in one thread; ``done`` gets the result and ``failed`` the exception,
    both called in the thread this object lives in (the UI thread)."""

    _finished = Signal(object, object)  # callback, its argument

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._finished.connect(self._deliver)  # emitted from the executor's thread: queued
        self._closed = False

    def run(
        self,
        work: Callable[..., Any],
        *args: Any,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> Future:
        def job() -> Any:
            try:
                result = work(*args)
            except Exception as e:
                if failed is None:
                    log.exception("%s failed", getattr(work, "__name__", work))
                self._finished.emit(failed, e)
                raise
            self._finished.emit(done, result)
            return result

        return self._executor.submit(job)

    @Slot(object, object)
    def _deliver(self, callback: Callable[[Any], None] | None, value: Any) -> None:
        if callback is not None and not self._closed:
            callback(value)

    def close(self) -> None:
        """Finish what was submitted (without calling back), then end the thread."""
        self._closed = True
        self._executor.shutdown(wait=True)
