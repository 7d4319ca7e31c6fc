"""Images from every format Pillow reads become the right pixels; bad files are refused."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smolchat.budget.images import prepared_size
from smolchat.engine import Message
from smolchat.engine.images import ImageCache, ImageError, PreparedImage, prepare_image
from tests.helpers import answer

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF"}


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_reaches_the_model(tiny_engine, tmp_path, suffix):
    path = tmp_path / f"picture.{suffix}"
    Image.new("RGB", (120, 80), (200, 30, 30)).save(path, FORMATS[suffix])
    image = prepare_image(path)
    assert (image.width, image.height) == (120, 80)
    assert len(image.rgb) == 120 * 80 * 3
    result, _ = answer(tiny_engine, [Message.user("What colour is it?", images=[path])])
    assert result.stats.image_tiles_encoded > 0


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    Image.new("RGB", (200, 100), (0, 0, 255)).save(path, exif=exif)
    image = prepare_image(path)
    assert (image.width, image.height) == (100, 200)


def test_transparency_becomes_white(tmp_path):
    path = tmp_path / "screenshot.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(path)
    pixels = np.frombuffer(prepare_image(path).rgb, dtype=np.uint8)
    assert (pixels == 255).all()


def test_the_same_pixels_get_the_same_identity(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.bmp"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(a)
    Image.new("RGB", (32, 32), (1, 2, 3)).save(b)
    assert prepare_image(a).content_id == prepare_image(b).content_id
    Image.new("RGB", (32, 32), (1, 2, 4)).save(b)
    assert prepare_image(a).content_id != prepare_image(b).content_id


def test_a_huge_image_is_scaled_down(tmp_path):
    path = tmp_path / "panorama.png"
    Image.new("RGB", (9000, 1000), (10, 20, 30)).save(path)
    image = prepare_image(path, max_side=2048)
    assert (image.width, image.height) == (2048, 228)


def test_not_an_image(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(ImageError, match="notes.txt: is not an image"):
        prepare_image(notes)


def test_damaged_image(tmp_path):
    path = tmp_path / "cut.png"
    Image.new("RGB", (300, 300), (5, 5, 5)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageError, match="cut.png: the image is damaged"):
        prepare_image(path)


def test_missing_image_in_a_turn(tiny_engine, tmp_path):
    with pytest.raises(ImageError, match="gone.png: the file does not exist"):
        answer(tiny_engine, [Message.user("What is it?", images=[tmp_path / "gone.png"])])


def test_decoded_images_can_be_passed_directly(tiny_engine, images):
    decoded = prepare_image(images["small"])
    assert isinstance(decoded, PreparedImage)
    result, _ = answer(tiny_engine, [Message.user("What is it?", images=[decoded])])
    assert result.stats.image_tiles_encoded > 0


def test_an_image_too_large_to_decode_safely(tmp_path, monkeypatch):
    path = tmp_path / "gigapixel.png"
    Image.new("RGB", (400, 300)).save(path)
    # Pillow refuses images over twice this many pixels (a decompression bomb guard)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    with pytest.raises(ImageError, match="gigapixel.png: is too large to open safely"):
        prepare_image(path)


def grey_levels(path) -> np.ndarray:
    """The picture as the model gets it, as grey levels (every channel agrees for a grey picture)."""
    image = prepare_image(path)
    pixels = np.frombuffer(image.rgb, np.uint8).reshape(image.height, image.width, 3)
    assert (pixels == pixels[..., :1]).all()
    return pixels[..., 0]


RAMP = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)  # dark to bright, row by row


def write_pgm16(path, values: np.ndarray) -> None:
    height, width = values.shape
    path.write_bytes(f"P5\n{width} {height}\n65535\n".encode() + values.astype(">u2").tobytes())


SIXTEEN_BIT_RAMPS = {
    "scan.png": lambda p: Image.fromarray(RAMP).save(p),  # 16-bit PNG: mode I;16
    "scan.tif": lambda p: Image.fromarray(RAMP).save(p),
    "big-endian.tif": lambda p: Image.frombytes("I;16B", (64, 8), RAMP.astype(">u2").tobytes()).save(p),
    "scan.pgm": lambda p: write_pgm16(p, RAMP),  # Pillow reads 16-bit PGM as 32-bit I
    "int32.tif": lambda p: Image.fromarray(RAMP.astype(np.int32)).save(p),
}


@pytest.mark.parametrize("name", SIXTEEN_BIT_RAMPS)
def test_a_16_bit_grey_ramp_arrives_as_a_ramp(tmp_path, name):
    path = tmp_path / name
    SIXTEEN_BIT_RAMPS[name](path)
    grey = grey_levels(path).ravel().astype(int)
    assert grey[0] <= 2 and grey[-1] >= 253  # dark stays dark, white white
    assert abs(grey[len(grey) // 2] - 128) <= 3  # and the middle is mid-grey, not clipped to white
    assert (np.diff(grey) >= 0).all()
    assert prepared_size(path) == (64, 8)


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-50.0, 3000.0), (0.0, 255.0)])
def test_a_float_image_shows_its_greys(tmp_path, low, high):
    # Floats from 0 to 1 (the usual range of linear data), elevations in metres, 8-bit greys as floats
    path = tmp_path / "data.tif"
    Image.fromarray(np.linspace(low, high, 256, dtype=np.float32).reshape(16, 16)).save(path)
    grey = grey_levels(path).ravel().astype(int)
    assert grey[0] <= 2 and grey[-1] >= 253 and abs(grey[128] - 128) <= 3


def test_float_image_with_missing_values_keeps_the_rest(tmp_path):
    values = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    values[0, :4] = [np.nan, np.inf, -np.inf, np.nan]
    path = tmp_path / "gaps.tif"
    Image.fromarray(values).save(path)
    grey = grey_levels(path)
    assert grey[-1, -1] >= 253 and abs(int(grey[8, 0]) - 128) <= 3


@pytest.mark.parametrize(
    "mode, background, square, fmt",
    [
        ("RGB", (10, 20, 30), (200, 0, 0), "PNG"),  # a colour key (tRNS) in a truecolour PNG
        ("L", 10, 90, "PNG"),  # in a grey PNG
        ("I;16", 1000, 40000, "PNG"),  # in a 16-bit grey PNG, compared at full depth
        ("P", 1, 2, "PNG"),  # palette transparency, which was already white
        ("P", 1, 2, "GIF"),
    ],
)
def test_transparent_colour_key_becomes_white(tmp_path, mode, background, square, fmt):
    image = Image.new(mode, (20, 20), background)
    if mode == "P":
        image.putpalette([0, 0, 0, 10, 20, 30, 200, 0, 0] + [0] * 759)
    image.paste(Image.new(mode, (6, 6), square), (2, 2))
    path = tmp_path / f"keyed.{fmt.lower()}"
    image.save(path, fmt, transparency=background)
    prepared = prepare_image(path)
    pixels = np.frombuffer(prepared.rgb, np.uint8).reshape(20, 20, 3)
    assert (pixels[12:, 12:] == 255).all()  # where the key colour was: white, as a viewer shows it
    assert (pixels[3:7, 3:7] < 250).any(axis=-1).all()  # the square stays as it was


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_a_rotated_photo_arrives_upright_at_the_size_the_budget_counts(tmp_path, fmt):
    pixels = np.zeros((60, 90, 3), np.uint8)
    pixels[:20, :20] = 255  # a white corner, top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": the stored top left is shown top right
    path = tmp_path / f"phone.{fmt.lower()}"
    Image.fromarray(pixels).save(path, fmt, exif=exif)
    prepared = prepare_image(path)
    assert prepared_size(path) == (prepared.width, prepared.height) == (60, 90)
    grey = np.frombuffer(prepared.rgb, np.uint8).reshape(90, 60, 3)[..., 0]
    assert grey[5, -5] > 200 and grey[5, 5] < 50 and grey[-5, -5] < 50


@pytest.fixture
def pipe(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("named pipes are a POSIX thing")
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    yield path
    # Were a reader still blocked on it, a writer that comes and goes releases it
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.timeout(60)  # reading from the pipe would wait for a writer forever
@pytest.mark.parametrize("read", [prepare_image, prepared_size, ImageCache().get], ids=["decode", "header", "cache"])
@pytest.mark.parametrize("what", ["pipe", "device", "folder"])
def test_what_is_not_a_file_is_refused_without_reading_it(request, tmp_path, read, what):
    if what == "device" and not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    path = {
        "pipe": lambda: request.getfixturevalue("pipe"),
        "device": lambda: Path("/dev/zero"),
        "folder": lambda: tmp_path,
    }[what]()
    with pytest.raises(ImageError, match=f"{re.escape(path.name)}: is (not a file|a folder)"):
        read(path)


def test_a_postscript_file_is_refused_rather_than_run(tmp_path):
    # Pillow draws EPS files by running Ghostscript on them: a file from anywhere is a program
    path = tmp_path / "figure.eps"
    Image.new("RGB", (40, 30), (0, 90, 0)).save(path)
    for read in (prepare_image, prepared_size):
        with pytest.raises(ImageError, match="figure.eps: is a PostScript file, a program SmolChat does not run"):
            read(path)
