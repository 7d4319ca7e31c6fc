"""Background jobs for the model picker: listing a repo on the Hub, downloading a model.

Each job's work runs in a Python daemon thread; the job itself is a QObject of the UI thread,
so its signals (progress, then finished or failed with the message to show) always reach the
window there. A job stays referenced until it has reported, however many are started and
dropped: a listing the user moved away from may finish unseen, and closing the app never
waits for one (the Hub may take seconds to answer). Downloads keep going while the user
chats and can be cancelled; a cancelled download keeps its part for next time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import ClassVar

from PySide6.QtCore import QObject, Qt, Signal, Slot

from smolchat.errors import SmolChatError
from smolchat.models.choice import estimate_files
from smolchat.models.download import Progress, download
from smolchat.models.hf_cache import cached_files
from smolchat.models.hub import Hub, RemoteFile, RepoListing
from smolchat.models.library import InstalledModel, model_name
from smolchat.models.machine import machine_memory

log = logging.getLogger(__name__)


class Job(QObject):
    finished = Signal(object)
    failed = Signal(str)

    # From the work's thread to the job in the UI thread: (signal name, value).
    _report = Signal(str, object)

    # Every started job until it has reported, so none is destroyed while its work runs.
    unfinished: ClassVar[set[Job]] = set()

    def __init__(self, description: str, work: Callable[[], object]) -> None:
        super().__init__()
        self.description = description  # "Listing owner/name": what a failure message starts with
        self._work = work
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._report.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def start(self) -> Job:
        Job.unfinished.add(self)
        self._thread.start()
        return self

    def wait(self) -> None:
        """Wait for the work to end (its report may still be on its way to the UI thread)."""
        self._done.wait()

    def _run(self) -> None:
        try:
            result = self._work()
        except SmolChatError as e:
            self._report.emit("failed", str(e))
        except Exception as e:  # a bug, or something from outside nobody foresaw: say so, never go quiet
            log.exception("%s failed", self.description)
            self._report.emit("failed", f"{self.description} failed unexpectedly ({type(e).__name__}: {e}).")
        else:
            self._report.emit("finished", result)
        finally:
            self._done.set()

    @Slot(str, object)
    def _deliver(self, name: str, value: object) -> None:
        try:
            getattr(self, name).emit(value)
        finally:
            if name != "progress":
                Job.unfinished.discard(self)


class ListingJob(Job):
    """A repo's files, from the Hub or as last listed, each text file with what it would need
    here at ``n_ctx``, and the names of those already downloaded (reading the cache and the
    headers of files there: off the UI thread)."""

    def __init__(
        self, hub: Hub, repo: str, *, n_ctx: int, n_gpu_layers: int, listing: RepoListing | None = None
    ) -> None:
        """``listing``: estimate again for the repo as already listed, without asking the Hub."""
        self.n_ctx, self.n_gpu_layers = n_ctx, n_gpu_layers

        def work() -> tuple[RepoListing, list, set[str]]:
            listing_now = listing or hub.list_repo(repo)
            estimates = estimate_files(
                listing_now, hub.cache_dir, machine_memory(), n_ctx=n_ctx, n_gpu_layers=n_gpu_layers
            )
            try:
                downloaded = {f.filename for f in cached_files(hub.cache_dir, listing_now.repo)}
            except OSError:  # an unreadable cache: nothing is shown as downloaded
                downloaded = set()
            return listing_now, estimates, downloaded

        super().__init__(f"Listing {repo}", work)


class DownloadJob(Job):
    progress = Signal(object)  # models.download.Progress

    def __init__(self, hub: Hub, repo: str, text: RemoteFile, projector: RemoteFile) -> None:
        self.cancel_event = threading.Event()
        self.hub, self.repo, self.text, self.projector = hub, repo, text, projector
        super().__init__(f"Downloading {text.path} from {repo}", self._download)

    def _download(self) -> InstalledModel:
        text_path, projector_path = download(
            self.hub, self.repo, [self.text, self.projector], on_progress=self._progress, cancel=self.cancel_event
        )
        return InstalledModel(
            model_name(self.repo, self.text.path),
            text_path,
            projector_path,
            self.repo,
            self.text.size + self.projector.size,
        )

    def _progress(self, p: Progress) -> None:
        self._report.emit("progress", p)

    def cancel(self) -> None:
        self.cancel_event.set()
