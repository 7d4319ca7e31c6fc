"""Chat → Batch over a folder: the job runs on a thread of its own, its turns on the window's
engine service behind the window's own questions (which go first), its progress back here
through signals. Loading another model stops it: its answers would mix two models."""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices

from smolchat.errors import SmolChatError
from smolchat.ui.views.batch_dialog import BatchDialog, BatchForm

log = logging.getLogger(__name__)


class BatchRun(QObject):
    """One job's thread; its reports reach the UI thread as signals."""

    started = Signal(int)  # pictures found
    progress = Signal(object)  # a batch.Progress
    finished = Signal(object)  # a batch.Summary
    failed = Signal(str)
    _report = Signal(str, object)

    def __init__(self, form: BatchForm, service, info) -> None:
        super().__init__()
        self.form, self._service, self._info = form, service, info
        self.cancel = threading.Event()
        self._report.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        self._thread = threading.Thread(target=self._run, name="batch", daemon=True)

    def start(self) -> BatchRun:
        self._thread.start()
        return self

    def _run(self) -> None:
        from smolchat.batch import BatchJob, ResultsFile, batch_files
        from smolchat.batch.answerers import LocalAnswerer
        from smolchat.batch.results import schema_columns
        from smolchat.engine import SamplingParams
        from smolchat.engine.structured import schema_from_file

        try:
            files = batch_files([self.form.folder], recursive=self.form.recursive)
            if not files:
                raise SmolChatError(f"No pictures in {self.form.folder}.")
            answer_format = schema_from_file(self.form.schema) if self.form.schema else None
            results = ResultsFile(self.form.results, columns=schema_columns(answer_format))
            sampling = SamplingParams(temperature=0.0, max_tokens=256, answer_format=answer_format)
            job = BatchJob(files, results, LocalAnswerer(self._service, self._info), self.form.prompt,
                           sampling=sampling)  # fmt: skip
            self._report.emit("started", len(files))
            summary = job.run(self.cancel, lambda p: self._report.emit("progress", p))
        except SmolChatError as e:
            self._report.emit("failed", str(e))
        except Exception as e:  # a bug: say so rather than go quiet
            log.exception("batch job failed")
            self._report.emit("failed", f"The batch stopped unexpectedly ({type(e).__name__}: {e}).")
        else:
            self._report.emit("finished", summary)

    @Slot(str, object)
    def _deliver(self, name: str, value: object) -> None:
        getattr(self, name).emit(value)


class BatchController(QObject):
    def __init__(self, window, worker, turns) -> None:
        super().__init__(window)
        self.window, self.worker, self.turns = window, worker, turns
        self.dialog: BatchDialog | None = None
        self.run: BatchRun | None = None
        self._stopped_because: str | None = None
        window.batch_requested.connect(self.open)
        worker.loading.connect(lambda *_: self._model_changed())

    def open(self) -> BatchDialog:
        if self.dialog is None:
            self.dialog = BatchDialog(self.window)
            self.dialog.start_requested.connect(self.start)
            self.dialog.stop_requested.connect(self.stop)
            self.dialog.open_results_requested.connect(
                lambda path: QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))
            )
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def start(self, form: BatchForm) -> None:
        assert self.dialog is not None
        if self.run is not None:
            return
        info = self.turns.model_info
        if info is None:
            self.dialog.show_error("Load a model first (Model → Choose model…).")
            return
        if not info.has_vision:
            self.dialog.show_error("This model was loaded without its image projector, so it cannot read pictures.")
            return
        run = self.run = BatchRun(form, self.worker.service, info)
        run.started.connect(lambda total: self.dialog and self.dialog.show_running(total))
        run.progress.connect(self._progress)
        run.finished.connect(self._finished)
        run.failed.connect(self._failed)
        self.dialog.show_running()
        run.start()

    def stop(self) -> None:
        if self.run is not None:
            self.run.cancel.set()

    def close(self) -> None:
        self.stop()

    def _model_changed(self) -> None:
        if self.run is not None:
            self.run.cancel.set()
            self._stopped_because = "Another model is loading, so the batch stopped. Start it again to continue."

    def _progress(self, p) -> None:
        if self.dialog is None:
            return
        answered_s = p.elapsed_s
        rate = 60 * p.finished / answered_s if answered_s > 0 and p.finished else None
        left = (p.total - p.finished) * answered_s / p.finished if p.finished else None
        self.dialog.show_progress(p.finished, p.total, p.failed, p.already_done, rate, left)

    def _finished(self, summary) -> None:
        self.run = None
        if self.dialog is None:
            return
        because, self._stopped_because = self._stopped_because, None
        before = f" ({summary.already_done} answered before)" if summary.already_done else ""
        counts = f"{summary.answered} answered, {summary.failed} could not be read{before}"
        if summary.stopped:
            self.dialog.show_finished(because or f"Stopped: {counts}. Start again to continue.")
        else:
            rate = f", {60 * len(summary.answer_s) / sum(summary.answer_s):.1f} a minute" if summary.answer_s else ""
            self.dialog.show_finished(f"Done: {counts}{rate}.")

    def _failed(self, message: str) -> None:
        self.run = None
        self._stopped_because = None
        if self.dialog is not None:
            self.dialog.show_error(message)
