"""Rendering conversations with a model's chat template into text and image segments."""

from __future__ import annotations

from PIL import Image

from smolchat.engine import Message
from smolchat.engine.chat_template import ChatTemplate
from smolchat.engine.images import prepare_image
from smolchat.engine.prompt import SMOLVLM_CHAT_TEMPLATE


def _image(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(path)
    return prepare_image(path)


def test_smolvlm_template_puts_the_image_where_the_model_expects_it(tmp_path):
    image = _image(tmp_path)
    segments = ChatTemplate(SMOLVLM_CHAT_TEMPLATE).render([Message.user("What is <image>?", images=[image])])
    # "User:" without a space before an image, as SmolVLM was trained; the user's literal
    # "<image>" stays text
    assert segments == ["<|im_start|>User:", image, "What is <image>?<end_of_utterance>\nAssistant:"]


def test_a_template_that_draws_images_its_own_way(tmp_path):
    image = _image(tmp_path)
    template = ChatTemplate(
        "{% for m in messages %}{{ m['role'] }}: {% for p in m['content'] %}"
        "{% if p['type'] == 'text' %}{{ p['text'] }}{% else %}[picture]{% endif %}"
        "{% endfor %}\n{% endfor %}"
    )
    segments = template.render([Message.user("Describe it.", images=[image])], add_generation_prompt=False)
    assert segments == ["user: ", image, "Describe it."]  # (templates trim newlines after tags)


def test_a_plain_text_template_takes_string_content():
    template = ChatTemplate("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}")
    assert not template.content_as_parts
    assert template.render([Message.system("Be brief."), Message.user("Hi")]) == ["<system>Be brief.<user>Hi"]
