"""The packaged app's size, and its start time to the main window, cold and warm.

Cold: every file of the app folder is first dropped from the page cache (posix_fadvise), as
after a reboot; the system's own libraries (X11, fontconfig, glibc) stay cached, as they are
on a running desktop. Warm: started again straight away.

Build the app first (``packaging/build-linux.sh``), then run under a real X server:
``xvfb-run -s "-screen 0 1400x900x24" uv run python benchmarks/bundle_start.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gui_session import time_to_window  # noqa: E402


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def drop_from_page_cache(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file() and not f.is_symlink():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app", type=Path, default=ROOT / "dist" / "SmolChat", help="the app folder")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    executable = args.app / "SmolChat"
    # A home of its own: no model installed, so the window opens on the model picker and
    # nothing loads behind it that could slow the window.
    os.environ["SMOLCHAT_HOME"] = tempfile.mkdtemp(prefix="smolchat-start-")

    print(f"app folder: {folder_size(args.app) / 1e6:.0f} MB in {sum(1 for _ in args.app.rglob('*'))} files")
    for tarball in sorted((args.app.parent).glob("SmolChat-*.tar.gz")):
        print(f"{tarball.name}: {tarball.stat().st_size / 1e6:.0f} MB")
    cold = time_to_window(args.runs, [str(executable)], before_each=lambda: drop_from_page_cache(args.app))
    warm = time_to_window(args.runs, [str(executable)])
    print(f"start to window, cold: {cold} s (median {statistics.median(cold):.2f})")
    print(f"start to window, warm: {warm} s (median {statistics.median(warm):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
