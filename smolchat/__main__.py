"""``smolchat``: the window, or one of the command line's commands."""

from __future__ import annotations

import sys

WINDOW_OPTIONS = {"--self-test"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if set(argv) <= WINDOW_OPTIONS:  # the window, without loading the command line
        return window(self_test="--self-test" in argv)
    from smolchat import cli

    args = cli.parse(argv)
    if args.command is None:  # options only (abbreviated, say)
        return window(self_test=args.self_test)
    return cli.run(args)


def window(self_test: bool) -> int:
    from smolchat.errors import SmolChatError

    try:
        from smolchat.ui.app import main as show_window  # Qt only when the window is wanted

        return show_window(self_test=self_test)
    except SmolChatError as e:
        print(f"smolchat: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
