"""``smolchat models ...``: the catalog, a repo's files, downloads, installed models, import."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING

from smolchat.errors import SmolChatError
from smolchat.models.catalog import CATALOG, catalog_entry
from smolchat.models.formats import FORMATS
from smolchat.units import format_bytes

if TYPE_CHECKING:  # the Hub client, llama.cpp and gguf load when an action needs them
    from smolchat.models.download import Progress
    from smolchat.models.hub import RemoteFile, RepoListing
    from smolchat.models.library import InstalledModel

HELP = "find, download, import and remove models"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help=HELP, description=HELP.capitalize() + ".")
    p.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
    cmds = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    c = cmds.add_parser("catalog", help="the SmolVLM repos SmolChat knows")
    c.add_argument("--json", action="store_true")

    c = cmds.add_parser("list", help="a repo's files: formats, sizes, memory need, the default pair")
    c.add_argument("repo")
    c.add_argument("--n-ctx", type=int, default=4096, metavar="N", help="context size for the memory estimate")
    c.add_argument("--gpu-layers", type=int, default=0, metavar="N", help="layers on the GPU for the estimate")
    c.add_argument("--json", action="store_true")

    c = cmds.add_parser("download", help="download a repo's text model and vision projector")
    c.add_argument("repo")
    c.add_argument("--quant", "-q", metavar="FORMAT", help="the text model's format (default: the repo's default)")
    c.add_argument("--mmproj-quant", metavar="FORMAT", help="the projector's format (default: F16)")
    c.add_argument("--json", action="store_true", help="print the installed model as JSON, no progress bar")

    c = cmds.add_parser("installed", help="the models on this computer (no network needed)")
    c.add_argument("--json", action="store_true")

    c = cmds.add_parser("remove", help="delete a downloaded model, or forget an imported one")
    c.add_argument("repo", help="the repo, or an imported model's name")
    c.add_argument("--quant", "-q", metavar="FORMAT", help="only this text format (default: everything of the repo)")

    c = cmds.add_parser("import", help="add a text GGUF and its mmproj from disk, after checking they belong together")
    c.add_argument("text")
    c.add_argument("mmproj")
    c.add_argument("--name", help="what to call it (default: the text file's name)")


def run(args: argparse.Namespace) -> int:
    return {
        "catalog": _catalog,
        "list": _list,
        "download": _download,
        "installed": _installed,
        "remove": _remove,
        "import": _import,
    }[args.models_command](args)


def _catalog(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([vars(e) for e in CATALOG], indent=2))
        return 0
    width = max(len(e.repo) for e in CATALOG)
    for e in CATALOG:
        print(f"{e.repo:<{width}}  {e.parameters:>5}  {e.publisher:<9}  {e.note}")
    print("\nAny other repo works too: smolchat models list OWNER/NAME")
    return 0


def _list(args: argparse.Namespace) -> int:
    from smolchat.models import machine
    from smolchat.models.choice import estimate_files
    from smolchat.models.hub import Hub

    hub = Hub()
    listing = hub.list_repo(args.repo)
    rows = [
        (f, (estimate, fit))
        for f, estimate, fit in estimate_files(
            listing, hub.cache_dir, machine.machine_memory(), n_ctx=args.n_ctx, n_gpu_layers=args.gpu_layers
        )
    ]
    if args.json:
        print(json.dumps(_listing_json(listing, rows), indent=2))
        return 0
    print(_listing_text(listing, rows, args.n_ctx, hub.endpoint))
    return 0


def _listing_json(listing: RepoListing, rows) -> dict:
    default_text, default_projector = listing.default_text, listing.default_projector

    def file_json(f: RemoteFile, default: RemoteFile | None) -> dict:
        fmt = f.format
        return {
            "path": f.path,
            "size": f.size,
            "sha256": f.sha256,
            "format": fmt.name if fmt else None,
            "summary": fmt.summary if fmt else None,
            "default": f == default,
        }

    return {
        "repo": listing.repo,
        "offline": listing.offline,
        "listed_at": listing.listed_at,
        "text_files": [
            {**file_json(f, default_text), "memory": est.as_dict(), "verdict": v.as_dict()} for f, (est, v) in rows
        ],
        "projector_files": [file_json(f, default_projector) for f in listing.projector_files],
        "default": {
            "text": default_text.path if default_text else None,
            "mmproj": default_projector.path if default_projector else None,
        },
    }


def _listing_text(listing: RepoListing, rows, n_ctx: int, endpoint: str) -> str:
    entry = catalog_entry(listing.repo)
    title = f"{listing.repo}" + (f" — {entry.title}" if entry else "")
    when = (
        f"offline: as listed on {datetime.fromtimestamp(listing.listed_at):%Y-%m-%d %H:%M}"
        if listing.offline
        else f"listed live from {endpoint}"
    )
    out = [title, f"({when})", ""]
    if not listing.files:
        return "\n".join(out + ["No GGUF files in this repo: SmolChat cannot use it."])
    default_text, default_projector = listing.default_text, listing.default_projector
    name_width = max(len(f.path) for f in listing.files) + 2
    out.append(f"  {'Text model':<{name_width}}{'format':<11}{'size':>9}   memory at n_ctx {n_ctx}")
    for f, (est, v) in rows:
        mark = "*" if f == default_text else " "
        basis = "" if est.from_metadata else " (from file size)"
        out.append(
            f"{mark} {f.path:<{name_width}}{f.format_name:<11}{format_bytes(f.size):>9}   "
            f"{format_bytes(est.total)}{basis}: {v.fit.value}"
        )
    out += ["", f"  {'Vision projector (mmproj)':<{name_width}}{'format':<11}{'size':>9}"]
    for f in listing.projector_files:
        mark = "*" if f == default_projector else " "
        out.append(f"{mark} {f.path:<{name_width}}{f.format_name:<11}{format_bytes(f.size):>9}")
    if default_text and default_projector:
        out += [
            "",
            f"* default pair: {default_text.format_name} + {default_projector.format_name}, "
            f"{format_bytes(default_text.size + default_projector.size)} to download "
            f"(smolchat models download {listing.repo})",
        ]
    if rows and default_text:
        estimate, fit = dict(rows)[default_text]
        reader = f", images read by {estimate.vision_backend}" if estimate.vision_backend else ""
        out.append(f"  {fit.message} Estimated with the * projector at n_ctx {n_ctx}{reader}.")
    formats = sorted(
        {f.format_name for f in listing.files if f.format},
        key=lambda n: -(FORMATS[n].bits_per_weight if n in FORMATS else 0),
    )
    out += ["", "Formats:"]
    for f in listing.files:
        if f.format and f.format_name in formats:
            formats.remove(f.format_name)
            out.append(f"  {f.format_name:<10} {f.format.summary}")
    return "\n".join(out)


def download_pair(repo: str, quant: str | None, mmproj_quant: str | None, json_output: bool) -> InstalledModel:
    """Download a repo's text model (and projector) unless present; the installed model."""
    from smolchat.models.download import download
    from smolchat.models.hub import Hub
    from smolchat.models.library import InstalledModel, model_name

    hub = Hub()
    listing = hub.list_repo(repo)
    text, projector = listing.choose(quant), listing.choose(mmproj_quant, projector=True)
    bar = None if json_output or not sys.stderr.isatty() else _ProgressBar()
    try:
        text_path, projector_path = download(hub, listing.repo, [text, projector], on_progress=bar)
    except KeyboardInterrupt:
        raise SmolChatError("Download stopped. Run the same command again to continue where it stopped.") from None
    finally:
        if bar:
            bar.close()
    return InstalledModel(
        model_name(listing.repo, text.path), text_path, projector_path, listing.repo, text.size + projector.size
    )


