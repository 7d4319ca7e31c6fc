"""``smolchat budget``: what a message with images will cost before it is sent."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from smolchat.budget.detail import Detail
from smolchat.cli.options import add_media_options, add_model_options, engine_settings, model_files, remote_server

if TYPE_CHECKING:
    from smolchat.budget.images import ImageCost

HELP = "show what a message with images costs: tokens, context, wait and memory"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("budget", help=HELP, description=HELP.capitalize() + ".")
    p.add_argument("prompt", nargs="?", default="What is in this picture?", help="the message (default: %(default)r)")
    p.add_argument(
        "--image",
        "-i",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="an image or a PDF sent with it (repeat for several)",
    )
    add_media_options(p)
    p.add_argument("--system", metavar="TEXT", help="a system prompt")
    p.add_argument("--max-tokens", type=int, default=512, metavar="N", help="room kept for the reply (default 512)")
    add_model_options(p, remote=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    # llama.cpp and the image readers load only when a budget is asked for
    from smolchat.budget.context import plan_context
    from smolchat.budget.fit import largest_context, memory_settings, suggest_gpu_layers, vision_memory_rule
    from smolchat.budget.images import ImageMarkers, image_cost, prepared_size
    from smolchat.calibrate import open_engine
    from smolchat.engine import Message
    from smolchat.engine.images import PreparedImage
    from smolchat.media import attach
    from smolchat.models.machine import machine_memory
    from smolchat.models.memory import estimate_memory, verdict

    attachments = attach.check(args.image, args.video, pages=args.pages)
    server = remote_server(args)
    if server is not None:
        with server:
            return _server_estimate(server, attachments, args)
    model, mmproj = model_files(args)
    settings = engine_settings(args, mmproj)
    detail = Detail(args.detail)
    with open_engine(model, mmproj, settings, fits=vision_memory_rule(settings)) as engine:
        markers = ImageMarkers.from_tokenizer(engine.count_tokens)
        parts: tuple = ()
        entries: list[tuple[dict, ImageCost]] = []  # each image, page and frame: where it is, its cost
        projector = engine.projector_info
        if attachments and projector is not None:
            parts = attach.planned_content(attachments, projector, fps=args.fps, max_frames=args.max_frames)
            for part in parts:
                if isinstance(part, PreparedImage):
                    cost = image_cost(part.width, part.height, projector, detail, markers, one_tile=part.one_tile)
                    entries.append((_where(part), cost))
                elif not isinstance(part, str):
                    entries.append(({"path": str(part)}, image_cost(*prepared_size(part), projector, detail, markers)))
        costs = [cost for _, cost in entries]
        history = [Message.system(args.system)] if args.system else []
        new = Message("user", (*parts, args.prompt)) if parts else Message.user(args.prompt, images=args.image)
        budget = plan_context(
            engine,
            history,
            new,
            n_ctx=args.n_ctx,
            reply_tokens=args.max_tokens,
            image_tokens={len(history): sum(c.tokens for c in costs)},
        )
        speed = engine.speed
        loaded = memory_settings(engine.info())
        text_info, projector_info = engine.text_info, engine.projector_info
    machine = machine_memory()
    estimate = estimate_memory(text_info, projector_info, n_ctx=args.n_ctx, **loaded)
    fit = verdict(estimate, machine)
    largest = largest_context(text_info, projector_info, machine, **loaded)
    gpu = suggest_gpu_layers(text_info, projector_info, machine, n_ctx=args.n_ctx, **loaded)
    message = budget.items[-2]
    new_tiles = sum(c.tiles for c in costs)
    report = {
        "images": [{**w, **_image(c, speed.wait_s(c.tiles, c.tokens))} for w, c in entries if "time_s" not in w],
        "frames": [{**w, **_image(c, speed.wait_s(c.tiles, c.tokens))} for w, c in entries if "time_s" in w],
        "text_tokens": budget.used - args.max_tokens - sum(c.tokens for c in costs),
        "reply_reserve": args.max_tokens,
        "total_tokens": budget.used,
        "n_ctx": args.n_ctx,
        "fits": budget.fits,
        "detail": detail.value,
        "message": budget.message(largest),
        "wait_s": _round(speed.wait_s(new_tiles, message.tokens)),
        "memory_mb": round(estimate.total / 2**20),
        "memory_verdict": fit.fit.value,
        "memory_message": fit.message,
        "largest_n_ctx": largest,
        "n_ctx_train": text_info.n_ctx_train,
        "gpu_layers": gpu.layers,
        "gpu_message": gpu.message,
        "items": [vars(i) for i in budget.items],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_text(report, estimate.lines()))
    return 0


# A server tokenizes with its own model: each message's template markers, about
TEMPLATE_TOKENS_PER_MESSAGE = 6


def _server_estimate(server, attachments: list, args: argparse.Namespace) -> int:
    """What the message will cost on a server, estimated here: only the server knows its
    projector and tokenizer, and it reports the exact count (usage) after each turn."""
    from smolchat.budget.context import estimated_tokens
    from smolchat.budget.images import image_cost, prepared_size, typical_projector
    from smolchat.engine.images import DEFAULT_MAX_SIDE
    from smolchat.media import pdf
    from smolchat.remote import RemoteError

    if any(a.kind == "video" for a in attachments):
        raise RemoteError("Clips are read by the local engine only; a server's chat API takes no video.")
    projector = typical_projector(server.model)
    images = []
    for a in attachments:
        if a.kind == "pages":
            sizes = pdf.page_sizes(a.path, list(a.pages), DEFAULT_MAX_SIDE)
            entries = [({"path": str(a.path), "page": n}, size) for size, n in zip(sizes, a.pages)]
        else:
            entries = [({"path": str(a.path)}, prepared_size(a.path))]
        for where, (width, height) in entries:
            # llama-server reads an image's whole grid; a SmolChat server may read less (its --detail)
            cost = image_cost(width, height, projector, Detail.FULL)
            images.append({**where, "width": width, "height": height, "tiles": cost.tiles, "tokens": cost.tokens})
    texts = [t for t in (args.system, args.prompt) if t]
    text_tokens = sum(estimated_tokens(t) + TEMPLATE_TOKENS_PER_MESSAGE for t in texts)
    image_tokens = sum(i["tokens"] for i in images)
    report = {
        "estimate": True,
        "server": {"url": server.url, "model": server.model},
        "images": images,
        "image_tokens": image_tokens,
        "text_tokens": text_tokens,
        "reply_reserve": args.max_tokens,
        "total_tokens": image_tokens + text_tokens + args.max_tokens,
        "message": "An estimate: the server's own tokenizer and projector decide, and it reports the exact "
        "count after each turn (ask --json: stats.prompt_tokens).",
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    lines = [f"About {report['total_tokens']:,} tokens on {server.model} at {server.url} (an estimate)"]
    lines += [
        f"  {Path(i['path']).name}{' page ' + str(i['page']) if 'page' in i else ''}: {i['width']}x{i['height']}, "
        f"about {i['tiles']} tiles, {i['tokens']:,} tokens"
        for i in images
    ]
    lines += [f"  text: about {text_tokens:,} tokens; reply: {args.max_tokens:,} kept", report["message"]]
    print("\n".join(lines))
    return 0


def _where(part) -> dict:
    """A planned page (``size-only:path#page``) or frame (``size-only:path@seconds``)."""
    what = part.source.removeprefix("size-only:")
    if part.one_tile:
        path, _, at = what.rpartition("@")
        return {"path": path, "time_s": round(float(at), 3)}
    path, _, page = what.rpartition("#")
    return {"path": path, "page": int(page)}


def _image(cost: ImageCost, wait: float | None) -> dict:
    return {
        "width": cost.width,
        "height": cost.height,
        "tiles": cost.tiles,
        "tokens": cost.tokens,
        "wait_s": _round(wait),
    }


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def _about(seconds: float | None) -> str:
    return "wait not known yet" if seconds is None else f"about {seconds:.0f} s" if seconds >= 1.5 else "about 1 s"


def _text(r: dict, memory_lines: list[str]) -> str:
    out = [
        f"Context {r['total_tokens']:,} of {r['n_ctx']:,} tokens"
        + (" — fits" if r["fits"] else " — does NOT fit")
        + f" (images at {r['detail']} detail)"
    ]
    for item in r["items"]:
        images = f", {item['images']} image(s): {item['image_tokens']:,}" if item["images"] else ""
        dropped = " (left out)" if item["dropped"] else ""
        out.append(f"  {item['label']:<28}{item['tokens']:>7,} tokens{images}{dropped}")
    for image in r["images"]:
        page = f" page {image['page']}" if "page" in image else ""
        out.append(
            f"  {Path(image['path']).name}{page}: {image['width']}x{image['height']}, {image['tiles']} tiles, "
            f"{image['tokens']:,} tokens, {_about(image['wait_s'])}"
        )
    clips: dict[str, list[dict]] = {}
    for frame in r["frames"]:
        clips.setdefault(frame["path"], []).append(frame)
    for path, frames in clips.items():
        tokens = sum(f["tokens"] for f in frames)
        waits = [f["wait_s"] for f in frames]
        wait = None if None in waits else sum(waits)
        each = frames[0]["tokens"]
        out.append(f"  {Path(path).name}: {len(frames)} frames x {each} tokens = {tokens:,} tokens, {_about(wait)}")
    out.append(f"Wait before the answer starts: {_about(r['wait_s'])}")
    if r["message"]:
        out.append(r["message"])
    out += [
        "",
        "Memory:",
        *(f"  {line}" for line in memory_lines),
        f"  {r['memory_message']}",
        f"  Largest context that fits the free memory: {r['largest_n_ctx']:,} tokens"
        + (" (as much as the model was trained for)" if r["largest_n_ctx"] >= r["n_ctx_train"] else ""),
        f"  GPU: {r['gpu_message']}",
    ]
    return "\n".join(out)
