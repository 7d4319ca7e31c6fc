"""``smolchat batch``: one prompt over a folder of pictures, one result line per picture.

Run the same command again after Ctrl+C, a crash or a full disk: the pictures already
answered (same path, same content) are skipped, and the rest are appended.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from smolchat.cli.options import add_model_options, engine_settings, model_files, remote_server
from smolchat.errors import SmolChatError

if TYPE_CHECKING:
    from smolchat.batch import Answerer, BatchJob, Summary

HELP = "answer one prompt for every picture of a folder, into a JSON Lines or CSV file"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help=HELP,
        description=HELP.capitalize()
        + ". Stopped or killed, the same command continues where it stopped: pictures already answered "
        "(same path and content) are skipped.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="FOLDER|FILE", help="folders of pictures, or pictures")
    p.add_argument("--prompt", "-p", required=True, help="what to ask of every picture")
    p.add_argument("--system", metavar="TEXT", help="a system prompt")
    p.add_argument(
        "--schema",
        type=Path,
        metavar="FILE",
        help="answer in JSON that validates against this JSON schema: 'result' is then the object "
        "(and in CSV, each top-level property a column)",
    )
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        metavar="FILE",
        help="the results: .jsonl (one JSON object a line) or .csv; appended to, and continued on "
        "a restart (default: JSON lines on standard output, nothing kept)",
    )
    p.add_argument("--recursive", "-R", action="store_true", help="also the pictures of subfolders")
    s = p.add_argument_group("sampling")
    s.add_argument("--max-tokens", type=int, default=256, metavar="N", help="longest answer (default 256)")
    s.add_argument(
        "--temperature", type=float, default=0.0, metavar="T", help="default 0: the likeliest answer, every time"
    )
    s.add_argument("--seed", type=int, metavar="N")
    add_model_options(p, remote=True)


def run(args: argparse.Namespace) -> int:
    from smolchat.batch import BatchJob, ResultsFile, batch_files
    from smolchat.batch.results import schema_columns
    from smolchat.engine import SamplingParams
    from smolchat.engine.structured import schema_from_file

    files = batch_files(args.inputs, recursive=args.recursive)
    if not files:
        where = ", ".join(str(p) for p in args.inputs)
        also = "" if args.recursive else " (add --recursive for subfolders)"
        raise SmolChatError(f"No pictures in {where}{also}.")
    answer_format = schema_from_file(args.schema) if args.schema else None
    if args.max_tokens < 1:
        raise SmolChatError("--max-tokens must be at least 1.")
    sampling = SamplingParams(
        temperature=args.temperature, seed=args.seed, max_tokens=args.max_tokens, answer_format=answer_format
    )
    results = ResultsFile(args.out, columns=schema_columns(answer_format))
    server = remote_server(args)
    if server is not None:
        from smolchat.batch.answerers import RemoteAnswerer

        with server:
            print(f"smolchat batch: {server.model} at {server.url}", file=sys.stderr)
            return _run_job(BatchJob(files, results, RemoteAnswerer(server), args.prompt, sampling=sampling,
                                     system=args.system), args)  # fmt: skip
    from smolchat.service import EngineService

    service = EngineService(thread_name="engine")
    try:
        answerer = _load(service, args)
        return _run_job(BatchJob(files, results, answerer, args.prompt, sampling=sampling, system=args.system), args)
    finally:
        service.close()


def _load(service, args: argparse.Namespace) -> Answerer:
    """The model loaded once by the engine service, for every picture."""
    from smolchat.batch.answerers import LocalAnswerer
    from smolchat.service import Failed, Loaded, LoadRequest

    model, mmproj = model_files(args)
    if mmproj is None:
        raise SmolChatError("A batch job reads pictures: give the model's vision projector (--mmproj).")
    settings = engine_settings(args, mmproj)
    final = service.stream(LoadRequest(args.repo or model.stem, model, mmproj, settings)).wait()
    if isinstance(final, Failed):
        raise SmolChatError(final.message)
    assert isinstance(final, Loaded)
    if final.info.template_note:
        print(f"smolchat: {final.info.template_note}", file=sys.stderr)
    return LocalAnswerer(service, final.info)


def _run_job(job: BatchJob, args: argparse.Namespace) -> int:
    """The job on a worker thread, a progress bar here; Ctrl+C stops it cleanly (twice: at once)."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    from smolchat.batch import JobStopped, Progress

    cancel = threading.Event()
    outcome: list = []
    bar = tqdm(total=len(job.files), unit="picture", file=sys.stderr, dynamic_ncols=True, disable=None)

    def progress(p: Progress) -> None:
        bar.total = p.total
        bar.n = p.finished
        bar.set_postfix_str(f"{p.failed} failed" if p.failed else "", refresh=False)
        bar.refresh()

    finished = threading.Event()  # not Thread.join: Ctrl+C during a join can leave the thread seen as ended

    def work() -> None:
        try:
            outcome.append(job.run(cancel, progress))
        except BaseException as e:  # handed to the main thread
            outcome.append(e)
        finally:
            finished.set()

    threading.Thread(target=work, name="batch", daemon=True).start()
    try:
        while not finished.is_set():
            try:
                finished.wait(timeout=0.2)
            except KeyboardInterrupt:
                if cancel.is_set():
                    raise
                cancel.set()
                bar.write("smolchat batch: stopping after the answer under way is dropped (Ctrl+C again: at once)")
    finally:
        bar.close()
    result = outcome[0] if outcome else JobStopped("The job ended without a result.")
    if isinstance(result, JobStopped):
        print(f"smolchat: {result} Run the same command again to continue.", file=sys.stderr)
        return 1
    if isinstance(result, BaseException):
        raise result
    print(_summary(result, args.out), file=sys.stderr)
    return 130 if result.stopped else 0


def _summary(s: Summary, out: Path | None) -> str:
    rate = f", {60 * len(s.answer_s) / sum(s.answer_s):.1f} pictures a minute" if s.answer_s else ""
    before = f" ({s.already_done} answered before)" if s.already_done else ""
    where = f" -> {out}" if out else ""
    head = "Stopped" if s.stopped else "Done"
    tail = "; run the same command again to continue" if s.stopped else ""
    return f"{head}: {s.answered} answered, {s.failed} failed{before} in {s.elapsed_s:.1f} s{rate}{where}{tail}."
