"""Servers for SmolChat to talk to: llama.cpp's own llama-server (built from the llama.cpp that
llama-cpp-python vendors, once, then cached) and ``smolchat serve``'s app, each on 127.0.0.1
with the tiny fixture pair."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from smolchat.api.server import ServedModel, ServerOptions, create_app
from smolchat.engine import EngineSettings
from smolchat.service import EngineService, Loaded, LoadRequest
from tests.api.live import KEY, LiveServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """$SMOLCHAT_LLAMA_SERVER, or the one packaging/common.sh builds (about 10 minutes the
    first time on 2 cores, then kept in ~/.cache/smolchat-build like the wheels)."""
    given = os.environ.get("SMOLCHAT_LLAMA_SERVER")
    if given:
        return Path(given)
    built = subprocess.run(
        ["bash", "-c", "set -euo pipefail; source packaging/common.sh; llama_server"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return Path(built.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def running_llama_server(binary: Path, text: Path, mmproj: Path | None, log: Path) -> Iterator[str]:
    port = free_port()
    command = [str(binary), "-m", str(text), "--host", "127.0.0.1", "--port", str(port), "-c", "4096"]
    command += ["-t", "2", "--no-webui", *(["--mmproj", str(mmproj)] if mmproj else [])]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "llama-server did not start"
            try:
                if httpx.get(url + "/health", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="package")
def llama_server(llama_server_binary, tiny_pair, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("llama-server") / "log.txt"
    yield from running_llama_server(llama_server_binary, *tiny_pair, log)


@pytest.fixture(scope="package")
def llama_server_without_vision(llama_server_binary, tiny_pair, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("llama-server-text") / "log.txt"
    yield from running_llama_server(llama_server_binary, tiny_pair[0], None, log)


@pytest.fixture(scope="package")
def smolchat_server(tiny_pair) -> Iterator[tuple[str, ServedModel]]:
    """``smolchat serve``'s app with a key, its model loaded."""
    service = EngineService(thread_name="remote-test-engine")
    model = ServedModel(id="smolvlm-tiny", n_ctx=4096, takes_images=True, quantization="F32", size_bytes=1234)
    assert isinstance(service.stream(LoadRequest(model.id, *tiny_pair, EngineSettings(n_ctx=4096))).wait(), Loaded)
    model.ready.set()
    server = LiveServer(create_app(service, model, ServerOptions(api_key=KEY, max_body_bytes=8 * 2**20)))
    yield server.url, model
    server.stop()
    service.close()
