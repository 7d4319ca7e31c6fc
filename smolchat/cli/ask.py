"""``smolchat ask``: one question (with images) to a model, answer streamed to stdout."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from smolchat.cli.options import (
    add_media_options,
    add_model_options,
    engine_settings,
    model_files,
    remote_server,
)
from smolchat.engine.figures import describe_stats

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from smolchat.engine import SamplingParams, TurnResult
    from smolchat.engine.engine import Engine
    from smolchat.engine.types import TurnEvent

HELP = "ask a question about images (or just text)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help=HELP, description=HELP.capitalize() + ".")
    p.add_argument("prompt", help="the question")
    p.add_argument(
        "--image",
        "-i",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="an image or a PDF to ask about (repeat for several)",
    )
    add_media_options(p)
    p.add_argument("--system", metavar="TEXT", help="a system prompt")
    add_model_options(p, remote=True)
    s = p.add_argument_group("sampling")
    s.add_argument("--max-tokens", type=int, default=512, metavar="N", help="longest answer (default 512)")
    s.add_argument("--temperature", type=float, default=0.2, metavar="T", help="0 picks the likeliest token")
    s.add_argument("--top-p", type=float, default=0.95, metavar="P")
    s.add_argument("--top-k", type=int, default=40, metavar="K")
    s.add_argument("--repeat-penalty", type=float, default=1.1, metavar="R")
    s.add_argument("--seed", type=int, metavar="N", help="for repeatable answers")
    s.add_argument("--stop", action="append", default=[], metavar="TEXT", help="end the answer at this text")
    s.add_argument(
        "--schema",
        type=Path,
        metavar="FILE",
        help="answer in JSON that validates against this JSON schema (always: closed in time if --max-tokens runs out)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object with the answer and its figures instead of streaming"
    )


def run(args: argparse.Namespace) -> int:
    from smolchat.calibrate import open_engine  # loads llama.cpp
    from smolchat.engine import Message, SamplingParams
    from smolchat.engine.structured import schema_from_file
    from smolchat.media import attach

    # a file that cannot be used is refused before the model loads
    attachments = attach.check(args.image, args.video, pages=args.pages)
    answer_format = schema_from_file(args.schema) if args.schema else None
    sampling = SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repeat_penalty=args.repeat_penalty,
        seed=args.seed,
        max_tokens=args.max_tokens,
        stop=tuple(args.stop),
        answer_format=answer_format,
    )
    server = remote_server(args)
    if server is not None:
        with server:
            return _ask_server(server, attachments, sampling, args)
    from smolchat.budget.fit import vision_memory_rule

    model, mmproj = model_files(args)
    settings = engine_settings(args, mmproj)
    with open_engine(model, mmproj, settings, fits=vision_memory_rule(settings)) as engine:
        if engine.template_note:
            print(f"smolchat: {engine.template_note}", file=sys.stderr)
        media = media_content(engine, attachments, args)
        messages = [Message.system(args.system)] if args.system else []
        messages.append(Message("user", (*media, *((args.prompt,) if args.prompt or not media else ()))))
        result = _answer(lambda cancel: engine.run_turn(messages, sampling, cancel=cancel), stream=not args.json)
        vision = engine.vision_plan.describe() if engine.vision_plan else None
    return _report(result, answer_format, vision, args)


def _ask_server(server, attachments: list, sampling: SamplingParams, args: argparse.Namespace) -> int:
    """The question sent to a server: photos and PDF pages as images, the answer streamed."""
    from smolchat.engine import Message
    from smolchat.engine.images import DEFAULT_MAX_SIDE
    from smolchat.media import pdf
    from smolchat.remote import RemoteError

    media: list = []
    for a in attachments:
        if a.kind == "video":
            raise RemoteError(
                f"{a.path}: clips are read by the local engine only (a server's chat API takes no video); "
                "leave out --server, or send frames as --image files."
            )
        media += pdf.render_pages(a.path, list(a.pages), DEFAULT_MAX_SIDE) if a.kind == "pages" else [a.path]
    messages = [Message.system(args.system)] if args.system else []
    messages.append(Message("user", (*media, *((args.prompt,) if args.prompt or not media else ()))))
    result = _answer(lambda cancel: server.turn(messages, sampling, cancel=cancel), stream=not args.json)
    return _report(result, sampling.answer_format, None, args, server={"url": server.url, "model": server.model})


def _report(
    result: TurnResult, answer_format, vision: str | None, args: argparse.Namespace, server: dict | None = None
) -> int:
    parsed = answer_format.check(result.text) if answer_format and result.stats.finish_reason != "cancelled" else None
    if args.json:
        report = {"answer": result.text, "stats": result.stats.as_dict(), "vision": vision}
        if server is not None:
            report["server"] = server
        if answer_format is not None:
            report["result"] = parsed
        print(json.dumps(report, indent=2))
    else:
        print()
        by = f" · {server['model']} at {server['url']}" if server else ""
        print(f"[{describe_stats(result.stats.as_dict(), brief=False, vision=vision)}{by}]")
    return 130 if result.stats.finish_reason == "cancelled" else 0


def media_content(engine: Engine, attachments: list, args: argparse.Namespace) -> tuple:
    """The attachments as message content for this model (frames at its tile size, pages at
    its preprocessing size); a note where the model was not trained on video."""
    from smolchat.engine import EngineError
    from smolchat.media import attach
    from smolchat.media.video import NOT_TRAINED_ON_VIDEO, trained_on_video

    if not attachments:
        return ()
    if engine.projector_info is None:
        raise EngineError("This model was loaded without a vision projector (mmproj), so it cannot read images.")
    if any(a.kind == "video" for a in attachments) and not trained_on_video(
        engine.text_info.name, engine.text_info.path.name
    ):
        print(f"smolchat: {NOT_TRAINED_ON_VIDEO}", file=sys.stderr)
    return attach.content(attachments, engine.projector_info, fps=args.fps, max_frames=args.max_frames)


def _answer(turn: Callable[[threading.Event], Iterator[TurnEvent]], *, stream: bool) -> TurnResult:
    """Run the turn on a worker thread so that Ctrl+C can cancel it at once."""
    from smolchat.engine import TextDelta, TurnResult

    events: queue.Queue = queue.Queue()
    cancel = threading.Event()

    def work() -> None:
        try:
            for event in turn(cancel):
                events.put(event)
        except BaseException as e:  # handed to the main thread
            events.put(e)

    worker = threading.Thread(target=work, name="smolchat-engine", daemon=True)
    worker.start()
    while True:
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            continue
        except KeyboardInterrupt:
            cancel.set()
            continue
        if isinstance(event, BaseException):
            worker.join()
            raise event
        if isinstance(event, TextDelta):
            if stream:
                sys.stdout.write(event.text)
                sys.stdout.flush()
        elif isinstance(event, TurnResult):
            worker.join()
            return event
