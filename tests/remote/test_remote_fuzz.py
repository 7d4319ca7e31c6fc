"""A hostile or broken server: every reply, mangled at random, ends in an answer or in a
RemoteError with a message, never in another exception or a hang."""

from __future__ import annotations

import http.server
import json
import random
import threading

import pytest

from smolchat.batch import ResultsFile
from smolchat.engine import Message, SamplingParams, TurnResult
from smolchat.errors import SmolChatError
from smolchat.remote import RemoteError, RemoteServer

GOOD_STREAM = (
    b'data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "A dog"}}]}\n\n'
    b'data: {"choices": [{"index": 0, "delta": {"content": " on a beach."}, "finish_reason": null}]}\n\n'
    b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], '
    b'"usage": {"prompt_tokens": 380, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}, '
    b'"timings": {"cache_n": 4, "prompt_n": 376}}\n\n'
    b"data: [DONE]\n\n"
)
GOOD_MODELS = json.dumps(
    {"data": [{"id": "m", "input_modalities": ["text", "image"], "context_length": 4096, "meta": {"n_ctx": 8}}]}
).encode()
ODD_VALUES = [None, True, -1, 2**70, 1.5e308, "", "x" * 300, [], {}, [1, "a"], {"a": {"b": []}}]


def mangled(data: bytes, rng: random.Random) -> bytes:
    how = rng.randrange(6)
    if how == 0:  # cut anywhere
        return data[: rng.randrange(len(data) + 1)]
    if how == 1:  # bytes replaced
        out = bytearray(data)
        for _ in range(rng.randrange(1, 12)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if how == 2:  # a JSON value swapped for one of another type
        text = data.decode()
        for key in ("content", "choices", "delta", "usage", "prompt_tokens", "finish_reason", "data", "id", "error"):
            if rng.random() < 0.3:
                text = text.replace(f'"{key}": ', f'"{key}": {json.dumps(rng.choice(ODD_VALUES))}, "_was": ', 1)
        return text.encode()
    if how == 3:  # an error in the middle
        return data.replace(b"data: [DONE]", b'data: {"error": ' + json.dumps(rng.choice(ODD_VALUES)).encode() + b"}")
    if how == 4:  # lines without their ends, or only ends
        return data.replace(b"\n", b"" if rng.random() < 0.5 else b"\r\n\r\n")
    return bytes(rng.randrange(256) for _ in range(rng.randrange(2000)))


class _Replies(http.server.BaseHTTPRequestHandler):
    replies: list = []

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, body = self.replies.pop(0)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply  # noqa: N815

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def replies():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Replies)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Replies.replies
    httpd.shutdown()


def test_mangled_streams_and_listings_end_in_an_answer_or_a_message(replies):
    url, queue = replies
    rng = random.Random(18)
    answered = refused = 0
    with RemoteServer(url, model="m") as server:
        for _ in range(300):
            status = rng.choice([200, 200, 200, 400, 401, 404, 413, 500, 503])
            queue.append((status, mangled(GOOD_STREAM, rng)))
            try:
                events = list(server.chat([{"role": "user", "content": "Hi"}], SamplingParams(max_tokens=8)))
            except RemoteError as e:
                assert str(e) and "\n" not in str(e)
                refused += 1
            else:
                assert isinstance(events[-1], TurnResult) and isinstance(events[-1].text, str)
                assert events[-1].stats.prompt_tokens >= 0 and events[-1].stats.reused_tokens >= 0
                answered += 1
            queue.append((rng.choice([200, 200, 404, 500]), mangled(GOOD_MODELS, rng)))
            try:
                models = server.models()
            except RemoteError:
                refused += 1
            else:
                assert all(isinstance(m.id, str) and 0 < len(m.id) <= 200 for m in models)
                assert all(m.n_ctx is None or (isinstance(m.n_ctx, int) and m.n_ctx > 0) for m in models)
    assert answered > 30 and refused > 30  # both ways were taken


def test_a_turn_through_the_fuzzed_server_takes_pictures_too(replies, images):
    url, queue = replies
    queue.append((200, GOOD_STREAM))
    with RemoteServer(url, model="m") as server:
        events = list(server.turn([Message.user("What is it?", images=[images["photo"]])], SamplingParams()))
    assert [e.text for e in events[:-1]] == ["A dog", " on a beach."]
    assert events[-1].stats.prompt_tokens == 380 and events[-1].stats.reused_tokens == 4


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_damaged_results_file_is_read_without_a_crash(tmp_path, kind):
    rng = random.Random(7)
    results = tmp_path / f"results.{kind}"
    writer = ResultsFile(results)
    writer.open()
    for i in range(5):
        writer.write({"file": f"p{i}.png", "sha256": f"{i:064x}", "result": f"line\n{i}", "stats": {"seconds": i}})
    writer.close()
    good = results.read_bytes()
    for _ in range(200):
        results.write_bytes(mangled(good, rng))
        reader = ResultsFile(results)
        try:
            done = reader.open()
        except SmolChatError as e:  # a CSV whose header no longer matches, or that cannot be parsed: said
            assert "other columns" in str(e) or "is damaged" in str(e)
            continue
        reader.close()
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in done.items())
