"""Clips and PDFs come from anywhere: damaged ones (bytes flipped, cut short, spliced) either
read or fail with a message naming the file, never with another exception."""

from __future__ import annotations

import random

import pytest

from smolchat.engine.images import ImageError
from smolchat.media import attach
from smolchat.media.pdf import render_pages
from smolchat.media.video import read_video
from tests.media.clips import write_clip
from tests.media.test_pdf import write_pdf


def mutations(data: bytes, count: int, seed: int):
    rng = random.Random(seed)
    for i in range(count):
        damaged = bytearray(data)
        kind = i % 3
        if kind == 0:  # flip bytes
            for _ in range(rng.randint(1, 40)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        elif kind == 1:  # cut short
            del damaged[rng.randrange(16, len(damaged)) :]
        else:  # a run of the file copied over another place
            start, length = rng.randrange(len(damaged)), rng.randint(8, 512)
            at = rng.randrange(len(damaged))
            damaged[at : at + length] = damaged[start : start + length]
        yield bytes(damaged)


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "libx264"), (".webm", "libvpx-vp9")])
def test_damaged_clips_read_or_get_a_message(tmp_path, suffix, codec):
    clip = write_clip(tmp_path / f"clip{suffix}", seconds=3, fps=10, size=(64, 48), codec=codec).read_bytes()
    outcomes = {"read": 0, "refused": 0}
    for n, data in enumerate(mutations(clip, 45, seed=len(suffix))):
        path = tmp_path / f"damaged{n}{suffix}"
        path.write_bytes(data)
        try:
            frames = read_video(path, 32, max_frames=4).frames
            assert all(f.image.width == f.image.height == 32 for f in frames)
            outcomes["read"] += 1
        except ImageError as e:
            assert path.name in str(e)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0  # the damage was real


def test_damaged_pdfs_read_or_get_a_message(tmp_path):
    pdf = write_pdf(tmp_path / "doc.pdf", 3, size=(100, 130)).read_bytes()
    outcomes = {"read": 0, "refused": 0}
    for n, data in enumerate(mutations(pdf, 60, seed=7)):
        path = tmp_path / f"damaged{n}.pdf"
        path.write_bytes(data)
        try:
            (found,) = attach.check([path])
            pages = render_pages(path, list(found.pages), 64)
            assert all(max(p.width, p.height) <= 64 for p in pages)
            outcomes["read"] += 1
        except ImageError as e:
            assert path.name in str(e)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0
