"""Exported Markdown, read back by Qt's own Markdown reader: every picture found, the structure intact."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QTextDocument

from smolchat.store import STOPPED, Conversation, Store, StoredMessage
from smolchat.store.export import suggested_file_name, to_markdown

HOSTILE_TITLE = 'A/B: "x" <y>? ..'


def read_back(markdown: Path) -> tuple[QTextDocument, list[Path]]:
    """The document as Qt reads the file, and the files its pictures come from (Qt loaded each one)."""
    doc = QTextDocument()
    doc.setBaseUrl(QUrl.fromLocalFile(f"{markdown.parent}/"))
    doc.setMarkdown(markdown.read_text(encoding="utf-8"))
    pictures = []
    block = doc.begin()
    while block.isValid():
        for position in block:
            if (style := position.fragment().charFormat()).isImageFormat():
                name = style.toImageFormat().name()
                assert doc.resource(QTextDocument.ResourceType.ImageResource, QUrl(name)) is not None, name
                pictures.append(Path(doc.baseUrl().resolved(QUrl(name)).toLocalFile()))
        block = block.next()
    return doc, pictures


def headings(doc: QTextDocument) -> list[tuple[int, str]]:
    found, block = [], doc.begin()
    while block.isValid():
        if block.blockFormat().headingLevel():
            found.append((block.blockFormat().headingLevel(), block.text()))
        block = block.next()
    return found


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def conversation(title: str = "Chat") -> Conversation:
    return Conversation(1, title, None, 0.0, 0.0)


def question(text: str, *images: Path) -> StoredMessage:
    return StoredMessage(0, 1, "user", text, tuple(images))


def answer(text: str, status: str = "complete") -> StoredMessage:
    return StoredMessage(0, 1, "assistant", text, status=status)


def test_pictures_are_found_when_the_file_name_has_spaces_and_punctuation(qapp, tmp_path, images):
    store = Store(tmp_path / "data")
    chat = store.create_conversation(HOSTILE_TITLE)
    store.add_message(chat.id, "user", "Two of them", images=[images["photo"], images["small"]])
    store.add_message(chat.id, "assistant", "Noise and more noise.")
    store.add_message(chat.id, "user", "And this?", images=[images["second"]])

    markdown = to_markdown(
        store.conversation(chat.id), store.messages(chat.id), tmp_path / "out" / "My chat: (draft) #1.md"
    )
    _, pictures = read_back(markdown)
    assert [p.read_bytes() for p in pictures] == [images[n].read_bytes() for n in ("photo", "small", "second")]
    assert all(p.parent.parent == markdown.parent and " " not in p.parent.name for p in pictures)


@pytest.mark.parametrize(
    "title",
    [
        "Line one\n# two\n===",
        "#hashtag #",
        "1. Intro",
        "<b>bold</b> & *stars* `x`",
        "- [link](http://example.com)",
        HOSTILE_TITLE,
        " \n ",
    ],
)
def test_the_title_is_one_heading_shown_as_it_is(qapp, tmp_path, title):
    markdown = to_markdown(conversation(title), [question("Hi"), answer("Hello.")], tmp_path / "chat.md")
    doc, _ = read_back(markdown)
    assert headings(doc) == [(1, " ".join(title.split()) or "Untitled")]


def test_the_users_words_are_exported_as_typed(qapp, tmp_path):
    typed = [
        "*not bold* <b>not html</b> [not](a link) &amp; `not code`",
        "1. not a list",
        "- nor this",
        "# nor this",
        "===",
        "a | b",
        "C:\\path\\",
    ]
    markdown = to_markdown(conversation(), [question("\n".join(typed)), answer("**bold**")], tmp_path / "chat.md")
    doc, _ = read_back(markdown)
    text = doc.toPlainText()
    assert all(line in text.splitlines() for line in typed), text
    assert headings(doc) == [(1, "Chat")] and "bold" in text.splitlines()


def test_an_answers_figures_are_exported_as_the_window_shows_them(qapp, tmp_path):
    figures = dict(ttft_s=0.412, e2e_s=1.93, decode_tok_s=38.24, image_tiles_encoded=5)
    messages = [
        question("Hi"),
        StoredMessage(0, 1, "assistant", "Hello.", stats=figures),
        StoredMessage(0, 1, "assistant", "", status=STOPPED, stats=dict(ttft_s=None, e2e_s=0.2)),
    ]
    doc, _ = read_back(to_markdown(conversation(), messages, tmp_path / "chat.md"))
    assert "first token 0.41 s · 38.2 tok/s · 1.9 s in all · 5 tiles read" in doc.toPlainText()
    assert doc.toPlainText().count("first token") == 1  # nothing for an answer stopped before it began


def test_two_pictures_with_the_same_name_are_both_exported(qapp, tmp_path):
    one, other = tmp_path / "a" / "photo.png", tmp_path / "b" / "photo.png"
    for picture, content in ((one, b"first picture"), (other, b"second picture")):
        picture.parent.mkdir()
        picture.write_bytes(content)
    messages = [question("Same name", one, other), answer("Two."), question("The first again", one)]
    markdown = to_markdown(conversation(), messages, tmp_path / "out" / "chat.md")
    _, pictures = read_back(markdown)
    assert [p.read_bytes() for p in pictures] == [b"first picture", b"second picture", b"first picture"]
    assert len(files_under(tmp_path / "out")) == 3  # the file and two pictures


def test_a_missing_picture_is_named_and_the_rest_exported(qapp, tmp_path, images):
    messages = [question("Two pictures", tmp_path / "gone.png", images["small"]), answer("One.")]
    markdown = to_markdown(conversation(), messages, tmp_path / "chat.md")
    _, pictures = read_back(markdown)
    assert [p.read_bytes() for p in pictures] == [images["small"].read_bytes()]
    assert "picture missing: gone.png" in markdown.read_text()


@pytest.mark.parametrize(
    "cut_answer",
    [
        "Run this:\n\n```python\nprint('hello'",
        "1. Run:\n   ~~~~\n   ls",
        "A note:\n\n<!-- and then",
        "<pre>\nleft open",
    ],
)
def test_an_answer_stopped_inside_a_block_leaves_the_rest_intact(qapp, tmp_path, images, cut_answer):
    messages = [
        question("Code?", images["small"]),
        answer(cut_answer, STOPPED),
        question("And this?", images["second"]),
        answer("Fine."),
    ]
    markdown = to_markdown(conversation(), messages, tmp_path / "chat.md")
    doc, pictures = read_back(markdown)
    assert [p.read_bytes() for p in pictures] == [images["small"].read_bytes(), images["second"].read_bytes()]
    assert doc.toPlainText().splitlines().count("You") == 2


def test_a_hostile_title_or_file_name_writes_nothing_outside_the_chosen_folder(qapp, tmp_path, images):
    """Seeded: titles, words and file names made of what breaks paths and Markdown."""
    rng = random.Random(14)
    alphabet = list(' ./\\:*?"<>|#[]()!`~_-=+&%\n\t') + ["..", "é", "猫", "\u202e", "```", "<!--", "1. ", "\r\n"]
    out = tmp_path / "out"
    outside = files_under(tmp_path)
    for i in range(40):
        title = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        stem = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))).replace("/", "").replace("\\", "")
        name = stem.replace("\n", "").replace("\r", "").replace("\t", "").replace("\0", "") or "x"
        target = out / str(i) / f"{name}.md"
        for path in (target, out / str(i) / suggested_file_name(conversation(title))):
            messages = [question(title, images["small"]), answer(title, STOPPED), question(title, images["second"])]
            markdown = to_markdown(conversation(title), messages, path)
            doc, pictures = read_back(markdown)
            assert [p.read_bytes() for p in pictures] == [images["small"].read_bytes(), images["second"].read_bytes()]
            assert all((out / str(i)) in p.parents for p in pictures)
            assert headings(doc)[0] == (1, " ".join(title.split()) or "Untitled")  # the answer may add its own
            assert doc.toPlainText().splitlines().count("You") == 2
    assert files_under(tmp_path) - files_under(out) == outside
