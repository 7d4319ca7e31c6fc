"""A model's chat template, rendered into text and image segments within fixed bounds.

A chat template is a Jinja program that comes inside the model file, so it is hostile input.
Jinja's sandbox keeps it away from Python's internals but not from the CPU or memory: nested
loops, ``'x' * 10**9`` or a string doubled in a loop would hang or exhaust the process. Every
render here stops with a ``TemplateError`` once it has run for ``RENDER_TIME_LIMIT_S`` or built
more than ``RENDER_OUTPUT_LIMIT`` characters, wherever it spends them: the output, a variable, a
repeated string or list, a padding width. The limits are far above what a real template needs
(SmolVLM's renders a long conversation in about a millisecond).
"""

from __future__ import annotations

import ctypes
import functools
import json
import re
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from smolchat.engine.images import PreparedImage
from smolchat.engine.prompt import TEMPLATE_IMAGE_TOKEN, Message, PromptError, Segment

RENDER_TIME_LIMIT_S = 2.0
RENDER_OUTPUT_LIMIT = 8_000_000  # characters, in the output or in any one value made on the way
_WIDTH_IN_FORMAT = re.compile(r"\d{7,}")  # a padding or precision of a million or more


class TemplateError(PromptError):
    """A chat template that cannot be used: it does not parse, fails, or exceeds the bounds."""


class _Exceeded(BaseException):
    """Raised inside a render that went past a bound; becomes a TemplateError. A BaseException,
    so that no `except Exception` on the way (Jinja has some) can swallow it."""


def _size(value: Any) -> int:
    if isinstance(value, jinja2.utils.Namespace):  # {% set ns.s = ns.s ~ ns.s %} grows inside one
        return max(map(_size, object.__getattribute__(value, "_Namespace__attrs").values()), default=0)
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset, range)) else 0


def _check_size(value: Any) -> Any:
    if _size(value) > RENDER_OUTPUT_LIMIT:
        raise _Exceeded(f"it built a value of more than {RENDER_OUTPUT_LIMIT:,} characters")
    return value


