"""``smolchat models ...`` and ``--repo``, run as users run them, against the fake Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smolchat import paths
from tests.fake_hub_fixtures import REPO


@pytest.fixture
def home(tmp_path):
    """A SmolChat home of its own (imported models), sharing the test run's measurements."""
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def env(fake_hub, hf_cache, home, tmp_path) -> dict[str, str]:
    """The fake Hub as HF_ENDPOINT; huggingface_hub's own files (HF_HOME) in a folder of this test's."""
    return {
        **os.environ,
        "HF_ENDPOINT": fake_hub.url,
        "HF_HUB_CACHE": str(hf_cache),
        "HF_HUB_OFFLINE": "0",
        "SMOLCHAT_HOME": str(home),
        "SMOLCHAT_CACHE_DIR": str(paths.cache_dir()),
        "HF_HOME": str(tmp_path / "hf-home"),
    }


@pytest.fixture
def run(env):

    def smolchat(*args: str, offline: bool = False) -> subprocess.CompletedProcess:
        extra = {"HF_HUB_OFFLINE": "1"} if offline else {}
        return subprocess.run(
            [sys.executable, "-m", "smolchat", *args], capture_output=True, text=True, timeout=180, env={**env, **extra}
        )

    return smolchat


def test_catalog(run):
    out = run("models", "catalog", "--json")
    assert out.returncode == 0
    repos = [e["repo"] for e in json.loads(out.stdout)]
    assert repos[0] == REPO and len(repos) >= 7


def test_list_shows_files_formats_sizes_memory_and_the_default_pair(run, repo_files):
    out = run("models", "list", REPO)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    q8 = next(line for line in lines if "SmolVLM-256M-Instruct-Q8_0.gguf" in line)
    assert q8.startswith("*") and "Q8_0" in q8 and "(from file size)" in q8
    f16_projector = next(line for line in lines if "mmproj-SmolVLM-256M-Instruct-f16.gguf" in line)
    assert f16_projector.startswith("*")
    assert "* default pair: Q8_0 + F16" in out.stdout
    assert "8-bit" in out.stdout  # the trade-off of each format is explained

    data = json.loads(run("models", "list", REPO, "--json", "--n-ctx", "8192").stdout)
    assert data["default"] == {
        "text": "SmolVLM-256M-Instruct-Q8_0.gguf",
        "mmproj": "mmproj-SmolVLM-256M-Instruct-f16.gguf",
    }
    sizes = {f["path"]: f["size"] for f in data["text_files"] + data["projector_files"]}
    assert sizes == {name: len(b) for name, b in repo_files.items() if name.endswith(".gguf")}
    assert all(f["verdict"]["fit"] in ("fits", "tight", "does not fit") for f in data["text_files"])


def test_download_then_everything_works_without_the_hub(run, fake_hub, images):
    out = run("models", "download", REPO, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["name"] == f"{REPO}:Q8_0"
    fake_hub.stop()  # the network is gone from here on

    installed = json.loads(run("models", "installed", "--json").stdout)
    assert [(m["name"], m["mmproj_format"]) for m in installed] == [(f"{REPO}:Q8_0", "F16")]
    for offline in (False, True):  # a Hub that does not answer, and HF_HUB_OFFLINE
        listed = run("models", "list", REPO, offline=offline)
        assert listed.returncode == 0 and "offline: as listed on" in listed.stdout, listed.stderr
        q8 = next(line for line in listed.stdout.splitlines() if "SmolVLM-256M-Instruct-Q8_0.gguf" in line)
        assert "(from file size)" not in q8  # its own metadata is here now

    asked = run("ask", "--repo", REPO, "-i", str(images["small"]), "--max-tokens", "4", "--json", "What is it?")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["stats"]["image_tiles_encoded"] > 0

    removed = run("models", "remove", REPO)
    assert removed.returncode == 0 and "removed SmolVLM-256M-Instruct-Q8_0.gguf" in removed.stdout
    assert json.loads(run("models", "installed", "--json").stdout) == []


def test_remove_deletes_nothing_a_snapshot_links_to_outside_the_cache(run, tmp_path):
    out = run("models", "download", REPO, "--json")
    assert out.returncode == 0, out.stderr
    precious = tmp_path / "beside-the-cache" / "notes.gguf"
    precious.parent.mkdir()
    precious.write_bytes(b"not SmolChat's")
    (Path(json.loads(out.stdout)["text"]).parent / "Notes-Q4_0.gguf").symlink_to(precious)

    removed = run("models", "remove", REPO)

    assert removed.returncode == 0, removed.stderr
    assert "removed Notes-Q4_0.gguf" in removed.stdout
    assert precious.read_bytes() == b"not SmolChat's"
    assert json.loads(run("models", "installed", "--json").stdout) == []


def test_hub_errors_are_plain_messages(run):
    out = run("models", "list", "someone/Nothing-GGUF")
    assert out.returncode == 1
    assert out.stderr.startswith("smolchat: There is no model repo named someone/Nothing-GGUF")
    assert "Traceback" not in out.stderr
    out = run("models", "download", REPO, offline=True)
    assert out.returncode == 1 and "Offline mode" in out.stderr


def test_import_a_pair_and_use_it_by_name(run, tiny_pair):
    out = run("models", "import", *map(str, tiny_pair), "--name", "tiny")
    assert out.returncode == 0, out.stderr
    assert [m["name"] for m in json.loads(run("models", "installed", "--json").stdout)] == ["tiny"]
    asked = run("ask", "--repo", "tiny", "Hello", "--max-tokens", "3", "--json", offline=True)
    assert asked.returncode == 0, asked.stderr


def test_import_of_a_mismatched_pair_says_why(run, tiny_pair):
    out = run("models", "import", str(tiny_pair[1]), str(tiny_pair[1]))
    assert out.returncode == 1 and "smolchat:" in out.stderr and "Traceback" not in out.stderr


def test_download_on_a_terminal_shows_a_progress_bar(env):
    controller, terminal = os.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "smolchat", "models", "download", REPO], stdout=subprocess.PIPE, stderr=terminal, env=env
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            piece = os.read(controller, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not piece:
            break
        shown += piece
    os.close(controller)
    assert child.wait(timeout=120) == 0
    last = [line for line in shown.decode().split("\r") if "%" in line][-1]
    assert "[" + "#" * 30 + "] 100%" in last and "/s" in last
    assert "mmproj-SmolVLM-256M-Instruct-f16.gguf" in last


def test_installed_names_a_model_whose_file_went_bad(run, tiny_pair, tmp_path):
    text, mmproj = (tmp_path / "copy" / p.name for p in tiny_pair)
    text.parent.mkdir()
    text.write_bytes(tiny_pair[0].read_bytes())
    mmproj.write_bytes(tiny_pair[1].read_bytes())
    assert run("models", "import", str(text), str(mmproj), "--name", "tiny").returncode == 0
    mmproj.write_bytes(mmproj.read_bytes()[:1000])  # damaged on disk since
    out = run("models", "installed", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == []
    assert f"tiny cannot be used: {mmproj.name}: is incomplete" in out.stderr and "Traceback" not in out.stderr
