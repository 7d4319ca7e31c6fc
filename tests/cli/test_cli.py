"""The smolchat command, run as users run it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest


def smolchat(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smolchat", *args], capture_output=True, text=True, timeout=timeout)


def test_help_shows_what_there_is():
    out = smolchat("--help")
    assert out.returncode == 0
    assert "ask" in out.stdout and "bench" in out.stdout


def test_info_names_the_backend_and_every_folder(tmp_path):
    import os

    from smolchat import paths

    out = smolchat("info")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("SmolChat ") and lines[1].startswith("llama.cpp (llama-cpp-python ")
    assert "CPU" in lines[1]
    for label in paths.LOCATION_LABELS.values():
        assert any(line.strip().startswith(label) for line in lines[2:]), label
    report = json.loads(smolchat("info", "--json").stdout)
    home = os.environ["SMOLCHAT_HOME"]
    assert report["folders"]["data"] == os.path.join(home, "data")
    assert report["folders"]["models"] == os.environ["HF_HUB_CACHE"]
    assert report["packaged"] is False and report["llama_cpp"]["devices"]


def test_ask_streams_the_answer_and_ends_with_timings(tiny_pair, images):
    text, mmproj = tiny_pair
    out = smolchat(
        "ask",
        "--model",
        str(text),
        "--mmproj",
        str(mmproj),
        "--image",
        str(images["photo"]),
        "--detail",
        "full",
        "--max-tokens",
        "8",
        "--seed",
        "1",
        "What is in this picture?",
    )
    assert out.returncode == 0, out.stderr
    last = out.stdout.rstrip("\n").splitlines()[-1]
    assert last.startswith("[first token ") and "tok/s" in last and "52 image" in last
    assert "13 tiles encoded in" in last and " thread" in last  # ... by onnxruntime INT8, 2 threads
    assert out.stderr == ""


@pytest.mark.parametrize("detail, tiles", [(None, 5), ("low", 2), ("balanced", 5), ("full", 13)])
def test_ask_reads_a_photo_at_the_detail_asked(tiny_pair, images, detail, tiles):
    text, mmproj = tiny_pair
    chosen = ["--detail", detail] if detail else []
    out = smolchat(
        "ask",
        "--model",
        str(text),
        "--mmproj",
        str(mmproj),
        "--image",
        str(images["photo"]),
        *chosen,
        "--max-tokens",
        "2",
        "--json",
        "What is in this picture?",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["stats"]["image_tiles_encoded"] == tiles


def test_ask_json(tiny_pair, images):
    text, mmproj = tiny_pair
    out = smolchat(
        "ask",
        "--json",
        "--model",
        str(text),
        "--mmproj",
        str(mmproj),
        "--image",
        str(images["photo"]),
        "--image",
        str(images["second"]),
        "--detail",
        "full",
        "--max-tokens",
        "5",
        "--temperature",
        "0",
        "Compare them.",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data["answer"], str)
    stats = data["stats"]
    assert stats["image_tiles_encoded"] == 26 and stats["image_tokens"] == 104
    for key in ("ttft_s", "tpot_s", "e2e_s", "decode_tok_s", "prompt_tokens", "reused_tokens", "finish_reason"):
        assert key in stats
    assert data["vision"].split()[0] in ("onnxruntime", "openvino", "llama.cpp")


def test_ask_with_a_real_text_model(smollm2_path):
    # Its words differ between CPUs; that it answers in words and ends by itself does not.
    out = smolchat(
        "ask",
        "--model",
        str(smollm2_path),
        "--temperature",
        "0",
        "--max-tokens",
        "200",
        "What is the capital of France?",
    )
    assert out.returncode == 0, out.stderr
    *answer, stats = out.stdout.rstrip("\n").splitlines()
    assert len(re.findall(r"[^\W\d_]{2,}", " ".join(answer))) >= 2
    assert stats.startswith("[first token ") and stats.endswith(" · stop]")


@pytest.mark.parametrize("swap", [True, False])
def test_ask_explains_bad_files(tiny_pair, tmp_path, swap):
    text, mmproj = tiny_pair
    if swap:
        args = ["--model", str(mmproj), "--mmproj", str(text)]
        expected = "is a vision projector (mmproj), not a text model"
    else:
        broken = tmp_path / "broken.gguf"
        broken.write_bytes(text.read_bytes()[:5000])
        args = ["--model", str(broken), "--mmproj", str(mmproj)]
        expected = "is incomplete"
    out = smolchat("ask", *args, "Hello?")
    assert out.returncode == 1
    assert expected in out.stderr and "Traceback" not in out.stderr


def test_ask_refuses_a_file_that_is_not_an_image(tiny_pair, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    text, mmproj = tiny_pair
    out = smolchat("ask", "--model", str(text), "--mmproj", str(mmproj), "--image", str(notes), "What?")
    assert out.returncode == 1
    assert "notes.txt: is not an image" in out.stderr and "Traceback" not in out.stderr


def test_bench_json_with_baseline(tiny_pair, images):
    text, mmproj = tiny_pair
    out = smolchat(
        "bench",
        "--json",
        "--baseline",
        "--model",
        str(text),
        "--mmproj",
        str(mmproj),
        "--image",
        str(images["photo"]),
        "--detail",
        "full",
        "--runs",
        "2",
        "--turns",
        "2",
        "--max-tokens",
        "8",
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {"turns", "peak_rss_mb", "model", "mmproj", "settings", "baseline"}
    first, second = data["turns"]
    for turn in (first, second):
        assert set(turn) >= {
            "ttft_s",
            "tpot_s",
            "e2e_s",
            "decode_tok_s",
            "prompt_tokens",
            "image_tokens",
            "reused_tokens",
        }
    assert first["image_tokens"] == 52 and first["reused_tokens"] == 0
    assert second["reused_tokens"] >= first["prompt_tokens"]
    assert second["image_tiles_encoded"] == 0
    assert len(data["baseline"]["turns"]) == 2
    assert data["baseline"]["turns"][1]["reused_tokens"] == 0  # the baseline re-reads everything
    assert data["peak_rss_mb"] > 0 and data["baseline"]["peak_rss_mb"] > 0
    # how images were read, and how long a tile took
    assert data["vision"].split()[0] in ("onnxruntime", "openvino", "llama.cpp") and "thread" in data["vision"]
    assert first["encode_s_per_tile"] > 0 and first["image_tiles_encoded"] == 13


def test_bench_table(tiny_pair):
    text, _ = tiny_pair
    out = smolchat("bench", "--model", str(text), "--runs", "1", "--max-tokens", "4", "--prompt", "Hi")
    assert out.returncode == 0, out.stderr
    assert "TTFT s" in out.stdout and "peak RSS" in out.stdout


def test_bench_table_names_the_vision_encoder(tiny_pair, images):
    text, mmproj = tiny_pair
    out = smolchat(
        "bench",
        "--model",
        str(text),
        "--mmproj",
        str(mmproj),
        "--image",
        str(images["photo"]),
        "--runs",
        "1",
        "--turns",
        "1",
        "--max-tokens",
        "4",
        "--vision",
        "llama.cpp",
        "--vision-precision",
        "BF16",
        "--vision-threads",
        "1",
    )
    assert out.returncode == 0, out.stderr
    assert "encode s/tile" in out.stdout
    assert "images read by llama.cpp BF16, 1 thread (settings" in out.stdout


def test_budget_json_predicts_what_ask_then_uses(tiny_pair, images):
    text, mmproj = tiny_pair
    files = ["--model", str(text), "--mmproj", str(mmproj), "--image", str(images["photo"]), "--detail", "full"]
    out = smolchat("budget", *files, "--max-tokens", "64", "--json", "What is in this picture?")
    assert out.returncode == 0, out.stderr
    budget = json.loads(out.stdout)
    assert {"images", "text_tokens", "reply_reserve", "total_tokens", "n_ctx", "fits", "memory_mb"} <= set(budget)
    (image,) = budget["images"]
    assert (image["width"], image["height"], image["tiles"]) == (1024, 768, 13)
    asked = json.loads(smolchat("ask", *files, "--max-tokens", "2", "--json", "What is in this picture?").stdout)
    assert budget["total_tokens"] - budget["reply_reserve"] == asked["stats"]["prompt_tokens"]
    assert budget["fits"] and budget["memory_mb"] > 0


def test_budget_says_what_to_do_when_a_message_cannot_fit(tiny_pair, images):
    text, mmproj = tiny_pair
    out = smolchat(
        "budget",
        "--model",
        str(text),
        "--mmproj",
        str(mmproj),
        "--image",
        str(images["photo"]),
        "--detail",
        "full",
        "--n-ctx",
        "128",
        "--max-tokens",
        "100",
    )
    assert out.returncode == 0, out.stderr
    assert "does NOT fit" in out.stdout and "Lower the image detail" in out.stdout
    assert "raise the context size (up to " in out.stdout  # as far as the free memory allows


def test_ask_with_a_schema_answers_valid_json(tiny_pair, images, tmp_path):
    import jsonschema

    schema = {
        "type": "object",
        "properties": {"caption": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["caption", "tags"],
    }
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    text, mmproj = tiny_pair
    common = ["--model", str(text), "--mmproj", str(mmproj), "--image", str(images["small"])]
    for max_tokens in ("40", "400"):
        out = smolchat(
            "ask",
            *common,
            "--schema",
            str(tmp_path / "schema.json"),
            "--json",
            "--max-tokens",
            max_tokens,
            "--temperature",
            "1",
            "Tag it.",
        )
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        jsonschema.validate(data["result"], schema)
        assert json.loads(data["answer"]) == data["result"]
    streamed = smolchat("ask", *common, "--schema", str(tmp_path / "schema.json"), "--max-tokens", "50", "Tag it.")
    assert streamed.returncode == 0, streamed.stderr
    jsonschema.validate(json.loads(streamed.stdout.rstrip("\n").splitlines()[0]), schema)


@pytest.mark.parametrize(
    "content, says",
    [("{not json", "is not a JSON schema"), ('{"type": "integer", "multipleOf": 3}', "'multipleOf'")],
)
def test_ask_explains_a_schema_it_cannot_use(tiny_pair, tmp_path, content, says):
    (tmp_path / "schema.json").write_text(content)
    out = smolchat("ask", "--model", str(tiny_pair[0]), "--schema", str(tmp_path / "schema.json"), "Hi")
    assert out.returncode == 1 and says in out.stderr and "Traceback" not in out.stderr


def test_ask_about_a_clip_and_pdf_pages_reports_frames_and_images(tiny_pair, tmp_path):
    from tests.media.clips import write_clip
    from tests.media.test_pdf import write_pdf

    clip = write_clip(tmp_path / "square.mp4", seconds=6, fps=10)
    doc = write_pdf(tmp_path / "form.pdf", 3)
    text, mmproj = tiny_pair
    model = ["--model", str(text), "--mmproj", str(mmproj), "--max-tokens", "3", "--json"]
    out = smolchat("ask", *model, "--video", str(clip), "--image", str(doc), "--pages", "1,3", "What is this?")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)["stats"]
    assert (stats["frames"], stats["images"]) == (6, 2)
    assert "not trained on video" in out.stderr  # the tiny model is no SmolVLM2
    capped = smolchat("ask", *model, "--video", str(clip), "--fps", "2", "--max-frames", "4", "Go?")
    assert capped.returncode == 0, capped.stderr
    assert json.loads(capped.stdout)["stats"]["frames"] == 4


def test_ask_explains_bad_clips_and_documents(tiny_pair, tmp_path):
    text, mmproj = tiny_pair
    fake = tmp_path / "holiday.mp4"
    fake.write_text("not a film")
    model = ["--model", str(text), "--mmproj", str(mmproj)]
    out = smolchat("ask", *model, "--video", str(fake), "Hi?")
    assert out.returncode != 0 and "holiday.mp4: is not a video SmolChat can read" in out.stderr
    assert "Traceback" not in out.stderr
    from tests.media.test_pdf import write_pdf

    long = write_pdf(tmp_path / "report.pdf", 10, size=(60, 80))
    out = smolchat("ask", *model, "--image", str(long), "Hi?")
    assert out.returncode != 0 and "report.pdf: has 10 pages. Choose the pages to send, e.g. --pages 1-3" in out.stderr
    out = smolchat("ask", *model, "--video", str(fake), "--max-frames", "0", "Hi?")
    assert out.returncode == 2 and "must be from 1 to" in out.stderr


@pytest.mark.parametrize("detail", ["low", "full"])
def test_budget_predicts_a_clip_and_pages_as_ask_then_reads_them(tiny_pair, tmp_path, detail):
    from tests.media.clips import write_clip
    from tests.media.test_pdf import write_pdf

    clip = write_clip(tmp_path / "square.mp4", seconds=5, fps=10)
    doc = write_pdf(tmp_path / "form.pdf", 3)
    text, mmproj = tiny_pair
    files = ["--model", str(text), "--mmproj", str(mmproj), "--video", str(clip), "--image", str(doc)]
    files += ["--pages", "2-3", "--detail", detail]
    out = smolchat("budget", *files, "--max-tokens", "64", "--json", "What happens?")
    assert out.returncode == 0, out.stderr
    budget = json.loads(out.stdout)
    assert [f["time_s"] for f in budget["frames"]] == [0.0, 1.2, 2.4, 3.6, 4.9]  # evenly, first to last
    assert {f["tiles"] for f in budget["frames"]} == {1}
    assert [i["page"] for i in budget["images"]] == [2, 3]
    asked = json.loads(smolchat("ask", *files, "--max-tokens", "2", "--json", "What happens?").stdout)
    assert budget["total_tokens"] - budget["reply_reserve"] == asked["stats"]["prompt_tokens"]
    tiles = sum(i["tiles"] for i in budget["images"]) + len(budget["frames"])
    assert asked["stats"]["image_tiles_encoded"] == tiles