def _check_arguments(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > RENDER_OUTPUT_LIMIT:
            raise _Exceeded(f"it asked for a size of {value:,}")
    _check_format(args, kwargs)


def _check_format(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """Refuse format strings asking for a width of millions ('%999999999d', '{:>999999999}')."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, str) and ("%" in value or "{" in value) and _WIDTH_IN_FORMAT.search(value):
            raise _Exceeded("it asked for a padding of millions of characters")


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with the operations that can build huge values checked."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if _size(seq) and isinstance(n, int) and _size(seq) * max(n, 0) > RENDER_OUTPUT_LIMIT:
                    raise _Exceeded(f"it repeated a value {n:,} times")
        elif operator == "**":
            if (
                isinstance(right, (int, float))
                and abs(right) > 256
                and isinstance(left, (int, float))
                and abs(left) > 1
            ):
                raise _Exceeded(f"it raised a number to the power {right:,}")
        elif operator == "+":
            if _size(left) + _size(right) > RENDER_OUTPUT_LIMIT:
                raise _Exceeded(f"it built a value of more than {RENDER_OUTPUT_LIMIT:,} characters")
        elif operator == "%" and isinstance(left, str):
            _check_format([left], {})
        return _check_size(super().call_binop(context, operator, left, right))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_arguments(args, kwargs)
        method = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(method, "__self__", None)  # the string of 'x'.method(...), str.format too
        if isinstance(owner, str):
            _check_format([owner], {})
            if getattr(method, "__name__", "") == "join" and args:
                _check_join(args[0], owner)
        return _check_size(super().call(__context, __obj, *args, **kwargs))


def _check_join(items: Any, separator: Any) -> None:
    if _size(items) and _size(items) * _size(separator) > RENDER_OUTPUT_LIMIT:
        raise _Exceeded(f"it joined {_size(items):,} values with a long separator")


def _bounded_concat(join):
    """Jinja's ``~`` (one call for a whole chain a ~ b ~ c), refused before it builds too much."""

    def concat(parts: Any) -> str:
        parts = [str(part) for part in parts]
        if sum(map(len, parts)) > RENDER_OUTPUT_LIMIT:
            raise _Exceeded(f"it built a value of more than {RENDER_OUTPUT_LIMIT:,} characters")
        return join(parts)

    return concat


def _bounded_filter(function):
    @functools.wraps(function)  # keeps Jinja's pass_context/pass_environment marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(args, kwargs)
        if function.__name__ == "do_join":  # value|join(separator)
            values = [a for a in args if not isinstance(a, (jinja2.runtime.Context, jinja2.nodes.EvalContext))]
            if len(values) >= 2:
                _check_join(values[0], values[1])
        return _check_size(function(*args, **kwargs))

    return bounded


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Transformers' ``{% generation %}`` marks (for training masks) render their content as is."""

    tags = {"generation"}

    def parse(self, parser):
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False
) -> str:
    # as transformers renders JSON in templates: non-ASCII kept as it is
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise TemplateError(f"The model's chat template refused this conversation: {message}")


def _strftime_now(format: str) -> str:  # noqa: A002 (the name templates use)
    _check_format([format], {})
    return datetime.now().strftime(format)


class _Watchdog:
    """Stops a render in this thread once its time is up, even in loops that call nothing.

    A timer thread raises ``_Exceeded`` in the rendering thread (CPython delivers such an
    exception at the next bytecode boundary). Arming and disarming share a lock, so the
    exception can only land inside the render: if it fired but was not delivered yet when the
    render ends, it is withdrawn and the render fails here instead.
    """

    def __init__(self, seconds: float) -> None:
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._armed, self.fired = True, False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._armed:
                self.fired = True
                _set_async_exception(self._thread_id, _Exceeded)

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._armed = False
            if self.fired:
                _set_async_exception(self._thread_id, None)  # withdraw it if still pending
        if self.fired:
            raise _Exceeded(f"it ran for more than {RENDER_TIME_LIMIT_S:g} s")


def _set_async_exception(thread_id: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None
    )


class ChatTemplate:
    """A model's chat template, compiled once; ``render`` may run in any thread."""

    def __init__(self, template: str, *, bos_token: str = "", eos_token: str = "") -> None:
        environment = _BoundedSandbox(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols],  # as transformers renders them
        )
        environment.filters["tojson"] = _tojson
        for name, function in list(environment.filters.items()):
            environment.filters[name] = _bounded_filter(function)
        environment.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
        try:
            self._template = environment.from_string(template)
            names = self._template.root_render_func.__globals__  # the compiled template's module
            for name in ("str_join", "markup_join"):
                if name in names:
                    names[name] = _bounded_concat(names[name])
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"The model's chat template does not parse (line {e.lineno}: {e.message}).") from e
        except Exception as e:  # anything else the compiler can throw at hostile text
            raise TemplateError(f"The model's chat template cannot be read ({type(e).__name__}: {e}).") from e
        self.source = template
        self.bos_token, self.eos_token = bos_token, eos_token
        self.content_as_parts = self._takes_content_parts()

    def _takes_content_parts(self) -> bool:
        """SmolVLM's template reads content as a list of parts; plain chat templates want a string."""
        probe = "\u2063probe\u2063"
        try:
            rendered = self.render_text([{"role": "user", "content": [{"type": "text", "text": probe}]}], True)
        except TemplateError as e:
            if isinstance(e.__cause__, _Exceeded):
                raise
            return False
        return probe in rendered

    def render_text(self, messages: list[dict], add_generation_prompt: bool) -> str:
        """The template's text for ``messages`` (dicts as chat templates take them)."""
        try:
            watchdog = _Watchdog(RENDER_TIME_LIMIT_S)
            try:
                pieces, length = [], 0
                for piece in self._template.generate(
                    messages=messages,
                    add_generation_prompt=add_generation_prompt,
                    bos_token=self.bos_token,
                    eos_token=self.eos_token,
                ):
                    length += len(piece)
                    if length > RENDER_OUTPUT_LIMIT:
                        raise _Exceeded(f"it wrote more than {RENDER_OUTPUT_LIMIT:,} characters")
                    pieces.append(piece)
            finally:
                watchdog.stop()
            return "".join(pieces)
        except TemplateError:
            raise
        except _Exceeded as e:
            if not str(e):  # raised by the watchdog, which cannot give it a message
                e = _Exceeded(f"it ran for more than {RENDER_TIME_LIMIT_S:g} s")
            raise TemplateError(
                f"The model's chat template was stopped: {e}. The template in this model file "
                "is broken or hostile; use a model from a trusted source."
            ) from e
        except RecursionError as e:
            raise TemplateError("The model's chat template was stopped: it recursed without end.") from e
        except Exception as e:  # a template error of any kind: an unknown filter, a type error...
            raise TemplateError(
                f"The model's chat template failed on this conversation ({type(e).__name__}: {e})."
            ) from e

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> list[Segment]:
        """Render ``messages``, whose images must already be decoded (PreparedImage)."""
        if not self.content_as_parts:
            if any(m.images for m in messages):
                raise PromptError(
                    "This model's chat template has no place for images: it is a text-only "
                    "model. Remove the images or choose a vision model."
                )
            plain = [{"role": m.role, "content": m.text} for m in messages]
            return [self.render_text(plain, add_generation_prompt)]

        structured, ordered, from_text = _template_messages(messages, {"type": "image"})
        text = self.render_text(structured, add_generation_prompt)
        if not ordered:
            return [text]
        pieces = text.split(TEMPLATE_IMAGE_TOKEN)
        if len(pieces) - 1 == len(from_text):
            return _interleave(pieces, from_text, ordered)
        # The template draws images some other way: mark each image with a sentinel text part
        # and split there.
        sentinel = "\u2063img\u2063"
        structured, ordered, _ = _template_messages(messages, {"type": "text", "text": sentinel})
        pieces = self.render_text(structured, add_generation_prompt).split(sentinel)
        if len(pieces) - 1 != len(ordered):
            raise PromptError("This model's chat template drops images; it cannot be used for image chat.")
        return _interleave(pieces, [False] * len(ordered), ordered)


