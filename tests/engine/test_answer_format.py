"""Answers in JSON: they parse and validate every time, on a model with random weights too
(which never means to stop), at any max_tokens that fits the shortest answer."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest

from smolchat.engine import EngineSettings, Message, SamplingParams
from smolchat.engine.engine import Engine
from smolchat.engine.structured import AnswerFormatError, json_object, json_schema
from tests.helpers import answer

PHOTO_SCHEMA = {
    "type": "object",
    "properties": {
        "caption": {"type": "string", "description": "one sentence"},
        "objects": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
        "count": {"type": "integer"},
        "kind": {"enum": ["photo", "screenshot", "drawing"]},
        "taken": {"type": "string", "format": "date"},
        "colours": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 1},
        "meta": {"type": "object"},
        "score": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "tags": {"type": "array", "prefixItems": [{"type": "boolean"}, {"const": "x"}]},
    },
    "required": ["caption", "objects", "count", "kind", "colours"],
}

# A recursive schema (a tree), and pydantic's way of writing a described reference.
TREE_SCHEMA = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["name", "children"],
        },
        "Colour": {"enum": ["red", "green"]},
    },
    "type": "object",
    "properties": {"root": {"$ref": "#/$defs/node"}, "colour": {"allOf": [{"$ref": "#/$defs/Colour"}], "title": "C"}},
    "required": ["root", "colour"],
}


@pytest.fixture(scope="module")
def tiny_text(tiny_pair):
    with Engine(tiny_pair[0], None, EngineSettings(n_ctx=2048)) as engine:
        yield engine


def _valid(schema, text):
    value = json.loads(text)  # strict: control characters in strings would fail here
    if schema is not None:
        jsonschema.validate(value, schema)
    else:
        assert isinstance(value, dict)
    return value


@pytest.mark.parametrize("schema", [PHOTO_SCHEMA, TREE_SCHEMA, None], ids=["photo", "tree", "any-object"])
@pytest.mark.parametrize("max_tokens", [80, 200, 1000])
def test_random_weights_always_give_valid_json(tiny_text, schema, max_tokens):
    answer_format = json_schema(schema) if schema is not None else json_object()
    for seed in range(3):
        sampling = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=seed, max_tokens=max_tokens)
        result, deltas = answer(tiny_text, [Message.user("Describe it.")], _with(sampling, answer_format))
        _valid(schema, result.text)
        assert "".join(deltas) == result.text  # what streamed is the answer, closing included
        assert result.stats.generated_tokens <= max_tokens
        assert answer_format.check(result.text) == json.loads(result.text)
        tiny_text.reset()


def test_an_answer_cut_by_max_tokens_is_closed_and_says_length(tiny_text):
    answer_format = json_schema(PHOTO_SCHEMA)
    sampling = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=1, max_tokens=120)
    result, _ = answer(tiny_text, [Message.user("Describe it.")], _with(sampling, answer_format))
    value = _valid(PHOTO_SCHEMA, result.text)
    assert result.stats.finish_reason == "length"  # random weights never finish by themselves
    assert set(PHOTO_SCHEMA["required"]) <= set(value)


def test_random_schemas(tiny_text):
    """Schemas put together at random from what the grammar enforces."""
    rng = random.Random(5)
    for i in range(12):
        schema = _random_schema(rng, depth=3)
        answer_format = json_schema(schema)
        sampling = SamplingParams(temperature=1.2, top_k=0, top_p=1.0, seed=i, max_tokens=rng.choice([80, 300]))
        try:
            result, _ = answer(tiny_text, [Message.user("Go.")], _with(sampling, answer_format))
        except AnswerFormatError:  # the shortest answer of this schema does not fit
            assert len(answer_format.shortest.encode()) > sampling.max_tokens
            continue
        _valid(schema, result.text)
        tiny_text.reset()


def test_a_real_model_answers_in_the_schema(smollm2_path):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "hobbies": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "age", "hobbies"],
    }
    with Engine(smollm2_path, None, EngineSettings(n_ctx=2048)) as engine:
        sampling = SamplingParams(temperature=0.0, max_tokens=200, answer_format=json_schema(schema))
        result, _ = answer(engine, [Message.user("Describe a person named Bob as JSON: name, age, hobbies.")], sampling)
    value = _valid(schema, result.text)  # its words differ between CPUs; that they fit the schema does not
    assert isinstance(value["name"], str)


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "integer", "minimum": 0}, "'minimum'"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "anyOf"),
        ({"$ref": "https://example.com/schema.json"}, "inside the schema"),
        ({"type": "string", "pattern": "[a-z]+"}, "whole string"),
        ({"type": "object", "properties": {}, "required": ["x"]}, "'x'"),
        ({"type": "strnig"}, "not valid"),
        ({"type": "object", "properties": {"a": {"uniqueItems": True}}}, "#/properties/a"),
        ([1, 2], "must be an object"),
        ({"type": "object", "properties": {'say "hi"': {"type": "string"}}}, "quotes"),
        ({"enum": ["a\\b"]}, "backslashes"),
    ],
)
def test_schemas_the_grammar_cannot_enforce_are_refused_with_a_reason(schema, says):
    with pytest.raises(AnswerFormatError, match=None) as caught:
        json_schema(schema)
    assert says in str(caught.value)


def test_a_format_whose_shortest_answer_does_not_fit_is_refused_before_reading(tiny_text):
    sampling = SamplingParams(max_tokens=10, answer_format=json_schema(PHOTO_SCHEMA))
    with pytest.raises(AnswerFormatError, match="raise max_tokens"):
        answer(tiny_text, [Message.user("Describe it.")], sampling)
    with pytest.raises(AnswerFormatError, match="cannot ignore the end"):
        answer(tiny_text, [Message.user("x")], _with(SamplingParams(ignore_eos=True), json_object()))
    result, _ = answer(tiny_text, [Message.user("Still answers.")])
    assert result.stats.generated_tokens > 0


def test_stop_sequences_do_not_cut_a_formatted_answer(tiny_text):
    stops = tuple('"{}[],:0123456789')[:4]
    sampling = SamplingParams(temperature=1.5, top_k=0, seed=2, max_tokens=150, stop=stops, answer_format=json_object())
    result, _ = answer(tiny_text, [Message.user("Go.")], sampling)
    _valid(None, result.text)


def _with(sampling: SamplingParams, answer_format) -> SamplingParams:
    from dataclasses import replace

    return replace(sampling, answer_format=answer_format)


def _random_schema(rng: random.Random, depth: int) -> dict:
    kinds = ["string", "integer", "number", "boolean", "null", "enum", "const", "date", "bounded"]
    if depth > 0:
        kinds += ["object", "object", "array", "anyOf", "free"]
    kind = rng.choice(kinds)
    if kind == "object":
        names = rng.sample(["a", "b", "c d", "é", "x-y", "n"], rng.randint(0, 4))
        properties = {name: _random_schema(rng, depth - 1) for name in names}
        schema: dict = {"type": "object", "properties": properties}
        schema["required"] = [n for n in names if rng.random() < 0.6]
        return schema
    if kind == "array":
        schema = {"type": "array", "items": _random_schema(rng, depth - 1)}
        if rng.random() < 0.5:
            schema["maxItems"] = rng.randint(0, 4)
        if rng.random() < 0.3:
            schema["minItems"] = min(schema.get("maxItems", 2), rng.randint(0, 2))
        return schema
    if kind == "anyOf":
        return {"anyOf": [_random_schema(rng, depth - 1) for _ in range(rng.randint(1, 3))]}
    if kind == "free":
        return {}
    if kind == "enum":
        return {"enum": rng.sample(["x", 1, None, True, "a b", 2.5], rng.randint(1, 4))}
    if kind == "const":
        return {"const": rng.choice(["fixed", 0, False])}
    if kind == "date":
        return {"type": "string", "format": "date"}
    if kind == "bounded":
        low = rng.randint(0, 3)
        return {"type": "string", "minLength": low, "maxLength": low + rng.randint(0, 5)}
    return {"type": kind}
