"""Conversations on disk: they survive restarts and kills, images outlive their files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from smolchat.store import COMPLETE, INTERRUPTED, STREAMING, Store, StoreError
from smolchat.store.export import to_json, to_markdown


def test_a_conversation_survives_closing_and_reopening(tmp_path, images):
    store = Store(tmp_path)
    chat = store.create_conversation("Holiday photos", model="ggml-org/SmolVLM-256M-Instruct-GGUF:Q8_0")
    store.add_message(chat.id, "user", "What is this?", images=[images["photo"]])
    store.add_message(chat.id, "assistant", "A beach.", stats={"ttft_s": 1.2, "decode_tok_s": 90.0})
    store.close()

    again = Store(tmp_path)
    assert [c.title for c in again.conversations()] == ["Holiday photos"]
    question, answer = again.messages(chat.id)
    assert question.images[0].read_bytes() == images["photo"].read_bytes()
    assert answer.stats == {"ttft_s": 1.2, "decode_tok_s": 90.0} and answer.status == COMPLETE
    assert question.to_message().images == [question.images[0]]


def test_images_are_kept_by_content_after_the_original_is_deleted(tmp_path, images):
    picture = tmp_path / "Picture.PNG"
    picture.write_bytes(images["small"].read_bytes())
    store = Store(tmp_path / "data")
    chat = store.create_conversation()
    first = store.add_message(chat.id, "user", "one", images=[picture])
    second = store.add_message(chat.id, "user", "same picture", images=[picture])
    picture.unlink()
    assert first.images == second.images and first.images[0].suffix == ".png"
    assert first.images[0].read_bytes() == images["small"].read_bytes()


def test_pasted_data_is_kept_as_the_same_file_the_picture_would_be(tmp_path, images):
    store = Store(tmp_path / "data")
    data = images["small"].read_bytes()
    pasted = store.keep_image_data(data, ".PNG")
    assert pasted == store.keep_image(images["small"]) and pasted.read_bytes() == data
    chat = store.create_conversation()
    assert store.add_message(chat.id, "user", "pasted", images=[pasted]).images == (pasted,)
    assert list(store.images_dir.iterdir()) == [pasted]


def test_search_rename_delete_and_newest_first(tmp_path):
    store = Store(tmp_path)
    a = store.create_conversation("Cats 100%")
    b = store.create_conversation("Dogs")
    store.add_message(a.id, "user", "newer activity")
    assert [c.title for c in store.conversations()] == ["Cats 100%", "Dogs"]
    assert [c.title for c in store.conversations("100%")] == ["Cats 100%"]
    assert [c.title for c in store.conversations("DOG")] == ["Dogs"]
    store.rename(b.id, "Puppies")
    store.delete(a.id)
    assert [c.title for c in store.conversations()] == ["Puppies"]
    assert store.messages(a.id) == []


def test_regenerating_deletes_from_a_message_on(tmp_path):
    store = Store(tmp_path)
    chat = store.create_conversation()
    store.add_message(chat.id, "user", "Q1")
    answer = store.add_message(chat.id, "assistant", "A1")
    store.add_message(chat.id, "user", "Q2")
    store.delete_from(chat.id, answer.id)
    assert [m.text for m in store.messages(chat.id)] == ["Q1"]


def test_an_answer_cut_by_a_killed_process_is_kept_and_marked_interrupted(tmp_path):
    writer = f"""
import sys, time
sys.path.insert(0, {str(os.getcwd())!r})
from smolchat.store import Store, STREAMING
from pathlib import Path
store = Store(Path({str(tmp_path)!r}))
chat = store.create_conversation("Long answer")
store.add_message(chat.id, "user", "Tell me a story")
answer = store.add_message(chat.id, "assistant", "", status=STREAMING)
text = ""
for word in ["Once", " upon", " a", " time"]:
    text += word
    store.update_message(answer.id, text=text)
print("written", flush=True)
time.sleep(60)
"""
    child = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "written"
    child.send_signal(signal.SIGKILL)
    child.wait()

    store = Store(tmp_path)
    (chat,) = store.conversations()
    _, answer = store.messages(chat.id)
    assert answer.text == "Once upon a time" and answer.status == INTERRUPTED
    assert STREAMING not in {m.status for m in store.messages(chat.id)}


def test_a_history_from_a_newer_version_is_not_touched(tmp_path):
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "conversations.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="newer SmolChat"):
        Store(tmp_path)


def test_a_damaged_history_is_reported_not_overwritten(tmp_path):
    (tmp_path / "conversations.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot be read.*Move the file away"):
        Store(tmp_path)
    assert (tmp_path / "conversations.sqlite3").read_bytes().startswith(b"this is not a database")


def test_export_to_markdown_with_images_and_to_json(tmp_path, images):
    store = Store(tmp_path / "data")
    chat = store.create_conversation("Beach")
    store.add_message(chat.id, "user", "What is this?", images=[images["small"]])
    store.add_message(chat.id, "assistant", "A **beach**.", stats={"ttft_s": 1.5, "decode_tok_s": 80.0})
    messages = store.messages(chat.id)

    markdown = to_markdown(store.conversation(chat.id), messages, tmp_path / "out" / "beach.md")
    text = markdown.read_text()
    image_name = messages[0].images[0].name
    assert text.startswith("# Beach") and "A **beach**." in text and f"(beach-images/{image_name})" in text
    assert (tmp_path / "out" / "beach-images" / image_name).read_bytes() == images["small"].read_bytes()

    data = json.loads(to_json(store.conversation(chat.id), messages, tmp_path / "out" / "beach.json").read_text())
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"] and data["title"] == "Beach"
