"""Schemas come from clients: whatever they send, the answer is a format or a message
(AnswerFormatError), never another exception, and never a grammar llama.cpp cannot read."""

from __future__ import annotations

import copy
import json
import random

from smolchat.engine.structured import AnswerFormatError, json_schema
from tests.engine.test_answer_format import PHOTO_SCHEMA, TREE_SCHEMA, _random_schema

KEYWORDS = [
    "type", "properties", "required", "items", "prefixItems", "enum", "const", "anyOf", "allOf", "oneOf", "$ref",
    "$defs", "minLength", "maxLength", "minItems", "maxItems", "pattern", "format", "additionalProperties",
    "minimum", "title", "not", "description",
]  # fmt: skip
VALUES = [
    None, True, False, 0, -1, 3, 2.5, "", "x", "string", "object", "#/$defs/node", "^a+$", "^(a|b", "date",
    [], ["a"], [1, "x", None], {}, {"type": "string"}, {"a": {"type": "integer"}}, "\\", '"', "\x00", "é" * 40,
]  # fmt: skip


def _mutate(rng: random.Random, schema):
    if isinstance(schema, dict) and schema and rng.random() < 0.7:
        key = rng.choice(list(schema))
        if rng.random() < 0.5:
            schema[key] = _mutate(rng, schema[key])
        else:
            schema[rng.choice(KEYWORDS)] = copy.deepcopy(rng.choice(VALUES))
        return schema
    if isinstance(schema, list) and schema:
        i = rng.randrange(len(schema))
        schema[i] = _mutate(rng, schema[i])
        return schema
    return copy.deepcopy(rng.choice(VALUES))


def test_mutated_schemas_give_a_format_or_a_message():
    rng = random.Random(3)
    seeds = [PHOTO_SCHEMA, TREE_SCHEMA] + [_random_schema(rng, 3) for _ in range(20)]
    accepted = refused = 0
    for i in range(1500):
        schema = _mutate(rng, copy.deepcopy(rng.choice(seeds)))
        for _ in range(rng.randint(0, 3)):
            schema = _mutate(rng, schema)
        try:
            answer_format = json_schema(schema)
        except AnswerFormatError as e:
            assert str(e), schema
            refused += 1
            continue
        accepted += 1
        shortest = answer_format.shortest  # it can always be finished...
        assert answer_format.check(shortest) == json.loads(shortest), (i, schema, shortest)  # ...validly
    assert accepted > 50 and refused > 500
