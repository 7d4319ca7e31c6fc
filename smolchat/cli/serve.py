"""``smolchat serve``: the model behind OpenAI- and Ollama-compatible HTTP APIs on this computer."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import threading
from pathlib import Path

from smolchat.cli.options import add_model_options, engine_settings, model_files
from smolchat.errors import SmolChatError

DEFAULT_TIME_LIMIT_S = 600.0  # as the server's own default (smolchat.api.serving): the API is not imported to parse

HELP = "serve a model over OpenAI- and Ollama-compatible HTTP APIs (127.0.0.1 unless told otherwise)"
log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help=HELP, description=HELP.capitalize() + ".")
    add_model_options(p)
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    s.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    s.add_argument(
        "--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' (needed for any address but loopback)"
    )
    s.add_argument(
        "--max-request-mb", type=int, default=20, metavar="MB", help="largest request, images included (default 20)"
    )
    s.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_TIME_LIMIT_S,
        metavar="S",
        help=f"stop a request after S seconds, queue included (default {DEFAULT_TIME_LIMIT_S:g}; 0: never)",
    )
    s.add_argument("--media-dir", metavar="DIR", help="let requests name image files (file:// URLs) under DIR")
    s.add_argument(
        "--allow-remote-images",
        action="store_true",
        help="fetch images requests give as http(s) URLs (by default nothing leaves this computer)",
    )
    s.add_argument(
        "--cors",
        metavar="ORIGIN",
        action="append",
        default=[],
        help="let web pages from ORIGIN call the API (repeatable; none by default)",
    )


def _quantization(model_path: Path) -> str:
    from smolchat.engine.gguf_info import ModelFileError, file_type_name, inspect_text_model

    try:
        return file_type_name(inspect_text_model(model_path).file_type) or ""
    except ModelFileError:
        return ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    if not is_loopback(args.host) and not args.api_key:
        raise SmolChatError(
            f"Serving on {args.host} lets other computers in: give an --api-key they must send, "
            "or keep the default 127.0.0.1."
        )
    if not 0 < args.port < 65536 or args.max_request_mb < 1 or args.request_timeout < 0:
        raise SmolChatError("--port must be 1-65535, --max-request-mb at least 1 and --request-timeout 0 or more.")
    media_dir = Path(args.media_dir).expanduser() if args.media_dir else None
    if media_dir is not None and not media_dir.is_dir():
        raise SmolChatError(f"--media-dir {args.media_dir} is not a folder.")
    import uvicorn

    from smolchat.api.server import ServedModel, ServerOptions, create_app
    from smolchat.service import EngineService, Failed, Loaded, LoadRequest

    model_path, mmproj = model_files(args)
    settings = engine_settings(args, mmproj)
    served = ServedModel(
        id=args.repo or model_path.stem,
        n_ctx=settings.n_ctx,
        takes_images=mmproj is not None,
        size_bytes=sum(p.stat().st_size for p in (model_path, mmproj) if p is not None),
        quantization=_quantization(model_path),
    )
    options = ServerOptions(
        api_key=args.api_key,
        max_body_bytes=args.max_request_mb * 2**20,
        media_dir=media_dir,
        allow_remote_images=args.allow_remote_images,
        cors_origins=tuple(args.cors),
        time_limit_s=args.request_timeout or None,
    )
    service = EngineService(thread_name="engine")

    def load() -> None:  # while the server already answers /health with 503
        for event in service.stream(LoadRequest(served.id, model_path, mmproj, settings)):
            if isinstance(event, Loaded):
                served.ready.set()
                print(f"smolchat serve: {served.id} ready at http://{args.host}:{args.port}/v1", flush=True)
            elif isinstance(event, Failed):
                served.failure = event.message
                print(f"smolchat serve: {event.message}", flush=True)

    threading.Thread(target=load, name="load", daemon=True).start()
    app = create_app(service, served, options)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)
    finally:
        service.close()
    return 0
