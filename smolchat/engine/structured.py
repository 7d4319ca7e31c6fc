"""Answers in JSON that always parse and validate: a client's JSON schema (or "any JSON
object") becomes a grammar that llama.cpp's sampler follows, the answer is closed in time when
the tokens run out, and it is checked against the schema before it is given.

llama-cpp-python's converter writes the grammar. Around it: keywords a grammar cannot enforce
(``minimum``, ``uniqueItems``...) are refused with a message instead of being ignored, and a
string's characters are those JSON allows unescaped (the converter lets control characters and,
in patterns, quotes through). The engine follows the answer with ``gbnf`` and closes it in time
when the tokens run out.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from smolchat.engine import gbnf
from smolchat.engine.types import RequestError
from smolchat.errors import SmolChatError

# JSON Schema keywords that describe and constrain nothing
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"}
)
# what the grammar enforces
_ENFORCED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "anyOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
        "minLength",
        "maxLength",
        "pattern",
        "format",  # date, time, date-time and uuid are enforced; other formats are annotations
    }
)
_TYPES = frozenset({"string", "number", "integer", "boolean", "null", "object", "array"})
MAX_SCHEMA_BYTES = 64 * 1024

# A string's character: anything JSON allows unescaped (not a quote, a backslash or a control
# character), or a short escape; \\uXXXX escapes are left out (they could split surrogates).
_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" ["\\/bfnrt]'
_PATTERN_CHAR = r'[^"\\\x7F\x00-\x1F]'


class AnswerFormatError(RequestError):
    """A schema the grammar cannot enforce, an answer that cannot fit, or (never expected) an
    answer that does not validate; the message says which and what to do."""


@dataclass(frozen=True, eq=False)
class JsonFormat:
    """An answer in JSON: the schema it validates against (None: any JSON object), and the
    grammar that makes it so, as llama.cpp reads it and as the engine follows it."""

    schema: dict | None
    grammar_text: str = field(repr=False)
    grammar: gbnf.Grammar = field(repr=False)

    @property
    def shortest(self) -> str:
        """The shortest answer the format allows."""
        return self.grammar.start().completion()

    def check(self, text: str) -> object:
        """The answer parsed, after checking it against the schema."""
        try:
            value = json.loads(text)
        except ValueError as e:
            raise AnswerFormatError(f"The answer is not valid JSON ({e}).") from None
        if self.schema is None:
            if not isinstance(value, dict):
                raise AnswerFormatError("The answer is not a JSON object.")
            return value
        import jsonschema

        validator = jsonschema.validators.validator_for(self.schema)(self.schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the answer"
            raise AnswerFormatError(f"The answer does not match the schema at {where}: {error.message}")
        return value


def json_object() -> JsonFormat:
    """Any JSON object (OpenAI's ``{"type": "json_object"}``, Ollama's ``format: "json"``)."""
    return _format(None, {"type": "object"})


def json_schema(schema: object) -> JsonFormat:
    """An answer that validates against ``schema``; AnswerFormatError if the grammar cannot
    make sure of it."""
    if not isinstance(schema, dict):
        raise AnswerFormatError("The JSON schema must be an object.")
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise AnswerFormatError(f"The JSON schema is larger than {MAX_SCHEMA_BYTES // 1024} KB.")
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        raise AnswerFormatError(f"The JSON schema is not valid: {e.message}") from None
    _check(schema, "#")
    converted = _merged(copy.deepcopy(schema))
    assert isinstance(converted, dict)
    answer_format = _format(schema, converted)
    try:  # the last guard: even the shortest answer the grammar allows must validate
        answer_format.check(answer_format.shortest)
    except AnswerFormatError as e:
        raise AnswerFormatError(f"The schema combines keywords the grammar cannot follow together ({e})") from None
    return answer_format


def _check(schema: object, where: str) -> None:
    """Refuse what the grammar would not enforce, so that no answer fails the schema later."""
    if isinstance(schema, bool):
        if schema is False:
            raise AnswerFormatError(f"{where}: a false schema admits no answer.")
        return
    if not isinstance(schema, dict):
        raise AnswerFormatError(f"{where}: a schema must be an object.")
    for key in schema:
        if key not in _ENFORCED and key not in _ANNOTATIONS:
            hint = " (use anyOf)" if key == "oneOf" else ""
            raise AnswerFormatError(
                f"{where}: the keyword {key!r} cannot be enforced while the answer is written{hint}; remove it."
            )
    types = schema.get("type")
    for t in types if isinstance(types, list) else [types] if types is not None else []:
        if t not in _TYPES:
            raise AnswerFormatError(f"{where}: unknown type {t!r}.")
    ref = schema.get("$ref")
    if ref is not None and not (isinstance(ref, str) and ref.startswith("#/")):
        raise AnswerFormatError(f"{where}: only references inside the schema (#/...) are followed, not {ref!r}.")
    if ref is not None and len(set(schema) - _ANNOTATIONS) > 1:
        raise AnswerFormatError(f"{where}: a $ref must stand alone (besides descriptions).")
    if "allOf" in schema and (len(schema["allOf"]) != 1 or len(set(schema) - _ANNOTATIONS) > 1):
        raise AnswerFormatError(f"{where}: allOf is followed only with one schema in it; merge the schemas.")
    _check_combination(schema, where)
    pattern = schema.get("pattern")
    if pattern is not None and not (pattern.startswith("^") and pattern.endswith("$")):
        raise AnswerFormatError(f"{where}: a pattern must match the whole string (start with ^ and end with $).")
    properties = schema.get("properties", {})
    for text in [*properties, *_strings(schema.get("enum", [])), *_strings([schema.get("const")])]:
        if any(c in text for c in '"\\') or any(ord(c) < 0x20 for c in text):
            raise AnswerFormatError(
                f"{where}: names and values with quotes, backslashes or control characters "
                f"are not supported ({text[:40]!r})."
            )
    missing = [name for name in schema.get("required", []) if name not in properties]
    if missing:
        raise AnswerFormatError(f"{where}: required {missing[0]!r} is not among the properties.")
    for key in ("properties", "$defs", "definitions"):
        for name, sub in schema.get(key, {}).items():
            _check(sub, f"{where}/{key}/{name}")
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if key == "additionalProperties" and sub is False:
            continue
        if isinstance(sub, list):
            for i, s in enumerate(sub):
                _check(s, f"{where}/{key}/{i}")
        elif sub is not None:
            _check(sub, f"{where}/{key}")
    for key in ("prefixItems", "anyOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            _check(sub, f"{where}/{key}/{i}")


def _check_combination(schema: dict, where: str) -> None:
    """The converter follows one rule of a schema (its union, its constant, its type list, its
    pattern...) and drops what is beside it: refuse what it would drop."""
    constraints = set(schema) - _ANNOTATIONS - {"$defs", "definitions"}
    for key in ("anyOf", "allOf"):
        if key in schema and constraints - {key}:
            raise AnswerFormatError(
                f"{where}: {key} cannot be combined with {sorted(constraints - {key})[0]!r}; move it inside."
            )
    if isinstance(schema.get("type"), list) and constraints - {"type"}:
        raise AnswerFormatError(
            f"{where}: a list of types cannot be combined with {sorted(constraints - {'type'})[0]!r}; use anyOf."
        )
    for key in ("const", "enum"):
        if key not in schema:
            continue
        values = [schema["const"]] if key == "const" else schema["enum"]
        if not values:
            raise AnswerFormatError(f"{where}: an empty enum admits no answer.")
        import jsonschema

        rest = {k: v for k, v in schema.items() if k not in ("const", "enum", "$defs", "definitions")}
        for value in values:
            if not jsonschema.validators.validator_for(schema)(rest).is_valid(value):
                raise AnswerFormatError(f"{where}: {key} value {value!r} does not match the schema's other keywords.")
        return  # the answer is one of the values: nothing else applies
    if ("pattern" in schema or "format" in schema) and {"minLength", "maxLength"} & constraints:
        raise AnswerFormatError(f"{where}: minLength and maxLength are not enforced beside a pattern or a format.")
    if "prefixItems" in schema and {"items", "minItems", "maxItems"} & constraints:
        raise AnswerFormatError(f"{where}: prefixItems is followed alone (without items, minItems or maxItems).")
    for low, high in (("minLength", "maxLength"), ("minItems", "maxItems")):
        if schema.get(low, 0) > schema.get(high, float("inf")):
            raise AnswerFormatError(f"{where}: {low} is above {high}: no answer fits.")


def _strings(values: list) -> list[str]:
    """Every string in ``values``, nested ones included."""
    found: list[str] = []
    for v in values:
        if isinstance(v, str):
            found.append(v)
        elif isinstance(v, list):
            found += _strings(v)
        elif isinstance(v, dict):
            found += _strings(list(v)) + _strings(list(v.values()))
    return found


def _merged(schema: object) -> object:
    """The schema as the converter can read it, admitting no answer the original refuses:
    allOf of one schema (as pydantic writes a described reference) merged into its holder
    (the converter reads allOf as objects to join), and ``true`` or ``{}`` (any value) read
    as any object, which is all the converter writes for them."""
    if schema is True or schema == {}:
        return {"type": "object"}
    if isinstance(schema, list):
        return [_merged(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "allOf" in schema:
        schema = {**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}}
    merged: dict = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions"):
            merged[key] = {name: _merged(sub) for name, sub in value.items()}
        elif key in ("items", "prefixItems", "anyOf") or (key == "additionalProperties" and value is not True):
            merged[key] = _merged(value)
        else:
            merged[key] = value
    return merged


def _format(schema: dict | None, converted: dict) -> JsonFormat:
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        converter.visit(converter.resolve_refs(converted, ""), "")
    except (AssertionError, ValueError, KeyError, TypeError, IndexError, RecursionError) as e:
        raise AnswerFormatError(f"The JSON schema cannot be turned into a grammar ({e}).") from None
    rules = converter._rules  # the rules as written, before they are joined into text
    if "char" in rules:
        rules["char"] = _JSON_CHAR
    if "dot" in rules:
        rules["dot"] = _PATTERN_CHAR
    text = converter.format_grammar()
    try:
        grammar = gbnf.parse(text)
        grammar.start()
    except gbnf.GrammarError as e:
        raise AnswerFormatError(f"The JSON schema cannot be followed: {e}.") from None
    return JsonFormat(schema, text, grammar)


def schema_from_file(path: Path) -> JsonFormat:
    """The answer format of the JSON schema in ``path``; the message names the file and says
    what is wrong with it."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise AnswerFormatError(f"{path}: cannot be read ({e.strerror or e}).") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise AnswerFormatError(f"{path}: is not a JSON schema ({e}).") from None
    try:
        return json_schema(schema)
    except SmolChatError as e:
        raise AnswerFormatError(f"{path}: {e}") from None
