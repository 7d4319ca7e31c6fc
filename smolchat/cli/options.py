"""Options shared by the commands that load a model."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from smolchat.budget.detail import DEFAULT_DETAIL, Detail, max_tokens_for
from smolchat.errors import SmolChatError
from smolchat.settings import ModelSettings

if TYPE_CHECKING:
    from smolchat.engine import EngineSettings


def add_media_options(parser: argparse.ArgumentParser) -> None:
    """Clips and PDF pages beside --image."""
    from smolchat.media import ASK_ABOVE_PAGES, DEFAULT_FPS, DEFAULT_MAX_FRAMES, MAX_FRAMES

    m = parser.add_argument_group("video and documents")
    m.add_argument(
        "--video",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a clip to ask about: MP4, MOV, WebM, MKV, AVI, or an animated GIF or WebP (repeatable)",
    )
    m.add_argument(
        "--fps", type=_positive_float, default=DEFAULT_FPS, metavar="F", help="frames read per second of a clip"
    )
    m.add_argument(
        "--max-frames",
        type=_frame_cap(MAX_FRAMES),
        default=DEFAULT_MAX_FRAMES,
        metavar="N",
        help=f"most frames read from a clip (default {DEFAULT_MAX_FRAMES}, each one tile; at most {MAX_FRAMES})",
    )
    m.add_argument(
        "--pages",
        metavar="LIST",
        help=f"the pages of each PDF to send, e.g. 1-3,5 (needed above {ASK_ABOVE_PAGES} pages; default: all)",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value < 1000):
        raise argparse.ArgumentTypeError("must be above 0 (and below 1000)")
    return value


def _frame_cap(most: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 1 <= value <= most:
            raise argparse.ArgumentTypeError(f"must be from 1 to {most}")
        return value

    return parse


def add_model_options(parser: argparse.ArgumentParser, *, remote: bool = False) -> None:
    """The model to load; with ``remote``, a server may answer instead (--server)."""
    title = "model (files, an installed or downloadable repo" + (", or a server)" if remote else ")")
    group = parser.add_argument_group(title)
    which = group.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--model", "-m", type=Path, metavar="GGUF", help="the text model, e.g. SmolVLM-256M-Instruct-Q8_0.gguf"
    )
    which.add_argument(
        "--repo",
        "-r",
        metavar="REPO",
        help="a model by repo, e.g. ggml-org/SmolVLM-256M-Instruct-GGUF (downloaded first "
        "if it is not installed), or the name of an imported model",
    )
    if remote:
        which.add_argument(
            "--server",
            metavar="URL",
            help="let a server answer instead: anything with OpenAI's chat API, e.g. llama-server, vLLM, "
            "Ollama (http://127.0.0.1:11434) or smolchat serve (http://127.0.0.1:8080)",
        )
        group.add_argument(
            "--api-key",
            default=os.environ.get("SMOLCHAT_API_KEY") or None,
            metavar="KEY",
            help="with --server: the key it expects (default: $SMOLCHAT_API_KEY, kept out of the process list)",
        )
        group.add_argument(
            "--server-model", metavar="NAME", help="with --server: which of its models (default: the one it serves)"
        )
    group.add_argument(
        "--mmproj",
        type=Path,
        metavar="GGUF",
        help="with --model: its vision projector, e.g. mmproj-SmolVLM-256M-Instruct-f16.gguf "
        "(without it the model answers text only)",
    )
    group.add_argument(
        "--quant",
        "-q",
        metavar="FORMAT",
        help="with --repo: the text model's format, e.g. Q8_0 or Q4_K_M (default: the repo's default)",
    )
    default_ctx = ModelSettings().n_ctx  # the window's default too
    group.add_argument(
        "--n-ctx", type=int, default=default_ctx, metavar="N", help=f"context size in tokens (default {default_ctx})"
    )
    group.add_argument(
        "--threads", type=int, metavar="N", help="CPU threads for generating (default: the fastest count measured here)"
    )
    group.add_argument(
        "--gpu-layers",
        type=int,
        default=0,
        metavar="N",
        help="layers to offload to the GPU (-1: all; needs a GPU build of llama.cpp)",
    )
    group.add_argument(
        "--no-flash-attn",
        dest="flash_attn",
        action="store_false",
        help="turn flash attention off (on by default, except for generating text on a CPU where it measured slower)",
    )
    group.add_argument(
        "--detail",
        choices=[d.value for d in Detail],
        default=DEFAULT_DETAIL.value,
        help="how finely images are read: low (2 tiles), balanced (about 2x2 tiles + "
        f"overview) or full (up to 4x4 + overview); default {DEFAULT_DETAIL.value}",
    )
    group.add_argument(
        "--image-max-tokens",
        type=int,
        metavar="N",
        help="cap the tokens of each image's tile grid exactly (overrides --detail)",
    )
    vision = parser.add_argument_group("reading images (default: what measured fastest on this computer)")
    vision.add_argument(
        "--vision",
        choices=("auto", "onnxruntime", "openvino", "llama.cpp"),
        default="auto",
        help="the vision encoder: ONNX Runtime's (with smolchat[onnxruntime]), OpenVINO's (with "
        "smolchat[openvino]) or libmtmd's",
    )
    vision.add_argument(
        "--vision-precision",
        choices=("auto", "exact", "INT8", "Q8_0", "BF16", "F16", "F32"),
        default="auto",
        help="its precision: exact (the fastest that is not 8-bit), INT8 (ONNX Runtime, OpenVINO: 8-bit "
        "weights), Q8_0, BF16 or F16 (llama.cpp's weights), BF16 or F32 (compute); default: the fastest "
        "measured here whose embeddings agree with libmtmd's F16 ones",
    )
    vision.add_argument("--vision-threads", type=int, metavar="N", help="its CPU threads")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="show progress and llama.cpp's log (twice: everything)"
    )


def remote_server(args: argparse.Namespace):
    """The server --server names, or None when the model is loaded here."""
    if getattr(args, "server", None) is None:
        if getattr(args, "api_key", None) or getattr(args, "server_model", None):
            raise SmolChatError("--api-key and --server-model go with --server.")
        return None
    if args.mmproj or args.quant:
        raise SmolChatError("--mmproj and --quant choose local files; a server answers with the model it has loaded.")
    from smolchat.remote import RemoteServer

    return RemoteServer(args.server, api_key=args.api_key, model=args.server_model)


def model_files(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The text model and projector the options name, downloading a repo's pair if needed."""
    if args.repo is None:
        if args.quant:
            raise SmolChatError("--quant goes with --repo; with --model, name the file itself.")
        return args.model, args.mmproj
    if args.mmproj:
        raise SmolChatError("--mmproj goes with --model; with --repo, the repo's projector is used.")
    from smolchat.models.library import Library, NotInstalledError

    library = Library()
    try:
        model = library.find(args.repo, args.quant)
    except NotInstalledError:
        from smolchat.cli.models import (
            download_pair,  # only this path needs the network
        )

        model = download_pair(args.repo, args.quant, None, json_output=False)
    return model.text, model.mmproj


def engine_settings(args: argparse.Namespace, mmproj: Path | None) -> EngineSettings:
    from smolchat.engine import EngineSettings  # gguf, jinja2 and numpy: only for a command that loads a model

    cap = args.image_max_tokens
    if cap is None:
        cap = max_tokens_for(Detail(args.detail), mmproj)
    return EngineSettings(
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_gpu_layers=args.gpu_layers,
        flash_attn=args.flash_attn,
        image_max_tokens=cap,
        vision_backend=args.vision,
        vision_precision=args.vision_precision,
        n_threads_vision=args.vision_threads,
    )
