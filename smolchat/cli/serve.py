"""``smolchat serve``: the model behind an OpenAI-compatible HTTP API on this computer."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import threading

from smolchat.cli.options import add_model_options, engine_settings, model_files
from smolchat.errors import SmolChatError

HELP = "serve a model over an OpenAI-compatible HTTP API (127.0.0.1 unless told otherwise)"
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
    if not 0 < args.port < 65536 or args.max_request_mb < 1:
        raise SmolChatError("--port must be 1-65535 and --max-request-mb at least 1.")
    import uvicorn

    from smolchat.api.server import ServedModel, create_app
    from smolchat.service import EngineService, Failed, Loaded, LoadRequest

    model_path, mmproj = model_files(args)
    settings = engine_settings(args, mmproj)
    served = ServedModel(id=args.repo or model_path.stem, n_ctx=settings.n_ctx, takes_images=mmproj is not None)
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
    app = create_app(service, served, api_key=args.api_key, max_body_bytes=args.max_request_mb * 2**20)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)
    finally:
        service.close()
    return 0
