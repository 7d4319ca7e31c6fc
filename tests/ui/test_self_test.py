"""``smolchat --self-test`` from a source install, on a system that refuses symbolic links."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from smolchat import paths

# Windows refuses symbolic links to a user without developer mode.
WITHOUT_SYMLINKS = """
import os

def refuse(*args, **kwargs):
    raise OSError(1314, "A required privilege is not held by the client")

os.symlink = refuse
import runpy
runpy.run_module("smolchat", run_name="__main__")
"""


def test_the_self_test_answers_without_symbolic_links_and_keeps_only_the_measurements(tmp_path):
    home = tmp_path / "home"
    measurements = paths.cache_dir()  # the test run's, so that the vision speed is measured once
    env = {**os.environ, "SMOLCHAT_HOME": str(home), "SMOLCHAT_CACHE_DIR": str(measurements)}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SYMLINKS, "--self-test"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["status"] == "complete" and report["images"] == 1
    # Its conversation and settings went to a throwaway folder; the measurements stay.
    assert not (home / "data").exists() and not (home / "config").exists()
    assert (measurements / "tuning.json").is_file()
