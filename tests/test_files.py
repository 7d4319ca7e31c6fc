"""A file SmolChat writes is never seen half written, and a failed write leaves the old one."""

from __future__ import annotations

import json
import threading

import pytest

from smolchat.files import replacing, write_atomically, write_json


def test_a_file_is_written_into_a_folder_made_for_it(tmp_path):
    target = tmp_path / "new" / "folder" / "settings.json"
    write_json(target, {"model": "repo:Q8_0"})
    assert json.loads(target.read_text()) == {"model": "repo:Q8_0"}
    assert [p.name for p in target.parent.iterdir()] == ["settings.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "settings.json"
    write_atomically(target, "old")
    with pytest.raises(RuntimeError), replacing(target) as out:
        out.write(b"half of the new")
        raise RuntimeError("the disk is full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_a_value_json_cannot_hold_leaves_the_old_file(tmp_path):
    target = tmp_path / "speeds.json"
    write_json(target, {"turns": 1})
    with pytest.raises(TypeError):
        write_json(target, {"turns": object()})
    assert json.loads(target.read_text()) == {"turns": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["speeds.json"]


def test_a_name_that_cannot_be_replaced_leaves_no_temporary_file(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        write_atomically(tmp_path / "taken", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_writers_at_once_leave_one_whole_file(tmp_path):
    target = tmp_path / "imported-models.json"
    contents = [[{"name": f"model {i}", "text": "t" * 10_000}] for i in range(8)]
    writers = [threading.Thread(target=write_json, args=(target, c)) for c in contents]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert json.loads(target.read_text()) in contents
    assert [p.name for p in tmp_path.iterdir()] == ["imported-models.json"]
