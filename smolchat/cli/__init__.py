"""The ``smolchat`` command line: argument parsing and printing, nothing more."""

from __future__ import annotations

import argparse
import logging
import sys

from smolchat import __version__
from smolchat.cli import ask, bench, budget, info, models
from smolchat.errors import SmolChatError

COMMANDS = {"ask": ask, "bench": bench, "budget": budget, "models": models, "info": info}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smolchat",
        description="Chat privately with SmolVLM vision-language models on your own computer.",
    )
    parser.add_argument("--version", action="version", version=f"smolchat {__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="open the window, answer one question about a picture with a tiny generated "
                             "model, print a JSON report and close (checks that an installation works)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from smolchat.ui.app import main as window  # Qt only when the window is wanted

        return window(self_test=args.self_test)
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return COMMANDS[args.command].run(args)
    except SmolChatError as e:
        print(f"smolchat: {e}", file=sys.stderr)
        return 1
