"""Clips become the frames SmolVLM2's processor would pick, each one tile, with their times."""

from __future__ import annotations

import threading

import av
import numpy as np
import pytest

from smolchat.media import video
from smolchat.media.video import VideoError, VideoInfo, frame_times, probe, read_video
from tests.media.clips import square_progress, write_animation, write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 s at 25 fps: the clip the SmolVLM2 layout is checked on."""
    return write_clip(tmp_path_factory.mktemp("clips") / "square.mp4")


def test_a_twelve_second_clip_gives_twelve_frames_a_second_apart(clip):
    info = probe(clip)
    assert (info.duration_s, info.fps, info.frame_count, info.width, info.height) == (12.0, 25.0, 300, 160, 120)
    read = read_video(clip, 32)
    assert [f.timestamp for f in read.frames] == [f"00:{s:02d}" for s in range(12)]
    for frame in read.frames:  # one tile each, whatever the clip's shape
        assert (frame.image.width, frame.image.height, frame.image.one_tile) == (32, 32, True)
    where = [square_progress(f.image) for f in read.frames]
    expected = [t / 12 for t in frame_times(info)]
    assert np.allclose(where, expected, atol=0.06), (where, expected)  # each frame is the one at its time


def test_the_prompt_lays_the_frames_out_as_smolvlm2_was_trained(clip):
    parts = read_video(clip, 32).content
    assert parts[0] == "You are provided the following series of twelve frames from a 0:00:12 [H:MM:SS] video.\n"
    assert parts[1] == "\nFrame from 00:00:" and parts[2].one_tile
    assert parts[-3] == "\nFrame from 00:11:" and parts[-2].one_tile
    assert parts[-1] == "\n\n"
    assert len(parts) == 1 + 2 * 12 + 1


@pytest.mark.parametrize(("suffix", "codec"), [(".webm", "libvpx-vp9"), (".mkv", "libx264"), (".avi", "mpeg4")])
def test_other_containers_read_the_same_frames(tmp_path, suffix, codec):
    path = write_clip(tmp_path / f"square{suffix}", seconds=4, fps=10, codec=codec)
    read = read_video(path, 32)
    assert [f.timestamp for f in read.frames] == ["00:00", "00:01", "00:02", "00:03"]
    where = [square_progress(f.image) for f in read.frames]
    assert where == sorted(where)


def test_a_long_clip_is_sought_and_skips_its_first_and_last_second(tmp_path):
    path = write_clip(tmp_path / "long.mp4", seconds=60, fps=10, size=(96, 64))
    info = probe(path)
    times = frame_times(info, fps=1, max_frames=8)
    assert len(times) == 8 and times[0] == pytest.approx(1.0) and times[-1] == pytest.approx(59.0)
    read = read_video(path, 32, fps=1, max_frames=8)
    where = [square_progress(f.image) for f in read.frames]
    assert np.allclose(where, [t / 60 for t in times], atol=0.06), where


def test_frames_follow_the_processor_rule():
    info = VideoInfo("x.mp4", duration_s=3.5, fps=30, frame_count=105, width=10, height=10)
    assert len(frame_times(info, fps=1)) == 4  # round(3.5)
    assert len(frame_times(info, fps=2, max_frames=5)) == 5  # capped
    assert frame_times(VideoInfo("x.mp4", 0.2, 25, 5, 10, 10)) == [0.0]  # a blink still gives a frame
    with pytest.raises(ValueError):
        frame_times(info, fps=0)


def test_an_animated_gif_is_a_clip_with_its_own_frame_times(tmp_path):
    path = write_animation(tmp_path / "moving.gif", [500] * 6)  # 3 s
    assert video.is_video(path)
    read = read_video(path, 32, fps=2)
    assert [f.timestamp for f in read.frames] == ["00:00", "00:00", "00:01", "00:01", "00:02", "00:02"]
    where = [square_progress(f.image) for f in read.frames]
    assert where == sorted(where) and where[0] < where[-1]


def test_a_still_gif_is_not_a_clip(tmp_path, images):
    still = tmp_path / "still.gif"
    from PIL import Image

    Image.open(images["small"]).save(still)
    assert not video.is_video(still)


def test_stop_between_frames(clip):
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done == 3:
            cancel.set()

    with pytest.raises(VideoError, match="stopped"):
        read_video(clip, 32, cancel=cancel, on_frame=progress)
    assert seen == [(1, 12), (2, 12), (3, 12)]


def test_broken_files_get_messages_that_name_them(tmp_path, clip):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are notes, not a film")
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:2000])
    sound = tmp_path / "sound.mp4"
    with av.open(str(sound), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    for path, says in [
        (not_video, "is not a video SmolChat can read"),
        (empty, "is not a video SmolChat can read"),
        (cut, None),
        (sound, "holds no video"),
        (tmp_path / "missing.mp4", "does not exist"),
    ]:
        with pytest.raises(VideoError, match=says) as caught:
            read_video(path, 32)
        assert str(path) in str(caught.value)


def test_huge_frames_are_refused_before_decoding(clip, monkeypatch):
    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", 100 * 100)
    with pytest.raises(VideoError, match="160 x 120 pixels, too large"):
        probe(clip)


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1, "one"),
        (12, "twelve"),
        (20, "twenty"),
        (21, "twenty-one"),
        (64, "sixty-four"),
        (100, "one hundred"),
        (105, "one hundred and five"),
        (256, "two hundred and fifty-six"),
        (1000, "one thousand"),
        (1005, "one thousand and five"),
        (1234, "one thousand, two hundred and thirty-four"),
    ],
)
def test_frame_counts_in_words_as_num2words_writes_them(n, words):
    assert video.number_in_words(n) == words


def test_durations_and_timestamps():
    assert video.duration(12.9) == "0:00:12"
    assert video.duration(3725) == "1:02:05"
    assert video.timestamp(75.5) == "01:15"
    assert video.timestamp(3725) == "62:05"


@pytest.mark.parametrize(
    ("name", "trained"),
    [("SmolVLM2-256M-Video-Instruct", True), ("smolvlm2_2.2b", True), ("SmolVLM-256M-Instruct", False), ("x", False)],
)
def test_which_models_were_trained_on_video(name, trained):
    assert video.trained_on_video(name) is trained


def test_the_engine_settings_default_to_the_same_frames():
    from smolchat.engine import EngineSettings
    from smolchat.media import DEFAULT_FPS, DEFAULT_MAX_FRAMES
    from smolchat.settings import ModelSettings

    assert (EngineSettings().video_fps, EngineSettings().video_max_frames) == (DEFAULT_FPS, DEFAULT_MAX_FRAMES)
    assert ModelSettings().video_max_frames == DEFAULT_MAX_FRAMES
