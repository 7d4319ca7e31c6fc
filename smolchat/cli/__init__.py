"""The ``smolchat`` command line: argument parsing and printing, nothing more."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from smolchat import __version__
from smolchat.errors import SmolChatError

COMMANDS = ("ask", "bench", "budget", "models", "info")


def command(name: str) -> ModuleType:
    """A command's module: ``add_parser`` declares its arguments, ``run`` does the work and
    imports what that needs (llama.cpp, the Hub client...) only then."""
    return importlib.import_module(f"smolchat.cli.{name}")


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
    for name in COMMANDS:
        command(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            from smolchat.ui.app import main as window  # Qt only when the window is wanted

            return window(self_test=args.self_test)
        logging.basicConfig(
            level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        return command(args.command).run(args)
    except SmolChatError as e:  # also while a command's module loads (llama.cpp, for one)
        print(f"smolchat: {e}", file=sys.stderr)
        return 1
