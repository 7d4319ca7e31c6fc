"""The README's examples for ``smolchat serve`` run as written against a live server (only its
address, the model's name and the photo differ): a reader who copies them gets an answer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from smolchat.api.server import ServerOptions, create_app
from tests.api.live import MODEL, LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"
README_MODEL = "ggml-org/SmolVLM-256M-Instruct-GGUF"
README_URL = "http://127.0.0.1:8080"


def serving_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Serving other programs")
    return text[start : text.index("\n## ", start + 1)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", serving_section(), flags=re.S)


@pytest.fixture(scope="module")
def open_server(served, ready):
    """The README's server: no key (its examples pass any), the package's engine behind it."""
    service, _, model, _ = served
    server = LiveServer(create_app(service, model, ServerOptions()))
    yield server
    server.stop()


@pytest.fixture
def in_folder_with_photo(tmp_path, monkeypatch):
    Image.effect_noise((640, 480), 60).convert("RGB").save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def as_here(code: str, server: LiveServer) -> str:
    return code.replace(README_URL, server.url).replace(README_MODEL, MODEL)


def test_the_python_examples_answer_and_the_json_one_validates(open_server, in_folder_with_photo, capsys):
    python = blocks("python")
    assert len(python) >= 3, "the serving section lost its Python examples"
    namespace: dict = {}
    for code in python:  # in order: later examples use the client and photo of the first
        exec(compile(as_here(code, open_server), "README.md", "exec"), namespace)
    assert capsys.readouterr().out.strip(), "the examples printed no answer"
    schema = namespace["schema"]
    jsonschema.validate(json.loads(namespace["reply"].choices[0].message.content), schema)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_examples_answer(open_server, in_folder_with_photo):
    shell = blocks("sh")
    assert len(shell) >= 2, "the serving section lost its curl examples"
    for code in shell:  # each writes its request from a real-sized photo: no argument-length limit
        done = subprocess.run(
            ["bash", "-c", as_here(code, open_server).strip() + " --fail-with-body -sS"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        answer = json.loads(done.stdout)
        assert answer.get("choices") or answer.get("done"), answer
