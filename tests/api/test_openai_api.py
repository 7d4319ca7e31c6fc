"""The OpenAI-compatible API, driven over HTTP on 127.0.0.1: by the real ``openai`` client and
by raw requests. The server runs the tiny fixture pair (random weights: the answers' words
mean nothing, their shape and figures do)."""

from __future__ import annotations

import base64
import json
import threading

import httpx2 as httpx
import pytest

from smolchat.service import Loaded
from tests.api.live import AUTH, FINISHED, KEY, data_uri
from tests.engine.test_image_corpus import corpus  # noqa: F401  (the fixture)


def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


def post(server, body, *, key=KEY, timeout=120, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=timeout, **kwargs)


def test_health_says_loading_until_the_model_is_ready(served):
    _, server, model, loading = served
    if not model.ready.is_set():
        loading_reply = httpx.get(f"{server.url}/health", timeout=10)
        assert loading_reply.status_code == 503 and "loading" in loading_reply.json()["error"]["message"]
        refused = post(server, {"model": model.id, "messages": [{"role": "user", "content": "Hi"}]})
        assert refused.status_code == 503
    assert isinstance(loading.wait(), Loaded)
    model.ready.set()
    reply = httpx.get(f"{server.url}/health", timeout=10)
    assert reply.status_code == 200 and reply.json() == {"status": "ok"}


def test_models_lists_the_served_model_and_that_it_takes_images(ready):
    models = client(ready).models.list()
    assert [m.id for m in models.data] == ["smolvlm-tiny"]
    card = models.data[0].model_dump()
    assert card["owned_by"] == "smolchat" and "image" in card["input_modalities"] and card["created"] > 0


