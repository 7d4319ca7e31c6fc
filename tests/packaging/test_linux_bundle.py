"""The Linux app, built with the README's command and run as a user without Python runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from smolchat import __version__

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "SmolChat"
APP = BUNDLE / "SmolChat"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux bundle builds on Linux"),
]


@pytest.fixture(scope="module")
def built() -> Path:
    # llama.cpp's CPU-variant build is cached between runs; the first one takes about 40 minutes.
    subprocess.run(["bash", str(ROOT / "packaging" / "build-linux.sh")], cwd=ROOT, check=True, timeout=3600)
    return APP


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment with no Python anywhere: PATH is one empty folder."""
    no_python = home / "bin"
    no_python.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "PATH": str(no_python), "LANG": "C.UTF-8", "QT_QPA_PLATFORM": "offscreen", **extra}


@pytest.mark.timeout(3900)
def test_the_app_answers_an_image_question_with_no_python_of_the_systems(built, tmp_path):
    # The test run's speed measurements are shared, so the bundle does not measure for 15 s again.
    env = bare_env(tmp_path / "home", SMOLCHAT_HOME=os.environ["SMOLCHAT_HOME"])
    done = subprocess.run(
        [str(built), "--self-test"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["packaged"] and report["status"] == "complete"
    assert report["answer"] and report["images"] == 1 and report["stats"]["image_tokens"] > 0
    assert Path(report["executable"]) == built
    # Every piece of Python in the process came from the app folder: libpython, the
    # standard library's extension modules, numpy, OpenVINO...
    assert report["python_files"], "the report lists the Python files the process loaded"
    outside = [f for f in report["python_files"] if not Path(f).is_relative_to(BUNDLE)]
    assert outside == []


@pytest.mark.timeout(3900)
def test_llama_cpp_in_the_app_uses_this_cpus_fast_instructions(built, tmp_path):
    done = subprocess.run(
        [str(built), "info", "--json"], env=bare_env(tmp_path), capture_output=True, text=True, timeout=120, check=True
    )
    llama = json.loads(done.stdout)["llama_cpp"]
    assert llama["cpu_variant"], "a CPU library chosen for this CPU, not code built into llama.cpp"
    assert done.stderr == "", "choosing the CPU library prints nothing"
    flags = set(Path("/proc/cpuinfo").read_text().split())
    for flag, feature in [
        ("avx2", "AVX2"),
        ("avx512f", "AVX512"),
        ("avx512_bf16", "AVX512_BF16"),
        ("avx512_vnni", "AVX512_VNNI"),
    ]:
        assert (feature in llama["cpu_features"]) == (flag in flags), feature
    assert llama["cpu_variant"] in llama["summary"]


@pytest.mark.timeout(3900)
def test_the_app_keeps_models_and_data_where_the_source_install_does(built, tmp_path):
    env = bare_env(tmp_path)
    packaged = subprocess.run(
        [str(built), "info", "--json"], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    source = subprocess.run(
        [sys.executable, "-m", "smolchat", "info", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    packaged, source = json.loads(packaged.stdout), json.loads(source.stdout)
    assert packaged["packaged"] and not source["packaged"]
    assert packaged["folders"] == source["folders"]
    assert packaged["folders"]["models"] == str(tmp_path / ".cache" / "huggingface" / "hub")
    assert packaged["version"] == source["version"] == __version__


@pytest.mark.timeout(3900)
def test_the_tarball_installs_a_menu_entry_that_starts_the_app(built, tmp_path):
    tarball = ROOT / "dist" / f"SmolChat-{__version__}-linux-{os.uname().machine}.tar.gz"
    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path / "unpacked", filter="tar")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(
        ["sh", str(unpacked / "install.sh")],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=300,
    )
    entry = (home / ".local/share/applications/smolchat.desktop").read_text()
    executable = home / ".local/opt/SmolChat/SmolChat"
    assert f'Exec="{executable}"' in entry and "Icon=smolchat" in entry
    for size in (16, 32, 48, 128, 256):
        assert (home / f".local/share/icons/hicolor/{size}x{size}/apps/smolchat.png").exists()
    version = subprocess.run(
        [str(home / ".local/bin/smolchat"), "--version"],
        capture_output=True,
        text=True,
        env={"HOME": str(home), "PATH": str(tmp_path)},
        timeout=120,
        check=True,
    )
    assert version.stdout.strip() == f"smolchat {__version__}"

    subprocess.run(
        ["sh", str(unpacked / "install.sh"), "--uninstall"],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
    )
    assert not executable.exists() and not (home / ".local/share/applications/smolchat.desktop").exists()


@pytest.mark.timeout(3900)
def test_a_model_the_app_downloads_is_installed_for_the_source_install_too(built, fake_hub, tmp_path):
    from tests.fake_hub_fixtures import REPO

    env = bare_env(tmp_path, HF_ENDPOINT=fake_hub.url)
    got = subprocess.run([str(built), "models", "download", REPO], env=env, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / ".cache/huggingface/hub/models--ggml-org--SmolVLM-256M-Instruct-GGUF").is_dir()
    source = subprocess.run(
        [sys.executable, "-m", "smolchat", "models", "installed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"{REPO}:Q8_0" in source.stdout