def _template_messages(
    messages: Sequence[Message], image_part: dict
) -> tuple[list[dict], list[PreparedImage], list[bool]]:
    """Messages as chat templates take them (content as a list of parts), with every image
    drawn as ``image_part``; also the images in order, and for each "<image>" the rendered
    text will hold: whether it comes from user text rather than from an image."""
    structured, ordered, from_text = [], [], []
    for m in messages:
        parts = []
        for part in m.content:
            if isinstance(part, str):
                parts.append({"type": "text", "text": part})
                from_text.extend([True] * part.count(TEMPLATE_IMAGE_TOKEN))
            else:
                parts.append(image_part)
                ordered.append(_decoded(part))
                from_text.append(False)
        structured.append({"role": m.role, "content": parts or [{"type": "text", "text": ""}]})
    return structured, ordered, from_text


def _interleave(pieces: list[str], from_text: list[bool], images: list[PreparedImage]) -> list[Segment]:
    """Rejoin text pieces split at every image token; those from user text stay text."""
    segments: list[Segment] = []
    text = pieces[0]
    image_iter = iter(images)
    for piece, is_text in zip(pieces[1:], from_text):
        if is_text:
            text += TEMPLATE_IMAGE_TOKEN + piece
            continue
        if text:
            segments.append(text)
        segments.append(next(image_iter))
        text = piece
    if text:
        segments.append(text)
    return segments


def _decoded(part: object) -> PreparedImage:
    if not isinstance(part, PreparedImage):
        raise TypeError("images must be decoded (PreparedImage) before rendering")
    return part