def test_an_image_as_a_data_uri_and_a_follow_up_that_resends_it(ready, images):
    openai = client(ready)
    picture = {"type": "image_url", "image_url": {"url": data_uri(images["photo"])}}
    first_messages = [{"role": "user", "content": [picture, {"type": "text", "text": "What is this?"}]}]
    first = openai.chat.completions.create(model="smolvlm-tiny", messages=first_messages, max_tokens=8, temperature=0)
    assert first.object == "chat.completion" and first.choices[0].message.role == "assistant"
    assert first.usage.completion_tokens >= 1 and first.usage.prompt_tokens > 13 * 4  # 13 tiles of image tokens
    follow_up = first_messages + [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And the colours?"},
    ]
    second = openai.chat.completions.create(model="smolvlm-tiny", messages=follow_up, max_tokens=8, temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 0.9 * first.usage.prompt_tokens  # the image was not read again
    timings = second.model_extra["timings"]
    assert timings["cache_n"] == cached and timings["prompt_n"] == second.usage.prompt_tokens - cached
    assert FINISHED[-1].stats.image_tiles_encoded == 0  # no tile read again


def test_streaming_sends_chunks_a_usage_chunk_and_done(ready):
    with httpx.stream(
        "POST",
        f"{ready.url}/v1/chat/completions",
        json={
            "model": "smolvlm-tiny",
            "messages": [{"role": "user", "content": "Count to three."}],
            "max_tokens": 6,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
    ) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "length"
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 6


def test_the_openai_client_streams_too(ready):
    pieces = client(ready).chat.completions.create(
        model="smolvlm-tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
    )
    assert [p.choices[0].finish_reason for p in pieces if p.choices][-1] == "length"


@pytest.mark.parametrize(
    "body, status",
    [
        ({"model": "smolvlm-tiny", "messages": []}, 400),
        ({"model": "smolvlm-tiny", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, 400),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}, 404),
        ({"model": "smolvlm-tiny", "messages": [{"role": "user", "content": "Hi"}], "n": 3}, 400),
        ({"model": "smolvlm-tiny", "messages": [{"role": "wizard", "content": "Hi"}]}, 400),
    ],
)
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(ready, body, status):
    reply = post(ready, body)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["message"] and error["type"]
    assert post(ready, {"model": "smolvlm-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})


def image_message(url: str) -> dict:
    return {
        "model": "smolvlm-tiny",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
        "max_tokens": 2,
    }


@pytest.mark.parametrize(
    "url, status, says",
    [
        ("data:image/png;base64," + base64.b64encode(b"not a picture at all").decode(), 400, ""),
        ("data:image/png;base64,@@@@", 400, "base64"),
        ("https://example.com/cat.png", 400, "not fetched"),
        ("file:///etc/passwd", 400, "--media-dir"),
        ("ftp://example.com/cat.png", 400, "data URI"),
        ("data:image/png;base64," + "A" * (12 * 2**20), 413, "larger"),
    ],
)
def test_images_that_cannot_be_used_are_refused(ready, url, status, says):
    reply = post(ready, image_message(url))
    assert reply.status_code == status, reply.text
    assert says in reply.json()["error"]["message"]


def test_broken_json_oversized_bodies_and_missing_keys(ready):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    broken = httpx.post(f"{ready.url}/v1/chat/completions", content=b'{"model": ', headers=headers, timeout=30)
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]["message"]
    huge = httpx.post(f"{ready.url}/v1/chat/completions", content=b" " * (9 * 2**20), headers=headers, timeout=30)
    assert huge.status_code == 413
    for key in (None, "sk-wrong"):
        refused = post(ready, {"model": "smolvlm-tiny", "messages": [{"role": "user", "content": "Hi"}]}, key=key)
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{ready.url}/v1/models", timeout=10).status_code == 401
    unknown = httpx.get(f"{ready.url}/v2/nothing", headers=headers, timeout=10)
    assert unknown.status_code == 404 and "error" in unknown.json()


def test_concurrent_clients_are_all_answered(ready):
    results: list[int] = []

    def ask(i: int) -> None:
        reply = post(
            ready, {"model": "smolvlm-tiny", "messages": [{"role": "user", "content": f"Q{i}"}], "max_tokens": 3}
        )
        results.append(reply.status_code)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [200] * 4


def test_a_client_that_disconnects_mid_stream_frees_the_model(ready):
    before = len(FINISHED)
    body = {
        "model": "smolvlm-tiny",
        "messages": [{"role": "user", "content": "Go on."}],
        "max_tokens": 4000,
        "ignore_eos": True,  # as llama-server takes it: the answer would run to 4000 tokens
        "stream": True,
    }
    with httpx.stream("POST", f"{ready.url}/v1/chat/completions", json=body, headers=AUTH, timeout=60) as reply:
        for n, _line in enumerate(reply.iter_lines()):
            if n > 5:
                break  # the answer has started: hang up
    quick = post(ready, {"model": "smolvlm-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert quick.status_code == 200
    abandoned = FINISHED[before].stats
    assert abandoned.finish_reason == "cancelled" and abandoned.generated_tokens < 4000  # stopped, not run out


def test_the_hostile_image_corpus_gets_answers_or_400s_and_the_server_keeps_serving(ready, corpus):  # noqa: F811
    """Every odd and hostile file of the image corpus, sent as a data URI: answered, or refused
    with a 400 or 413 that says why; never a 500, and the server answers afterwards."""
    statuses = {}
    for path in corpus[::4]:  # a quarter, every kind among them: each answered one reads its tiles
        reply = post(ready, {**image_message(data_uri(path)), "max_tokens": 1})
        assert reply.status_code in (200, 400, 413), (path.name, reply.status_code, reply.text[:300])
        if reply.status_code != 200:
            assert reply.json()["error"]["message"]
        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
    assert statuses.get(200) and statuses.get(400)  # the corpus holds both kinds
    assert post(ready, {"model": "smolvlm-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})


CAPTION_SCHEMA = {
    "type": "object",
    "properties": {
        "caption": {"type": "string"},
        "objects": {"type": "array", "items": {"type": "string"}},
        "kind": {"enum": ["photo", "screenshot"]},
    },
    "required": ["caption", "objects", "kind"],
}


def test_json_schema_answers_validate_every_time_images_included(ready, images):
    """The random-weight model never means to stop or to write JSON: the grammar makes every
    answer valid anyway, closed in time where max_tokens would cut it."""
    import jsonschema

    openai = client(ready)
    fmt = {"type": "json_schema", "json_schema": {"name": "caption", "schema": CAPTION_SCHEMA, "strict": True}}
    picture = {"type": "image_url", "image_url": {"url": data_uri(images["small"])}}
    finishes = set()
    for seed, max_tokens in [(0, 60), (1, 120), (2, 400), (3, 1000)]:
        reply = openai.chat.completions.create(
            model="smolvlm-tiny",
            messages=[{"role": "user", "content": [picture, {"type": "text", "text": "Describe it."}]}],
            response_format=fmt,
            max_tokens=max_tokens,
            temperature=1.0,
            seed=seed,
        )
        jsonschema.validate(json.loads(reply.choices[0].message.content), CAPTION_SCHEMA)
        assert reply.usage.completion_tokens <= max_tokens
        finishes.add(reply.choices[0].finish_reason)
    assert "length" in finishes  # some were closed early, and still valid
    streamed = openai.chat.completions.create(
        model="smolvlm-tiny",
        messages=[{"role": "user", "content": "Any JSON object."}],
        response_format={"type": "json_object"},
        max_tokens=80,
        stream=True,
    )
    text = "".join(p.choices[0].delta.content or "" for p in streamed if p.choices)
    assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize(
    "response_format, says",
    [
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "maximum": 3}}}, "maximum"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "schema"),
        ({"type": "yaml"}, "response_format"),
    ],
)
def test_response_formats_that_cannot_be_followed_are_400s(ready, response_format, says):
    reply = post(
        ready,
        {"model": "smolvlm-tiny", "messages": [{"role": "user", "content": "Hi"}], "response_format": response_format},
    )
    assert reply.status_code == 400 and says in reply.json()["error"]["message"], reply.text


def test_a_format_too_long_for_max_tokens_is_a_400(ready):
    body = {
        "model": "smolvlm-tiny",
        "messages": [{"role": "user", "content": "Hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": CAPTION_SCHEMA}},
        "max_tokens": 5,
    }
    reply = post(ready, body)
    assert reply.status_code == 400 and "max_tokens" in reply.json()["error"]["message"]


def test_a_million_token_prompt_is_refused_and_the_server_keeps_serving(ready):
    reply = post(ready, {"model": "smolvlm-tiny", "messages": [{"role": "user", "content": "word " * 1_000_000}]})
    assert reply.status_code == 400, reply.text[:300]
    assert post(ready, {"model": "smolvlm-tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})


def test_clients_taking_turns_each_keep_their_cache(ready, images):
    openai = client(ready)

    def ask(messages):
        reply = openai.chat.completions.create(model="smolvlm-tiny", messages=messages, max_tokens=4, temperature=0)
        return reply, FINISHED[-1].stats

    histories, first_prompt = {}, {}
    for name, picture in (("a", images["photo"]), ("b", images["second"])):
        part = {"type": "image_url", "image_url": {"url": data_uri(picture)}}
        histories[name] = [{"role": "user", "content": [part, {"type": "text", "text": f"Client {name}?"}]}]
        reply, _ = ask(histories[name])
        first_prompt[name] = reply.usage.prompt_tokens
        histories[name].append({"role": "assistant", "content": reply.choices[0].message.content})
    for turn in range(2):
        for name in ("a", "b"):
            histories[name].append({"role": "user", "content": f"Again {turn}?"})
            reply, stats = ask(histories[name])
            assert stats.image_tiles_encoded == 0, name
            assert reply.usage.prompt_tokens_details.cached_tokens >= first_prompt[name]  # image and all
            histories[name].append({"role": "assistant", "content": reply.choices[0].message.content})
