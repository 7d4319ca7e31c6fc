"""Ollama's API on the same server: the real ``ollama`` client and the raw payloads that
tools written for Ollama send."""

from __future__ import annotations

import base64
import json

import httpx2 as httpx
import jsonschema
import pytest

from tests.api.live import AUTH, FINISHED, KEY, MODEL

CAPTION_SCHEMA = {
    "type": "object",
    "properties": {
        "caption": {"type": "string"},
        "objects": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "people": {"type": "integer"},
    },
    "required": ["caption", "objects", "people"],
}


def ollama_client(server):
    import ollama

    return ollama.Client(host=server.url, headers=AUTH, timeout=120)


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_chat_with_an_image_through_the_ollama_client(ready, images):
    ollama = ollama_client(ready)
    messages = [{"role": "user", "content": "What is in the picture?", "images": [str(images["photo"])]}]
    first = ollama.chat(model=MODEL, messages=messages, options={"num_predict": 6, "temperature": 0})
    assert first.done and first.message.role == "assistant" and first.done_reason == "length"
    assert first.eval_count == 6 and first.eval_duration > 0 and first.prompt_eval_count > 13 * 4
    follow_up = messages + [
        {"role": "assistant", "content": first.message.content},
        {"role": "user", "content": "And the colours?"},
    ]
    second = ollama.chat(model=f"{MODEL}:latest", messages=follow_up, options={"num_predict": 4})
    assert second.done
    assert FINISHED[-1].stats.image_tiles_encoded == 0  # the resent image came from the cache


def test_chat_streams_newline_delimited_json(ready):
    pieces = list(
        ollama_client(ready).chat(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True, options={"num_predict": 5}
        )
    )
    assert all(not p.done for p in pieces[:-1]) and pieces[-1].done
    assert pieces[-1].eval_count == 5 and pieces[-1].done_reason == "length"
    assert "".join(p.message.content for p in pieces)


def test_generate_with_the_microservice_payload(ready, images):
    """What a FastAPI service written for Ollama posts, and the fields it reads back."""
    body = {
        "model": MODEL,
        "prompt": "Describe this image.",
        "images": [b64(images["second"])],
        "stream": False,
        "options": {"temperature": 0.2, "num_ctx": 4096, "num_predict": 8},
    }
    reply = httpx.post(f"{ready.url}/api/generate", json=body, headers=AUTH, timeout=120)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["model"] == MODEL and answer["done"] is True and isinstance(answer["response"], str)
    assert answer["eval_count"] == 8 and answer["total_duration"] >= answer["eval_duration"] > 0


def test_generate_streams_by_default_as_ollama_does(ready):
    with httpx.stream(
        "POST",
        f"{ready.url}/api/generate",
        json={"model": MODEL, "prompt": "Go", "options": {"num_predict": 3}},
        headers=AUTH,
        timeout=120,
    ) as reply:
        assert reply.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in reply.iter_lines() if line]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert lines[-1]["eval_count"] == 3


@pytest.mark.parametrize("kind", ["chat", "generate"])
def test_format_schema_gives_valid_objects_images_included(ready, images, kind):
    ollama = ollama_client(ready)
    for seed in range(3):
        options = {"temperature": 1.0, "seed": seed, "num_predict": 300}
        if kind == "chat":
            messages = [{"role": "user", "content": "Describe it as JSON.", "images": [str(images["small"])]}]
            text = ollama.chat(model=MODEL, messages=messages, format=CAPTION_SCHEMA, options=options).message.content
        else:
            text = ollama.generate(
                model=MODEL, prompt="As JSON.", images=[str(images["small"])], format=CAPTION_SCHEMA, options=options
            ).response
        jsonschema.validate(json.loads(text), CAPTION_SCHEMA)
    text = ollama.generate(model=MODEL, prompt="Any JSON.", format="json", options={"num_predict": 60}).response
    assert isinstance(json.loads(text), dict)


def test_tags_show_ps_and_version(ready):
    ollama = ollama_client(ready)
    listed = ollama.list().models
    assert [m.model for m in listed] == [MODEL] and listed[0].details.format == "gguf"
    assert listed[0].details.quantization_level == "F32" and listed[0].size == 1234
    shown = ollama.show(MODEL)
    assert "vision" in shown.capabilities
    assert [m.model for m in ollama.ps().models] == [MODEL]
    version = httpx.get(f"{ready.url}/api/version", headers=AUTH, timeout=10).json()["version"]
    assert tuple(int(x) for x in version.split(".")) >= (0, 5, 0)


def test_ollama_errors_are_ollama_shaped(ready):
    import ollama

    with pytest.raises(ollama.ResponseError) as unknown:
        ollama_client(ready).chat(model="llama3", messages=[{"role": "user", "content": "Hi"}])
    assert unknown.value.status_code == 404 and "not found" in unknown.value.error
    cases = [
        ({"model": MODEL, "prompt": "x", "images": ["@@not base64@@"], "stream": False}, 400, "base64"),
        ({"model": MODEL, "prompt": "x", "format": "yaml", "stream": False}, 400, "format"),
        ({"model": MODEL, "prompt": "x", "format": {"type": "integer", "minimum": 1}, "stream": False}, 400, "minimum"),
        ({"model": MODEL, "prompt": "x", "raw": True, "stream": False}, 400, "raw"),
    ]
    for body, status, says in cases:
        reply = httpx.post(f"{ready.url}/api/generate", json=body, headers=AUTH, timeout=30)
        assert reply.status_code == status and says in reply.json()["error"], reply.text
    no_key = httpx.post(f"{ready.url}/api/chat", json={"model": MODEL, "messages": []}, timeout=10)
    assert no_key.status_code == 401 and "error" in no_key.json()
    broken = httpx.post(f"{ready.url}/api/chat", content=b"{", headers={**AUTH, "Content-Type": "application/json"})
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]


def test_an_empty_request_loads_the_model_as_in_ollama(ready):
    reply = httpx.post(f"{ready.url}/api/generate", json={"model": MODEL}, headers=AUTH, timeout=10)
    assert reply.json()["done"] is True and reply.json()["done_reason"] == "load"
    assert KEY  # the key was needed (see the errors test)
