"""What the server's options change: time limits, media folders, images on the web, CORS; and
that a client giving up frees the model. A real small model (SmolLM2-135M, about 100 tokens
a second here) serves these, so that a long answer is still running when it is given up."""

from __future__ import annotations

import http.server
import threading

import httpx2 as httpx
import pytest

from smolchat.api.server import ServedModel, ServerOptions, create_app
from smolchat.engine import EngineSettings
from smolchat.service import EngineService, Loaded, LoadRequest, TurnFinished
from tests.api.live import FINISHED, LiveServer, data_uri

ENDLESS = {"max_tokens": 4000, "ignore_eos": True, "temperature": 0}
WEB_PAGE = "http://localhost:3000"


@pytest.fixture(scope="module")
def slow(smollm2_path, tmp_path_factory):
    finished: list = []
    service = EngineService(lambda e: finished.append(e.result) if isinstance(e, TurnFinished) else None)
    model = ServedModel(id="smollm2", n_ctx=4096, takes_images=False)
    assert isinstance(
        service.stream(LoadRequest(model.id, smollm2_path, None, EngineSettings(n_ctx=4096))).wait(), Loaded
    )
    model.ready.set()
    limited = LiveServer(create_app(service, model, ServerOptions(time_limit_s=1.5, cors_origins=(WEB_PAGE,))))
    yield limited, finished
    limited.stop()
    service.close()


def ask(server, body, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=kwargs.pop("timeout", 120), **kwargs)


def test_a_client_that_gives_up_on_a_whole_answer_frees_the_model(slow):
    server, finished = slow
    before = len(finished)
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Go on and on."}], **ENDLESS}
    with pytest.raises(httpx.TimeoutException):
        ask(server, body, timeout=0.5)  # the client hangs up, the answer not streamed
    quick = ask(server, {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert quick.status_code == 200
    abandoned = finished[before].stats
    assert abandoned.finish_reason == "cancelled" and abandoned.generated_tokens < 4000


def test_a_request_past_the_time_limit_is_stopped_with_a_504(slow):
    server, finished = slow
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Go on and on."}], **ENDLESS}
    reply = ask(server, body)
    assert reply.status_code == 504 and "limit" in reply.json()["error"]["message"]
    assert finished[-1].stats.finish_reason == "cancelled"
    streamed = ask(server, {**body, "stream": True})
    assert "limit" in streamed.text and streamed.text.rstrip().endswith("data: [DONE]")
    assert ask(server, {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})


def test_cors_only_for_the_origins_named(slow, ready):
    server, _ = slow
    preflight = {
        "Origin": WEB_PAGE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    allowed = httpx.options(f"{server.url}/v1/chat/completions", headers=preflight, timeout=10)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == WEB_PAGE
    other = httpx.options(
        f"{server.url}/v1/chat/completions", headers={**preflight, "Origin": "http://evil.test"}, timeout=10
    )
    assert "access-control-allow-origin" not in other.headers
    by_default = httpx.get(f"{ready.url}/health", headers={"Origin": WEB_PAGE}, timeout=10)
    assert "access-control-allow-origin" not in by_default.headers


@pytest.fixture(scope="module")
def open_server(served, tmp_path_factory, images):
    """The tiny pair's service behind a second server: a media folder, images from the web."""
    service, _, model, _ = served
    media = tmp_path_factory.mktemp("media")
    (media / "photo.png").write_bytes(images["small"].read_bytes())
    (media / "escape.png").symlink_to(images["second"])  # a link out of the folder
    server = LiveServer(create_app(service, model, ServerOptions(media_dir=media, allow_remote_images=True)))
    yield server, media
    server.stop()


def image_request(url: str) -> dict:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "?"}]
    return {"model": "smolvlm-tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 2}


def test_files_only_from_under_the_media_folder(ready, open_server):
    server, media = open_server
    assert ask(server, image_request((media / "photo.png").as_uri())).status_code == 200
    for outside in [(media / "escape.png").as_uri(), (media / ".." / "x.png").as_uri(), "file:///etc/hostname"]:
        reply = ask(server, image_request(outside))
        assert reply.status_code == 404, (outside, reply.text)


class _OneImage(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802 (the standard library's name)
        if self.path == "/big.png":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\0" * (21 * 2**20))
            return
        self.send_response(200 if self.path == "/cat.png" else 404)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        if self.path == "/cat.png":
            self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_images_on_the_web_when_allowed(ready, open_server, images):
    server, _ = open_server
    _OneImage.body = images["small"].read_bytes()
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OneImage)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{web.server_address[1]}"
        assert ask(server, image_request(f"{base}/cat.png")).status_code == 200
        missing = ask(server, image_request(f"{base}/dog.png"))
        assert missing.status_code == 400 and "404" in missing.json()["error"]["message"]
        assert ask(server, image_request(f"{base}/big.png")).status_code == 413
    finally:
        web.shutdown()
    assert ask(server, image_request(data_uri(images["small"]))).status_code == 200
    assert FINISHED  # the tiny pair's service answered these
