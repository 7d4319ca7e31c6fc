"""The ``smolchat`` command line: argument parsing and printing, nothing more."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from smolchat import __version__
from smolchat.errors import SmolChatError

COMMANDS = ("ask", "batch", "bench", "budget", "models", "info", "serve")


def command(name: str) -> ModuleType:
    """A command's module: ``add_parser`` declares its arguments, ``run`` does the work and
    imports what that needs (llama.cpp, the Hub client...) only then."""
    return importlib.import_module(f"smolchat.cli.{name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of the command line. With ``only``, the other commands are named but their
    modules are not imported, as that command is the one being run."""
    parser = argparse.ArgumentParser(
        prog="smolchat",
        description="Chat privately with SmolVLM vision-language models on your own computer.",
    )
    parser.add_argument("--version", action="version", version=f"smolchat {__version__}")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="open the window, answer one question about a picture with a tiny generated "
        "model, print a JSON report and close (checks that an installation works)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is None or name == only:
            command(name).add_parser(sub)
        else:
            sub.add_parser(name)
    return parser


def _named_command(argv: list[str]) -> str | None:
    """The command ``argv`` runs: its first word that is not an option (the program's own
    options take no value). None before it asks for the program's help or version."""
    for arg in argv:
        if arg in ("-h", "--help", "--version"):
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def parse(argv: list[str]) -> argparse.Namespace:
    """The arguments; ``command`` is None where none is named (the window). Exits after help,
    the version, or an error in the arguments, as argparse does."""
    return build_parser(only=_named_command(argv)).parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; a SmolChatError ends as its message and exit status 1."""
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return command(args.command).run(args)
    except SmolChatError as e:  # also while a command's run loads what it needs (llama.cpp, for one)
        print(f"smolchat: {e}", file=sys.stderr)
        return 1
