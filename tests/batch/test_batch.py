"""``smolchat batch`` as people run it: over a folder, stopped and killed, restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from smolchat.batch import ResultsFile, batch_files, content_hash
from tests.helpers import smolchat_here as smolchat

SCHEMA = {
    "type": "object",
    "properties": {"caption": {"type": "string"}, "people": {"type": "integer"}},
    "required": ["caption", "people"],
}


def pictures(folder: Path, count: int, seed: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"photo-{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (48 + 4 * i, 64, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def model_args(tiny_pair) -> list[str]:
    text, mmproj = tiny_pair
    return ["--model", str(text), "--mmproj", str(mmproj)]


def records(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "a record was left half written"
    return [json.loads(line) for line in text.splitlines()]


def start_batch(tiny_pair, folder: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "smolchat", "batch", str(folder), "--prompt", "Describe it.", "-o", str(out)]
    return subprocess.Popen(
        [*command, *model_args(tiny_pair), "--max-tokens", "120", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_records(out: Path, at_least: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (out.exists() and out.read_text().count("\n") >= at_least):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the job wrote no records"
        time.sleep(0.005)


def test_a_killed_batch_continues_where_it_stopped_without_a_picture_twice(tiny_pair, tmp_path):
    folder, out = tmp_path / "photos", tmp_path / "results.jsonl"
    pictures(folder, 12)
    job = start_batch(tiny_pair, folder, out)
    wait_for_records(out, 2, job)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    killed_at = len(records(out))
    assert 2 <= killed_at < 12, "the job finished before it could be killed: the test proves nothing"

    again = smolchat("batch", str(folder), "--prompt", "Describe it.", "-o", str(out), *model_args(tiny_pair))
    assert again.returncode == 0, again.stderr
    assert f"({killed_at} answered before)" in again.stderr
    lines = records(out)
    assert len(lines) == 12
    assert sorted(r["file"] for r in lines) == sorted(str(p) for p in folder.iterdir())
    assert all(r["sha256"] == content_hash(Path(r["file"])) and isinstance(r["result"], str) for r in lines)
    assert all(r["stats"]["generated_tokens"] >= 1 and r["stats"]["seconds"] > 0 for r in lines)

    done = smolchat("batch", str(folder), "--prompt", "Describe it.", "-o", str(out), *model_args(tiny_pair))
    assert done.returncode == 0 and "0 answered" in done.stderr and len(records(out)) == 12


def test_ctrl_c_stops_cleanly_and_a_changed_picture_is_answered_again(tiny_pair, tmp_path):
    folder, out = tmp_path / "photos", tmp_path / "results.jsonl"
    paths = pictures(folder, 12, seed=4)
    job = start_batch(tiny_pair, folder, out)
    wait_for_records(out, 1, job)
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 130, stderr
    assert "Stopped:" in stderr and "run the same command again" in stderr
    stopped_at = len(records(out))
    assert 1 <= stopped_at < 12

    Image.new("RGB", (40, 40), "red").save(paths[0])  # answered before the stop, changed since
    again = smolchat("batch", str(folder), "--prompt", "Describe it.", "-o", str(out), *model_args(tiny_pair))
    assert again.returncode == 0, again.stderr
    lines = records(out)
    assert len(lines) == 13 and len({r["file"] for r in lines}) == 12
    first = [r for r in lines if r["file"] == str(paths[0])]
    assert [r["sha256"] for r in first][-1] == content_hash(paths[0]) != first[0]["sha256"]


def test_a_schema_batch_gives_valid_objects_in_jsonl_and_csv(tiny_pair, tmp_path):
    import csv

    folder = tmp_path / "photos"
    pictures(folder, 3, seed=5)
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    for name in ("results.jsonl", "results.csv"):
        out = tmp_path / name
        run = smolchat(
            "batch", str(folder), "-p", "Caption it and count the people.", "--schema", str(tmp_path / "schema.json"),
            "-o", str(out), "--temperature", "1", "--max-tokens", "60", *model_args(tiny_pair),
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        if name.endswith(".jsonl"):
            lines = records(out)
            assert len(lines) == 3
            for line in lines:
                jsonschema.validate(line["result"], SCHEMA)
        else:
            rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
            assert len(rows) == 3 and list(rows[0])[:4] == ["file", "sha256", "caption", "people"]
            assert all(row["people"].lstrip("-").isdigit() and row["error"] == "" for row in rows)


def test_broken_pictures_are_recorded_as_errors_and_the_job_finishes(tiny_pair, tmp_path):
    folder = tmp_path / "mixed"
    good = pictures(folder, 2, seed=6)
    data = good[0].read_bytes()
    (folder / "cut-off.png").write_bytes(data[: len(data) // 2])
    (folder / "text.jpg").write_text("not a picture")
    (folder / "empty.webp").write_bytes(b"")
    (folder / "notes.txt").write_text("left out: not a picture's name")
    out = tmp_path / "results.jsonl"
    run = smolchat("batch", str(folder), "-p", "What is it?", "-o", str(out), *model_args(tiny_pair))
    assert run.returncode == 0, run.stderr
    assert "2 answered, 3 failed" in run.stderr
    by_name = {Path(r["file"]).name: r for r in records(out)}
    assert set(by_name) == {"photo-00.png", "photo-01.png", "cut-off.png", "text.jpg", "empty.webp"}
    for name in ("cut-off.png", "text.jpg", "empty.webp"):
        assert name in by_name[name]["error"] and "result" not in by_name[name]


def test_batch_explains_what_it_cannot_start_with(tiny_pair, tmp_path):
    (tmp_path / "empty").mkdir()
    nothing = smolchat("batch", str(tmp_path / "empty"), "-p", "Hi", *model_args(tiny_pair))
    assert nothing.returncode == 1 and "No pictures in" in nothing.stderr and "--recursive" in nothing.stderr
    missing = smolchat("batch", str(tmp_path / "nowhere"), "-p", "Hi", *model_args(tiny_pair))
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
    pictures(tmp_path / "one", 1)
    text_only = smolchat("batch", str(tmp_path / "one"), "-p", "Hi", "--model", str(tiny_pair[0]))
    assert text_only.returncode == 1 and "--mmproj" in text_only.stderr


def test_folders_are_read_in_order_without_hidden_files_and_subfolders_only_when_asked(tmp_path):
    pictures(tmp_path / "a", 2)
    pictures(tmp_path / "a" / "sub", 1)
    pictures(tmp_path / "a" / ".hidden", 1)
    (tmp_path / "a" / ".thumb.png").write_bytes(b"")
    (tmp_path / "a" / "readme.md").write_text("")
    names = [p.relative_to(tmp_path).as_posix() for p in batch_files([tmp_path / "a"])]
    assert names == ["a/photo-00.png", "a/photo-01.png"]
    deep = [p.relative_to(tmp_path).as_posix() for p in batch_files([tmp_path / "a"], recursive=True)]
    assert deep == ["a/photo-00.png", "a/photo-01.png", "a/sub/photo-00.png"]
    again = batch_files([tmp_path / "a", tmp_path / "a" / "photo-00.png"])
    assert len(again) == 2  # a file named twice is answered once


def test_answers_with_any_line_breaks_stay_one_row_each_in_csv(tmp_path):
    """Model answers are text of any kind: a lone carriage return once split a row in two."""
    import csv

    out = tmp_path / "results.csv"
    answers = ["a\rb", "c\nd", "e\r\nf", "g\u2028h\x85i", 'say "hi", then go']
    results = ResultsFile(out)
    results.open()
    for n, answer in enumerate(answers):
        results.write({"file": f"{n}.png", "sha256": str(n), "result": answer, "stats": {}})
    results.close()
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert [row["result"] for row in rows] == answers
    again = ResultsFile(out)
    assert again.open() == {f"{n}.png": str(n) for n in range(len(answers))}
    again.close()


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_record_cut_off_by_a_crash_is_dropped_and_the_file_answered_again(tmp_path, kind):
    out = tmp_path / f"results.{kind}"
    results = ResultsFile(out)
    assert results.open() == {}
    results.write({"file": "a.png", "sha256": "aa", "result": "two\nlines", "stats": {"seconds": 1}})
    results.close()
    whole = out.read_bytes()
    with open(out, "ab") as f:
        f.write(b'{"file": "b.png", "sha' if kind == "jsonl" else b"b.png,bb,half")
    os.sync()
    again = ResultsFile(out)
    assert again.open() == {"a.png": "aa"}
    again.close()
    assert out.read_bytes() == whole
