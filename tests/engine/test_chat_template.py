"""Chat templates come inside model files: a hostile or broken one fails with a message, in
bounded time and memory, and a model whose template does not parse still loads."""

from __future__ import annotations

import threading
import time

import pytest

from smolchat.engine import EngineSettings, Message
from smolchat.engine.chat_template import RENDER_OUTPUT_LIMIT, ChatTemplate, TemplateError
from smolchat.engine.engine import Engine
from smolchat.engine.prompt import SMOLVLM_CHAT_TEMPLATE
from smolchat.engine.synthetic import TINY, write_mmproj, write_text_model
from tests.helpers import GREEDY, answer

# Each would hang the render, or build gigabytes, inside a plain Jinja sandbox.
HOSTILE = {
    "nested loops": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "nested loops writing": "{% for a in range(100000) %}{% for b in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
    "a huge repetition": "{{ 'x' * 10**10 }}",
    "a list repeated": "{{ ([1, 2] * 10**10)|length }}",
    "a string doubled in a loop": "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s ~ ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "a huge padding (filter)": "{{ 'x'|center(10**9) }}",
    "a huge padding (format)": "{{ '{:>999999999}'.format(1) }}",
    "a huge padding (%)": "{{ '%999999999d' % 1 }}",
    "a join with a huge separator": "{{ range(100000)|join('x' * 1000000) }}",
    "a replace that multiplies": "{{ ('x' * 8000)|replace('x', 'y' * 8000) }}",
    "a huge power": "{{ 7 ** 100000000 }}",
    "endless output": "{% for a in range(100000) %}{% for b in range(100000) %}{{ 'yyyyyyyyyy' }}{% endfor %}"
    "{% endfor %}",
    "endless recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_template_fails_with_a_message_in_bounded_time(name):
    started = time.perf_counter()
    with pytest.raises(TemplateError, match="chat template"):
        ChatTemplate(HOSTILE[name]).render([Message.user("Hi")])
    assert time.perf_counter() - started < 30  # the bound is 2 s; the test's own timeout catches a hang


def test_a_render_stopped_by_its_deadline_leaves_the_thread_usable():
    with pytest.raises(TemplateError, match="ran for more than"):
        ChatTemplate(HOSTILE["nested loops"]).render([Message.user("Hi")])
    time.sleep(0.1)
    template = ChatTemplate(SMOLVLM_CHAT_TEMPLATE)
    for _ in range(200):  # no stray interruption lands in later renders
        assert template.render([Message.user("Hi")])[0].startswith("<|im_start|>User: Hi")


def test_renders_in_several_threads_are_bounded_each_in_their_own():
    results = {}

    def render(name: str, source: str) -> None:
        try:
            results[name] = ChatTemplate(source).render([Message.user("Hi")])
        except TemplateError as e:
            results[name] = e

    threads = [
        threading.Thread(target=render, args=("hostile", HOSTILE["nested loops"])),
        threading.Thread(target=render, args=("good", SMOLVLM_CHAT_TEMPLATE)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert isinstance(results["hostile"], TemplateError)
    assert results["good"][0].startswith("<|im_start|>User: Hi")


def test_output_up_to_the_bound_is_fine():
    text = ChatTemplate("{{ 'x' * 100000 }}{% for m in messages %}{{ m['content'][0]['text'] }}{% endfor %}").render(
        [Message.user("Hi")]
    )
    assert text == ["x" * 100000 + "Hi"]
    assert RENDER_OUTPUT_LIMIT > 1_000_000


def test_a_template_that_refuses_says_why():
    with pytest.raises(TemplateError, match="only user and assistant"):
        ChatTemplate("{{ raise_exception('only user and assistant roles') }}").render([Message.user("Hi")])


def test_a_template_that_does_not_parse_says_where():
    with pytest.raises(TemplateError, match="does not parse \\(line 1"):
        ChatTemplate("{% for m in messages %}{{ m['content'] }")


def _pair_with_template(folder, template: str):
    text = write_text_model(folder / "Broken-F16.gguf", TINY.text, name="Broken", chat_template=template)
    mmproj = write_mmproj(folder / "mmproj-Broken-F16.gguf", TINY.vision, output_width=TINY.text.n_embd, name="Broken")
    return text, mmproj


@pytest.mark.parametrize(
    "template, reason",
    [
        ("{% for m in messages %}{{ m['content'] }", "does not parse"),
        (HOSTILE["nested loops"], "ran for more than"),
    ],
)
def test_a_model_whose_template_cannot_be_used_answers_with_smolvlms_and_says_so(tmp_path, images, template, reason):
    text, mmproj = _pair_with_template(tmp_path, template)
    with Engine(text, mmproj, EngineSettings(n_ctx=1024)) as engine:
        note = engine.info().template_note
        assert note and reason in note and "SmolVLM's chat template instead" in note and text.name in note
        result, _ = answer(engine, [Message.user("What is this?", images=[images["small"]])], GREEDY)
        assert result.stats.generated_tokens == GREEDY.max_tokens and result.stats.image_tokens > 0


def test_a_model_with_a_good_template_has_no_note(tiny_engine):
    assert tiny_engine.info().template_note is None


# Pieces of templates, put together at random: loops, growth, filters and calls with values from
# harmless to huge. Every template made of them renders, or fails with a TemplateError, quickly.
_NUMBERS = ["0", "1", "3", "-1", "1000", "100000", "10**9", "2**31-1"]
_VALUES = ["'x'", "'ab' * 1000", "messages", "[1, 2, 3]", "range(100000)", "ns.s", "{'a': 1}", "none", "7"]
_PIECES = [  # <V> and <N> stand for a value and a number
    "{{ <V> }}",
    "{{ <V> * <N> }}",
    "{{ <V> ~ <V> ~ <V> }}",
    "{{ <V>|join(<V>) }}",
    "{{ <V>|center(<N>) }}",
    "{{ <V>|indent(<N>) }}",
    "{{ <V>|wordwrap(<N>) }}",
    "{{ <V>|replace('x', <V>) }}",
    "{{ <V>|list|length }}",
    "{{ '%<N>d' % 1 }}",
    "{{ '{:><N>}'.format(1) }}",
    "{{ <V> ** <N> }}",
    "{% set ns.s = ns.s ~ ns.s %}",
    "{% for i in range(<N>) %}{{ i }}{% endfor %}",
    "{% for i in range(<N>) %}{% for j in range(<N>) %}{% endfor %}{% endfor %}",
    "{% for m in messages %}{{ m['content'][0]['text'] * <N> }}{% endfor %}",
    "{{ raise_exception(<V>) }}",
    "{{ <V>.upper() }}",
    "{{ <V>|tojson }}",
    "{{ <V>[<N>] }}",
]


@pytest.mark.timeout(120)
def test_random_templates_render_or_fail_with_a_message():
    import random

    rng = random.Random(13)
    started = time.perf_counter()
    for _ in range(150):
        pieces = []
        for _ in range(rng.randint(1, 4)):
            piece = rng.choice(_PIECES)
            while "<V>" in piece or "<N>" in piece:
                piece = piece.replace("<V>", rng.choice(_VALUES), 1).replace("<N>", rng.choice(_NUMBERS), 1)
            pieces.append(piece)
        body = "".join(pieces)
        source = "{% set ns = namespace(s='xy') %}" + body
        try:
            ChatTemplate(source).render([Message.user("Hi"), Message.assistant("Hello")])
        except TemplateError:
            pass  # anything else is a failure of the bounds
    assert time.perf_counter() - started < 100
