"""``ask``, ``batch`` and ``budget`` with ``--server``: against llama.cpp's llama-server and
``smolchat serve`` for real, and against servers that fail in the ways people meet."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from pathlib import Path

import jsonschema
import pytest

from smolchat.engine import Message, SamplingParams
from smolchat.remote import RemoteError, RemoteServer, server_url
from tests.api.live import KEY
from tests.batch.test_batch import pictures, records
from tests.helpers import smolchat_here as smolchat


def smolchat_with_key(*args: str, key: str) -> subprocess.CompletedProcess:
    return smolchat(*args, env={"SMOLCHAT_API_KEY": key})


def test_ask_through_llama_server_streams_its_answer_with_its_figures(llama_server, images):
    out = smolchat("ask", "--server", llama_server, "-i", str(images["photo"]), "--max-tokens", "12", "Describe it.")
    assert out.returncode == 0, out.stderr
    answer, figures = out.stdout.rstrip("\n").rsplit("\n", 1)
    assert answer.strip() and f"TinySmolVLM-F16.gguf at {llama_server}]" in figures
    as_json = smolchat("ask", "--server", llama_server + "/v1", "-i", str(images["small"]), "--json", "Hi")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["server"]["url"] == llama_server  # the /v1 a person may type is understood
    assert report["server"]["model"].endswith("TinySmolVLM-F16.gguf")  # llama-server names it by its path
    # the image reached the model: the prompt holds its embeddings, far more than the words
    assert report["stats"]["prompt_tokens"] > 40 and report["stats"]["generated_tokens"] >= 1


# llama-server's grammar does not close an answer in time as SmolChat's does, and random weights
# write any bytes: the caption is bounded, in letters, for answers that end within --max-tokens
SERVER_SCHEMA = {
    "type": "object",
    "properties": {"caption": {"type": "string", "pattern": "^[a-z ]{1,12}$"}, "kind": {"enum": ["photo", "text"]}},
    "required": ["caption", "kind"],
}


def test_batch_through_llama_server_with_a_schema_gives_valid_objects(llama_server, tmp_path):
    pictures(tmp_path / "photos", 3)
    (tmp_path / "schema.json").write_text(json.dumps(SERVER_SCHEMA))
    out = tmp_path / "results.jsonl"
    run = smolchat(
        "batch", str(tmp_path / "photos"), "-p", "Caption it.", "--schema", str(tmp_path / "schema.json"),
        "--server", llama_server, "-o", str(out), "--max-tokens", "200", "--temperature", "1",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = records(out)
    assert len(lines) == 3
    for line in lines:
        assert "error" not in line, line
        jsonschema.validate(line["result"], SERVER_SCHEMA)


def test_ask_and_batch_through_smolchat_serve_with_its_key(smolchat_server, images, tmp_path):
    url, _ = smolchat_server
    asked = smolchat_with_key("ask", "--server", url, "-i", str(images["small"]), "--json", "Hi", key=KEY)
    assert asked.returncode == 0, asked.stderr
    report = json.loads(asked.stdout)
    assert report["server"]["model"] == "smolvlm-tiny" and report["stats"]["prompt_tokens"] > 20
    pictures(tmp_path / "photos", 3)
    out = tmp_path / "results.csv"
    run = smolchat("batch", str(tmp_path / "photos"), "-p", "Hi", "--server", url, "--api-key", KEY, "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert "3 answered, 0 failed" in run.stderr and len(out.read_text().splitlines()) == 4


def test_a_wrong_or_missing_key_says_what_to_do(smolchat_server):
    url, _ = smolchat_server
    wrong = smolchat_with_key("ask", "--server", url, "Hi", key="sk-wrong")
    assert wrong.returncode == 1 and "refused the API key (HTTP 401)" in wrong.stderr
    missing = smolchat("ask", "--server", url, "Hi")
    assert missing.returncode == 1 and "needs an API key" in missing.stderr and "--api-key" in missing.stderr


def test_nothing_listening_is_named_with_the_address(tmp_path):
    from tests.remote.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    out = smolchat("ask", "--server", url, "Hi")
    assert out.returncode == 1 and f"Cannot reach {url}" in out.stderr and "is running" in out.stderr
    pictures(tmp_path / "photos", 2)
    batch = smolchat("batch", str(tmp_path / "photos"), "-p", "Hi", "--server", url, "-o", str(tmp_path / "r.jsonl"))
    assert batch.returncode == 1 and f"Cannot reach {url}" in batch.stderr
    assert not (tmp_path / "r.jsonl").exists() or records(tmp_path / "r.jsonl") == []


def test_a_server_without_vision_stops_the_batch_with_the_reason(llama_server_without_vision, images, tmp_path):
    out = smolchat("ask", "--server", llama_server_without_vision, "-i", str(images["small"]), "Hi")
    assert out.returncode == 1 and "cannot read images" in out.stderr and "--mmproj" in out.stderr
    text = smolchat("ask", "--server", llama_server_without_vision, "--max-tokens", "4", "Hi")
    assert text.returncode == 0, text.stderr  # text alone still works
    pictures(tmp_path / "photos", 3)
    results = tmp_path / "r.jsonl"
    run = smolchat("batch", str(tmp_path / "photos"), "-p", "Hi", "--server", llama_server_without_vision,
                   "-o", str(results))  # fmt: skip
    assert run.returncode == 1 and "cannot read images" in run.stderr and "the same command again" in run.stderr
    assert records(results) == []  # not three error lines: the job can be run again once the server can see


def test_a_model_still_loading_asks_to_try_again(smolchat_server):
    url, model = smolchat_server
    model.ready.clear()
    try:
        with RemoteServer(url, api_key=KEY, model="smolvlm-tiny") as server:
            with pytest.raises(RemoteError, match="still loading its model"):
                list(server.turn([Message.user("Hi")], SamplingParams()))
    finally:
        model.ready.set()


class _Hostile(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self._send(json.dumps({"data": [{"id": "x" * 10_000}, {"id": 7}, "junk"]}).encode())

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(b"data: " + b"A" * (3 << 20))  # one event that never ends

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_hostile_server_is_bounded(images):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with RemoteServer(f"127.0.0.1:{httpd.server_address[1]}") as server:
            models = server.models()
            assert [len(m.id) for m in models] == [200]  # names cut, entries of the wrong shape passed over
            with pytest.raises(RemoteError, match="longer than 1 MB"):
                list(server.turn([Message.user("Hi", images=[images["small"]])], SamplingParams()))
    finally:
        httpd.shutdown()


@pytest.mark.parametrize(
    "typed, base",
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://gpu-box:8000/v1/", "http://gpu-box:8000"),
        ("https://example.org/llm/v1", "https://example.org/llm"),
    ],
)
def test_server_addresses_as_people_type_them(typed, base):
    assert server_url(typed) == base


@pytest.mark.parametrize("typed", ["ftp://host", "http://", ""])
def test_what_is_not_a_server_address_is_refused(typed):
    with pytest.raises(RemoteError, match="is not a server address"):
        server_url(typed)


def test_server_options_only_go_together(tiny_pair, tmp_path):
    key_alone = smolchat("ask", "--model", str(tiny_pair[0]), "--api-key", "k", "Hi")
    assert key_alone.returncode == 1 and "go with --server" in key_alone.stderr
    both = smolchat("ask", "--server", "127.0.0.1:1", "--model", str(tiny_pair[0]), "Hi")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert Path(tiny_pair[0]).exists()


def test_budget_on_a_server_is_an_estimate_and_says_so(llama_server, images):
    out = smolchat("budget", "--server", llama_server, "-i", str(images["photo"]), "--json", "What is it?")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["estimate"] is True and "estimate" in report["message"]
    # a 1024x768 photo on a 512 px-tile SmolVLM, read whole as llama-server does: 4x3 tiles and the overview
    [photo] = report["images"]
    assert (photo["width"], photo["height"], photo["tiles"]) == (1024, 768, 13)
    assert report["total_tokens"] == photo["tokens"] + report["text_tokens"] + 512
    text = smolchat("budget", "--server", llama_server, "-i", str(images["photo"]), "What is it?")
    assert text.returncode == 0 and "(an estimate)" in text.stdout