def _download(args: argparse.Namespace) -> int:
    model = download_pair(args.repo, args.quant, args.mmproj_quant, args.json)
    if args.json:
        print(json.dumps(model.as_dict(), indent=2))
    else:
        print(f"Installed {model.name}: {model.text.name} + {model.mmproj.name} ({format_bytes(model.size_bytes)})")
        print(f"Ask it something: smolchat ask --repo {model.name} -i PICTURE 'What is in this picture?'")
    return 0


def _installed(args: argparse.Namespace) -> int:
    from smolchat.models.library import Library

    inventory = Library().inventory()
    models = inventory.installed
    for unusable in inventory.unusable:
        print(f"smolchat: {unusable.model} cannot be used: {unusable.reason} ({unusable.path})", file=sys.stderr)
    if args.json:
        print(json.dumps([m.as_dict() for m in models], indent=2))
        return 0
    if not models:
        print("No models installed. Download one: smolchat models download " + CATALOG[0].repo)
        return 0
    width = max(len(m.name) for m in models) + 2
    for m in models:
        kind = "imported" if m.imported else "downloaded"
        print(
            f"{m.name:<{width}}{m.text_format:>8} + {m.mmproj_format:<6}{format_bytes(m.size_bytes):>9}  "
            f"{kind}  {m.text}"
        )
    return 0


def _remove(args: argparse.Namespace) -> int:
    from smolchat.models.library import Library

    for name in Library().remove(args.repo, args.quant):
        print(f"removed {name}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from smolchat.models.library import Library

    model = Library().import_pair(args.text, args.mmproj, args.name)
    print(
        f"Imported {model.name}: {model.text.name} + {model.mmproj.name} ({format_bytes(model.size_bytes)}); "
        f"use it with --repo '{model.name}'"
    )
    return 0


class _ProgressBar:
    """One line on stderr: bar, percent, bytes, speed, time left, file."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self._last < 0.2 and p.done < p.total:
            return
        self._last = now
        filled = int(p.fraction * 30)
        eta = f"{p.eta_s:4.0f} s left" if p.eta_s is not None else "         "
        line = (
            f"[{'#' * filled}{'.' * (30 - filled)}] {p.fraction:4.0%} "
            f"{format_bytes(p.done)}/{format_bytes(p.total)} {format_bytes(int(p.speed))}/s {eta}  {p.filename}"
        )
        sys.stderr.write("\r" + line[:150].ljust(150))
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
