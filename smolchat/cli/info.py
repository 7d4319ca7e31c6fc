"""``smolchat info``: this build of SmolChat and llama.cpp, and where its files are."""

from __future__ import annotations

import argparse
import json
import platform
import sys

from smolchat import __version__, paths

HELP = "show the version, what llama.cpp computes with, and where files are kept"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help=HELP, description=HELP.capitalize() + ".")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)


def report() -> dict:
    from smolchat.engine.backends import build_info

    return dict(
        version=__version__,
        packaged=bool(getattr(sys, "frozen", False)),
        python=platform.python_version(),
        executable=sys.executable,
        llama_cpp=build_info().as_dict(),
        folders={name: str(path) for name, path in paths.locations().items()},
    )


def run(args: argparse.Namespace) -> int:
    info = report()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    how = "packaged app" if info["packaged"] else f"Python {info['python']}"
    print(f"SmolChat {info['version']} ({how})")
    print(info["llama_cpp"]["headline"])
    width = max(len(label) for label in paths.LOCATION_LABELS.values())
    for name, label in paths.LOCATION_LABELS.items():
        print(f"  {label:<{width}}  {info['folders'][name]}")
    return 0
