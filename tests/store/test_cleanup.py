"""Deleted conversations and messages take their images with them, unless something still uses them."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time

import pytest

from smolchat.store import Store


def kept_files(store: Store) -> set[str]:
    return {p.name for p in store.images_dir.iterdir()} if store.images_dir.exists() else set()


def kept_name(image) -> str:
    return hashlib.sha256(image.read_bytes()).hexdigest() + image.suffix


def test_deleting_a_conversation_removes_its_images_but_not_those_another_uses(tmp_path, images):
    store = Store(tmp_path)
    holiday = store.create_conversation("Holiday")
    store.add_message(holiday.id, "user", "Two pictures", images=[images["photo"], images["small"]])
    store.add_message(holiday.id, "assistant", "A beach and a dog.")
    dogs = store.create_conversation("Dogs")
    store.add_message(dogs.id, "user", "The same dog", images=[images["small"]])

    store.delete(holiday.id)
    assert kept_files(store) == {kept_name(images["small"])}
    (question,) = store.messages(dogs.id)
    assert question.images[0].read_bytes() == images["small"].read_bytes()

    store.delete(dogs.id)
    assert kept_files(store) == set()


def test_regenerating_and_deleting_a_question_remove_images_nothing_refers_to(tmp_path, images):
    store = Store(tmp_path)
    chat = store.create_conversation()
    store.add_message(chat.id, "user", "First", images=[images["photo"]])
    store.add_message(chat.id, "assistant", "A1")
    second = store.add_message(chat.id, "user", "Second", images=[images["second"], images["photo"]])
    answer = store.add_message(chat.id, "assistant", "A2")

    assert [m.text for m in store.delete_from(chat.id, answer.id)] == ["A2"]
    assert kept_files(store) == {kept_name(images["photo"]), kept_name(images["second"])}
    store.delete_from(chat.id, second.id)
    assert kept_files(store) == {kept_name(images["photo"])}  # the first question still shows it


def test_an_edited_question_hands_its_images_to_the_caller(tmp_path, images):
    store = Store(tmp_path / "data")
    earlier = store.create_conversation("Earlier")
    store.add_message(earlier.id, "user", "A small one", images=[images["small"]])
    chat = store.create_conversation()
    question = store.add_message(chat.id, "user", "What are these?", images=[images["photo"], images["small"]])
    store.add_message(chat.id, "assistant", "Noise.")

    drafts = tmp_path / "cache" / "drafts"
    edited, answer = store.delete_from(chat.id, question.id, keep_images_in=drafts)
    assert edited.text == "What are these?" and answer.text == "Noise." and store.messages(chat.id) == []
    assert all(p.parent == drafts for p in edited.images)
    assert [p.read_bytes() for p in edited.images] == [images["photo"].read_bytes(), images["small"].read_bytes()]
    assert kept_files(store) == {kept_name(images["small"])}  # still shown in the earlier conversation

    store.delete(earlier.id)
    store.collect_garbage()
    assert kept_files(store) == set() and all(p.exists() for p in edited.images)

    resent = store.add_message(chat.id, "user", "And now?", images=list(edited.images))
    assert [p.read_bytes() for p in resent.images] == [images["photo"].read_bytes(), images["small"].read_bytes()]
    assert all(p.parent == store.images_dir for p in resent.images)


def _sweep(store: Store, other_chat: int) -> None:
    store.collect_garbage()


def _delete_other(store: Store, other_chat: int) -> None:
    store.delete(other_chat)


@pytest.mark.parametrize("cleanup", [_sweep, _delete_other], ids=["sweep", "other-conversation-deleted"])
def test_a_cleanup_between_copying_an_image_and_adding_its_message_keeps_the_image(
    tmp_path, images, monkeypatch, cleanup
):
    """The worst moment: the picture is in the images folder, its message not yet written."""
    store = Store(tmp_path)
    other = store.create_conversation("Other")
    store.add_message(other.id, "user", "Shared", images=[images["small"]])
    chat = store.create_conversation("Now")
    keep = store.keep_image
    there_after_cleanup = []

    def keep_then_clean_up(path):
        kept = keep(path)
        if not there_after_cleanup:  # once: then the store finishes the message on its own
            cleaner = threading.Thread(target=cleanup, args=(store, other.id))
            cleaner.start()
            cleaner.join()
            there_after_cleanup.append(kept.exists())
        return kept

    monkeypatch.setattr(store, "keep_image", keep_then_clean_up)
    sent = [images["photo"]] if cleanup is _sweep else [images["small"]]
    message = store.add_message(chat.id, "user", "Look", images=sent)
    monkeypatch.undo()

    assert there_after_cleanup == [False]  # the cleanup did take it
    store.collect_garbage()
    (stored,) = store.messages(chat.id)
    assert stored.images == message.images and stored.images[0].read_bytes() == sent[0].read_bytes()


def test_sweeping_removes_what_a_crash_left_and_nothing_else(tmp_path, images):
    store = Store(tmp_path)
    chat = store.create_conversation()
    store.add_message(chat.id, "user", "Kept", images=[images["photo"]])
    store.keep_image(images["small"])  # copied, then the process died before the message was written
    crashed_copy = store.images_dir / (kept_name(images["second"]) + ".x1y2.partial")
    crashed_copy.write_bytes(b"half a picture")
    old = time.time() - 2 * 3600
    os.utime(crashed_copy, (old, old))
    copy_in_progress = store.images_dir / (kept_name(images["second"]) + ".a3b4.partial")
    copy_in_progress.write_bytes(b"being written")
    (store.images_dir / "notes.txt").write_text("not ours to remove")
    store.close()

    store = Store(tmp_path)
    assert store.collect_garbage() == 2
    assert kept_files(store) == {kept_name(images["photo"]), copy_in_progress.name, "notes.txt"}
    (question,) = store.messages(chat.id)
    assert question.images[0].read_bytes() == images["photo"].read_bytes()


def test_adding_deleting_and_sweeping_at_once_lose_no_image_and_leave_none_behind(tmp_path, images):
    """Three threads, as the window's writer, its UI and a sweep at start would run them."""
    store = Store(tmp_path)
    pictures = [images["photo"], images["second"], images["small"]]
    chats = [store.create_conversation(f"Chat {i}").id for i in range(4)]
    errors = []

    def run(work):
        try:
            work()
        except BaseException as e:  # reported below: a thread's exception would otherwise vanish
            errors.append(e)

    def add():
        rng = random.Random(1)
        for _ in range(60):
            store.add_message(rng.choice(chats), "user", "pics", images=rng.sample(pictures, rng.randint(1, 2)))

    def delete():
        rng = random.Random(2)
        for _ in range(60):
            chat = rng.choice(chats)
            messages = store.messages(chat)
            if messages and rng.random() < 0.5:
                store.delete_from(chat, rng.choice(messages).id, keep_images_in=tmp_path / "drafts")
            elif messages:
                store.delete_from(chat, rng.choice(messages).id)

    def sweep():
        for _ in range(30):
            store.collect_garbage()

    threads = [threading.Thread(target=run, args=(work,)) for work in (add, delete, sweep)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads) and errors == []

    referenced = {p for chat in chats for m in store.messages(chat) for p in m.images}
    assert all(p.is_file() for p in referenced)
    store.collect_garbage()
    assert kept_files(store) == {p.name for p in referenced}
