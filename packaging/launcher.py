"""The packaged app's entry point: the same ``smolchat`` command, window and all."""

from smolchat.__main__ import main

raise SystemExit(main())
