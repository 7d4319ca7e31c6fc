"""Background jobs for the model picker: listing a repo on the Hub, downloading a model.

Each job runs in a thread of its own and reports with signals: progress while it works, then
finished or failed (with the message to show). Downloads keep going while the user chats and
can be cancelled; a cancelled download keeps its part for next time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, Signal

from smolchat.errors import SmolChatError
from smolchat.models.download import Progress, download
from smolchat.models.hub import Hub, RemoteFile
from smolchat.models.library import InstalledModel


class Job(QObject):
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__()
        self._work = work
        self._thread = QThread()
        self._thread.setObjectName(type(self).__name__)
        self.moveToThread(self._thread)
        self._thread.started.connect(self._run)

    def start(self) -> Job:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            result = self._work()
        except SmolChatError as e:
            self.failed.emit(str(e))
        else:
            self.finished.emit(result)
        finally:
            self._thread.quit()

    def wait(self) -> None:
        self._thread.wait()


class ListingJob(Job):
    """A repo's files, from the Hub or as last listed."""

    def __init__(self, hub: Hub, repo: str) -> None:
        super().__init__(lambda: hub.list_repo(repo))


class DownloadJob(Job):
    progress = Signal(object)  # models.download.Progress

    def __init__(self, hub: Hub, repo: str, text: RemoteFile, projector: RemoteFile) -> None:
        self.cancel_event = threading.Event()
        self.hub, self.repo, self.text, self.projector = hub, repo, text, projector
        super().__init__(self._download)

    def _download(self) -> InstalledModel:
        text_path, projector_path = download(self.hub, self.repo, [self.text, self.projector],
                                             on_progress=self._report, cancel=self.cancel_event)
        return InstalledModel(f"{self.repo}:{self.text.format_name}", text_path, projector_path, self.repo,
                              self.text.size + self.projector.size)

    def _report(self, p: Progress) -> None:
        self.progress.emit(p)

    def cancel(self) -> None:
        self.cancel_event.set()
