"""A batch job: one prompt over many pictures, each answer a record in the results file.

The engine (local or a server) answers one picture at a time while a reader thread decodes
the next ones ahead of it, so the model never waits on a JPEG decoder. The model loads once
and keeps its cache between pictures: the part of the prompt before the picture (the
template's start and any system prompt) is evaluated for the first picture only.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from smolchat.batch.files import content_hash
from smolchat.batch.results import ResultsFile
from smolchat.engine.structured import AnswerFormatError
from smolchat.engine.types import SamplingParams, TurnEvent, TurnResult
from smolchat.errors import SmolChatError

log = logging.getLogger(__name__)

READ_AHEAD = 3  # pictures decoded ahead of the engine: enough to hide a slow decode, little memory


class JobStopped(SmolChatError):
    """The job cannot go on (the engine or the server failed, the disk is full); the records
    written so far stay, and the same command continues from there."""


class Answerer(Protocol):
    """What answers the pictures: the local engine service or a server."""

    def read(self, path: Path) -> object:
        """The picture as ``answer`` takes it, decoded (any thread; raises SmolChatError for a
        file that is not a usable picture)."""
        ...

    def answer(
        self, picture: object, prompt: str, system: str | None, sampling: SamplingParams, cancel: threading.Event
    ) -> Iterator[TurnEvent]:
        """TextDelta events, then a TurnResult. A SmolChatError whose ``per_file`` is true is
        this picture's error; any other ends the job."""
        ...


@dataclass(frozen=True)
class Progress:
    total: int  # files to answer in this run (those done before are not counted)
    answered: int
    failed: int
    already_done: int
    file: Path | None  # the one just finished
    elapsed_s: float

    @property
    def finished(self) -> int:
        return self.answered + self.failed


@dataclass
class Summary:
    answered: int = 0
    failed: int = 0
    already_done: int = 0
    stopped: bool = False  # by the user; the rest is answered by running the job again
    elapsed_s: float = 0.0
    answer_s: list[float] = field(default_factory=list)  # each answer's time, for rates


@dataclass(frozen=True)
class _Read:
    path: Path
    sha256: str
    picture: object = None
    error: str | None = None
    done_before: bool = False


class BatchJob:
    def __init__(
        self,
        files: list[Path],
        results: ResultsFile,
        answerer: Answerer,
        prompt: str,
        *,
        sampling: SamplingParams = SamplingParams(),
        system: str | None = None,
    ) -> None:
        self.files = files
        self.results = results
        self.answerer = answerer
        self.prompt = prompt
        self.sampling = sampling
        self.system = system

    def run(self, cancel: threading.Event, on_progress: Callable[[Progress], None] = lambda p: None) -> Summary:
        """Answer every file not answered before; returns when all are, or soon after ``cancel``
        is set (the answer under way is dropped, to be made again next time)."""
        started = time.perf_counter()
        done = self.results.open()
        summary = Summary()
        try:
            todo = [p for p in self.files if str(p) not in done]
            already = len(self.files) - len(todo)
            summary.already_done = already
            total = len(todo)
            reads: queue.Queue[_Read | None] = queue.Queue(maxsize=READ_AHEAD)
            reader = threading.Thread(
                target=self._read_ahead, args=(self.files, done, reads, cancel), name="batch-reader", daemon=True
            )
            reader.start()
            while not cancel.is_set():
                item = reads.get()
                if item is None:
                    break
                if item.done_before:
                    continue
                if str(item.path) in done:  # changed since it was answered: counted now
                    total += 1
                    summary.already_done -= 1
                record = self._answer(item, cancel, summary)
                if record is None:  # stopped during the answer
                    break
                self.results.write(record)
                on_progress(
                    Progress(
                        total,
                        summary.answered,
                        summary.failed,
                        summary.already_done,
                        item.path,
                        time.perf_counter() - started,
                    )
                )
            summary.stopped = cancel.is_set()
        finally:
            cancel.set()  # ends the reader, should this end by an error
            self.results.close()
        summary.elapsed_s = time.perf_counter() - started
        return summary

    def _read_ahead(self, files: list[Path], done: dict[str, str], reads: queue.Queue, cancel: threading.Event) -> None:
        def put(item: _Read | None) -> bool:
            while not cancel.is_set():
                try:
                    reads.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        for path in files:
            try:
                sha = content_hash(path)
            except OSError as e:
                if not put(_Read(path, "", error=f"{path}: cannot be read ({e.strerror or e}).")):
                    return
                continue
            if done.get(str(path)) == sha:
                item = _Read(path, sha, done_before=True)
            else:
                try:
                    item = _Read(path, sha, picture=self.answerer.read(path))
                except SmolChatError as e:
                    item = _Read(path, sha, error=str(e))
                except Exception as e:  # a decoder's own failure on a hostile file is that file's error
                    log.debug("reading %s", path, exc_info=True)
                    item = _Read(path, sha, error=f"{path}: cannot be read as a picture ({type(e).__name__}).")
            if not put(item):
                return
        put(None)

    def _answer(self, item: _Read, cancel: threading.Event, summary: Summary) -> dict | None:
        record: dict = {"file": str(item.path), "sha256": item.sha256}
        if item.error is not None:
            summary.failed += 1
            return {**record, "error": item.error}
        result: TurnResult | None = None
        began = time.perf_counter()
        try:
            for event in self.answerer.answer(item.picture, self.prompt, self.system, self.sampling, cancel):
                if isinstance(event, TurnResult):
                    result = event
        except SmolChatError as e:
            if not getattr(e, "per_file", False):
                raise JobStopped(f"The job stopped at {item.path}: {e}") from None
            summary.failed += 1
            return {**record, "error": str(e)}
        if result is None or result.stats.finish_reason == "cancelled" or cancel.is_set():
            return None
        seconds = time.perf_counter() - began
        stats = {
            "prompt_tokens": result.stats.prompt_tokens,
            "image_tokens": result.stats.image_tokens,
            "cached_tokens": result.stats.reused_tokens,
            "generated_tokens": result.stats.generated_tokens,
            "finish_reason": result.stats.finish_reason,
            "seconds": round(seconds, 3),
        }
        answer_format = self.sampling.answer_format
        if answer_format is None:
            summary.answered += 1
            summary.answer_s.append(seconds)
            return {**record, "result": result.text, "stats": stats}
        try:
            parsed = answer_format.check(result.text)
        except AnswerFormatError as e:
            summary.failed += 1
            error = f"The answer does not fit the schema: {e}"
            return {**record, "error": error, "answer": result.text, "stats": stats}
        summary.answered += 1
        summary.answer_s.append(seconds)
        return {**record, "result": parsed, "stats": stats}
