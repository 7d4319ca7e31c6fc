"""A corpus of odd and hostile image files, made on the spot from a fixed seed: every mode
Pillow knows in every format that stores it, empty stubs, slivers, truncated copies,
decompression bombs, animations, multi-page TIFFs, APNGs good and broken, DDS textures
Pillow can and cannot decode, and seeded byte mutations of them all.

Each file is either read, at the very size its header promised the context budget, or
refused with a message that names it. Nothing may crash, hang, or raise anything else:
not the header probe run when a picture is attached, not the decode, not the tile geometry
for the sizes they report.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smolchat.budget.detail import Detail
from smolchat.budget.images import image_cost, prepared_size, tile_geometry
from smolchat.engine.gguf_info import inspect_projector
from smolchat.engine.images import ImageError, PreparedImage, prepare_image
from smolchat.engine.vision.tiles import cut_tiles

SEED = 20261
SIZE = (23, 17)  # odd on both sides: rows that do not end on a byte or a block

# Formats Pillow writes, by file suffix; a mode a format does not take is skipped.
WRITERS = {
    "png": ("PNG", {}),
    "tif": ("TIFF", {}),
    "lzw.tif": ("TIFF", {"compression": "tiff_lzw"}),
    "webp": ("WEBP", {"lossless": True}),
    "gif": ("GIF", {}),
    "bmp": ("BMP", {}),
    "jpg": ("JPEG", {}),
    "dds": ("DDS", {}),
    "ico": ("ICO", {}),
    "ppm": ("PPM", {}),
    "tga": ("TGA", {}),
    "pcx": ("PCX", {}),
    "sgi": ("SGI", {}),
    "im": ("IM", {}),
    "spi": ("SPIDER", {}),
    "qoi": ("QOI", {}),
    "jp2": ("JPEG2000", {}),
    "blp": ("BLP", {}),
    "msp": ("MSP", {}),
    "xbm": ("XBM", {}),
    "eps": ("EPS", {}),
    "avif": ("AVIF", {"speed": 10}),
}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        chunks.append((kind, data[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def png_from(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, data) for kind, data in chunks)


def png(width: int, height: int, depth: int, colour: int, rows: bytes = b"", extra: tuple = ()) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return png_from([(b"IHDR", header), *extra, (b"IDAT", zlib.compress(rows)), (b"IEND", b"")])


def dds(
    width: int,
    height: int,
    *,
    flags: int,
    fourcc: bytes = b"\0\0\0\0",
    bits: int = 0,
    masks: tuple[int, int, int, int] = (0, 0, 0, 0),
    dxgi: int | None = None,
    payload: bytes = b"",
) -> bytes:
    pixel_format = struct.pack("<II4sI4I", 32, flags, fourcc, bits, *masks)
    header = struct.pack("<7I", 124, 0x1007, height, width, 0, 0, 0) + bytes(44) + pixel_format + bytes(20)
    extension = b"" if dxgi is None else struct.pack("<5I", dxgi, 3, 0, 1, 0)
    return b"DDS " + header + extension + payload


def encoded(image: Image.Image, fmt: str, **options) -> bytes | None:
    out = io.BytesIO()
    try:
        image.save(out, fmt, **options)
    except Exception:  # this format does not store this mode (or these options)
        return None
    return out.getvalue()


def noise(rng: np.random.Generator, mode: str, size: tuple[int, int]) -> Image.Image:
    """Random bytes in the mode's own layout: in F mode that includes NaN and infinities."""
    image = Image.frombytes(mode, size, rng.bytes(len(Image.new(mode, size).tobytes())))
    if mode in ("P", "PA"):
        image.putpalette(rng.bytes(768))
    return image


def every_mode_in_every_format(rng: np.random.Generator) -> dict[str, bytes]:
    files = {}
    for mode in Image.MODES:
        image = noise(rng, mode, SIZE)
        for suffix, (fmt, options) in WRITERS.items():
            data = encoded(image, fmt, **options)
            if data is not None:
                files[f"{mode.replace(';', '_')}.{suffix}"] = data
    ramp = np.linspace(0, 65535, SIZE[0] * SIZE[1]).astype(np.uint16).reshape(SIZE[1], SIZE[0])
    deep = {
        "I;16": Image.fromarray(ramp),
        "I;16B": Image.frombytes("I;16B", SIZE, ramp.astype(">u2").tobytes()),
        "I": Image.fromarray(ramp.astype(np.int32) - 30000),
        "F": Image.fromarray(ramp / np.float32(65535)),
    }
    for mode, image in deep.items():
        for suffix, fmt in (("png", "PNG"), ("tif", "TIFF"), ("im", "IM"), ("ppm", "PPM"), ("jp2", "JPEG2000")):
            data = encoded(image, fmt)
            if data is not None:
                files[f"ramp-{mode.replace(';', '_')}.{suffix}"] = data
    keyed = {"RGB": (1, 2, 3), "L": 7, "P": 3, "1": 0, "I;16": 1234}
    for mode, key in keyed.items():
        image = Image.new(mode, SIZE, key)
        image.paste(Image.new(mode, (5, 5), 200 if mode != "RGB" else (200, 9, 9)), (4, 4))
        for suffix, fmt in (("png", "PNG"), ("gif", "GIF"), ("webp", "WEBP")):
            data = encoded(image, fmt, transparency=key)
            if data is not None:
                files[f"keyed-{mode.replace(';', '_')}.{suffix}"] = data
    return files


def icns(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(kind + struct.pack(">I", 8 + len(data)) + data for kind, data in entries)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def png_rows(pixels: np.ndarray) -> bytes:
    """PNG scanlines (filter byte 0) of an (H, W) or (H, W, C) uint8 array."""
    rows = pixels.reshape(pixels.shape[0], -1)
    return np.hstack([np.zeros((rows.shape[0], 1), np.uint8), rows]).tobytes()


def empty_and_slivers(rng: np.random.Generator) -> dict[str, bytes]:
    grey = lambda w, h: rng.bytes(w * h)  # noqa: E731
    pixels = lambda *shape: rng.integers(0, 256, shape, np.uint8)  # noqa: E731
    return {
        # Scientific formats Pillow opens as 0 x 0 stubs
        "stub.grib": b"GRIB\0\0\0\x01" + bytes(64),
        "stub.bufr": b"BUFR" + bytes(64),
        "stub.h5": b"\x89HDF\r\n\x1a\n" + bytes(64),
        "zero-wide.png": png(0, 5, 8, 0, b"\0" * 5),
        "zero-high.png": png(5, 0, 8, 0),
        "zero.dds": dds(0, 0, flags=0x20000, bits=8),
        "zero-wide.dds": dds(0, 9, flags=0x20000, bits=8),
        "zero.gif": b"GIF89a\0\0\0\0\0\0\0,\0\0\0\0\0\0\0\0\0\x02\x02D\x01\0;",
        "zero.bmp": b"BM" + struct.pack("<IHHIIiiHHIIiiII", 54, 0, 0, 54, 40, 0, 0, 1, 24, 0, 0, 0, 0, 0, 0),
        "one.png": png(1, 1, 8, 0, b"\0\x80"),
        "tall.png": png(1, 60000, 8, 0, png_rows(pixels(60000, 1))),
        "wide.png": png(60000, 1, 8, 0, png_rows(pixels(1, 60000))),
        "wide-rgb.png": png(60000, 2, 8, 2, png_rows(pixels(2, 60000, 3))),
        "tall.tif": encoded(Image.frombytes("L", (1, 30000), grey(1, 30000)), "TIFF"),
        "wide.jpg": encoded(Image.frombytes("L", (20000, 1), grey(20000, 1)), "JPEG"),
        "tall.webp": encoded(Image.frombytes("L", (2, 16000), grey(2, 16000)), "WEBP"),
    }


def bombs() -> dict[str, bytes]:
    """Headers that declare far more pixels than the file could hold."""
    small_jpeg = encoded(Image.new("RGB", (8, 8)), "JPEG")
    sof = small_jpeg.index(b"\xff\xc0")
    return {
        "bomb.png": png(100_000, 100_000, 8, 2),
        "bomb-16bit.png": png(70_000, 70_000, 16, 6),
        "bomb.gif": b"GIF89a\xff\xff\xff\xff\0\0\0,\0\0\0\0\xff\xff\xff\xff\0\x02\x02D\x01\0;",
        "bomb.jpg": small_jpeg[: sof + 5] + struct.pack(">HH", 65000, 65000) + small_jpeg[sof + 9 :],
        "bomb.bmp": b"BM" + struct.pack("<IHHIIiiHHIIiiII", 54, 0, 0, 54, 40, 60000, 60000, 1, 24, 0, 0, 0, 0, 0, 0),
        "bomb.dds": dds(50000, 50000, flags=0x4, fourcc=b"DXT1"),
        "bomb.webp": b"RIFF" + struct.pack("<I", 18) + b"WEBPVP8L" + struct.pack("<I", 5) + b"\x2f\xff\xff\xff\x0f",
        "bomb.tif": b"II*\0\x08\0\0\0\x03\0"
        + struct.pack("<HHII", 256, 4, 1, 100_000)
        + struct.pack("<HHII", 257, 4, 1, 100_000)
        + struct.pack("<HHII", 258, 3, 1, 8)
        + bytes(4),
    }


def animations(rng: np.random.Generator) -> dict[str, bytes]:
    frames = [noise(rng, "RGB", SIZE) for _ in range(3)]
    first, rest = frames[0], frames[1:]
    files = {
        "animated.gif": encoded(first, "GIF", save_all=True, append_images=rest, duration=50),
        "animated.webp": encoded(first, "WEBP", save_all=True, append_images=rest, duration=50, lossless=True),
        "pages.tif": encoded(
            noise(rng, "L", (40, 9)),
            "TIFF",
            save_all=True,
            append_images=[first, noise(rng, "I;16", (5, 60)), noise(rng, "CMYK", SIZE)],
        ),
        "animated.png": encoded(first, "PNG", save_all=True, append_images=rest, duration=50),
        "animated-hidden-first.png": encoded(first, "PNG", save_all=True, append_images=rest, default_image=True),
    }
    good = png_chunks(files["animated.png"])

    def edited(kind: bytes, nth: int, change) -> bytes:
        seen, out = 0, []
        for k, data in good:
            if k == kind:
                if seen == nth:
                    data = change(data)
                seen += 1
            if data is not None:
                out.append((k, data))
        return png_from(out)

    def frame_size(width: int, height: int):
        return lambda d: d[:4] + struct.pack(">II", width, height) + d[12:]

    def frame_control(sequence: int, width: int, height: int) -> tuple[bytes, bytes]:
        return b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, 1, 10, 0, 0)

    plain = png_chunks(encoded(first, "PNG"))

    files.update(
        {
            "apng-sequence.png": edited(b"fcTL", 1, lambda d: struct.pack(">I", 9) + d[4:]),
            "apng-first-sequence.png": edited(b"fcTL", 0, lambda d: struct.pack(">I", 5) + d[4:]),
            "apng-frame-too-big.png": edited(b"fcTL", 1, frame_size(500, 500)),
            "apng-first-too-big.png": edited(b"fcTL", 0, frame_size(500, 5)),
            "apng-no-frames.png": edited(b"acTL", 0, lambda d: struct.pack(">II", 0, 0)),
            "apng-more-frames.png": edited(b"acTL", 0, lambda d: struct.pack(">II", 9, 0)),
            "apng-short-actl.png": edited(b"acTL", 0, lambda d: d[:3]),
            "apng-short-fctl.png": edited(b"fcTL", 1, lambda d: d[:10]),
            "apng-short-fdat.png": edited(b"fdAT", 0, lambda d: d[:2]),
            "apng-bad-fdat.png": edited(b"fdAT", 0, lambda d: d[:4] + bytes(len(d) - 4)),
            "apng-no-fdat.png": edited(b"fdAT", 0, lambda d: None),
            "apng-two-actl.png": png_from(good[:2] + [good[1]] + good[2:]),
            # Frame controls after the pixels of a still picture, out of sequence or larger than it
            "apng-stray-sequence.png": png_from(plain[:-1] + [frame_control(7, 5, 5), plain[-1]]),
            "apng-stray-too-big.png": png_from(plain[:-1] + [frame_control(0, 500, 5), plain[-1]]),
            "apng-one-frame.png": png_from(
                plain[:1]
                + [(b"acTL", struct.pack(">II", 1, 0)), frame_control(0, *SIZE)]
                + plain[1:-1]
                + [frame_control(3, 5, 5), plain[-1]]
            ),
        }
    )
    return files


def dds_textures(rng: np.random.Generator) -> dict[str, bytes]:
    width, height = 20, 12  # not whole 4x4 blocks in either direction
    blocks = ((width + 3) // 4) * ((height + 3) // 4)
    files = {}
    for pixel_format in ("DXT1", "DXT3", "DXT5", "BC2", "BC3", "BC5"):
        mode = "RGB" if pixel_format == "BC5" else "RGBA"  # BC5 holds two channels: Pillow writes it from RGB
        files[f"saved-{pixel_format}.dds"] = encoded(
            noise(rng, mode, (width, height)), "DDS", pixel_format=pixel_format
        )
    for fourcc, block in (
        (b"DXT1", 8),
        (b"DXT3", 16),
        (b"DXT5", 16),
        (b"ATI1", 8),
        (b"BC4U", 8),
        (b"ATI2", 16),
        (b"BC5U", 16),
        (b"BC5S", 16),
        (b"ETC1", 8),
        (b"ATC ", 8),
        (b"\xff\xff\xff\xff", 8),
    ):
        name = fourcc.decode("latin-1").strip().replace("\xff", "x")
        files[f"fourcc-{name}.dds"] = dds(width, height, flags=0x4, fourcc=fourcc, payload=rng.bytes(blocks * block))
    # DXGI formats: BC1-BC7 (BC6H is half-float), RGBA8, and a few Pillow has no decoder for
    for dxgi in (71, 74, 77, 80, 83, 84, 95, 96, 98, 99, 27, 28, 29, 2, 10, 24, 61, 87, 0, 200, 2**32 - 1):
        files[f"dx10-{dxgi}.dds"] = dds(
            width, height, flags=0x4, fourcc=b"DX10", dxgi=dxgi, payload=rng.bytes(blocks * 16)
        )
    files.update(
        {
            "dx10-missing-extension.dds": dds(width, height, flags=0x4, fourcc=b"DX10"),
            "rgb565.dds": dds(
                width,
                height,
                flags=0x40,
                bits=16,
                masks=(0xF800, 0x7E0, 0x1F, 0),
                payload=rng.bytes(width * height * 2),
            ),
            "rgba-odd-masks.dds": dds(
                width,
                height,
                flags=0x41,
                bits=32,
                masks=(0xF0, 0, 0x3, 0x80000000),
                payload=rng.bytes(width * height * 4),
            ),
            "rgb-no-bits.dds": dds(width, height, flags=0x40, bits=0, payload=rng.bytes(64)),
            "rgb-huge-bits.dds": dds(width, height, flags=0x40, bits=2**32 - 8, payload=rng.bytes(64)),
            "luminance16.dds": dds(width, height, flags=0x20000, bits=16, payload=rng.bytes(width * height * 2)),
            "luminance-alpha.dds": dds(width, height, flags=0x20001, bits=16, payload=rng.bytes(width * height * 2)),
            "palette.dds": dds(width, height, flags=0x20, bits=8, payload=rng.bytes(1024 + width * height)),
            "palette-short.dds": dds(width, height, flags=0x20, bits=8, payload=rng.bytes(100)),
            "no-flags.dds": dds(width, height, flags=0),
            "header-size.dds": b"DDS " + struct.pack("<I", 100) + bytes(120),
        }
    )
    return files


def other_odd_files(rng: np.random.Generator) -> dict[str, bytes]:
    icon = encoded(noise(rng, "RGBA", (16, 16)), "ICO", sizes=[(16, 16)])
    return {
        "empty.png": b"",
        "text.png": b"hello, not a picture\n",
        "random.jpg": rng.bytes(4096),
        "magic-only.png": b"\x89PNG\r\n\x1a\n",
        "magic-only.gif": b"GIF89a",
        "magic-only.tif": b"II*\0",
        "magic-only.jpg": b"\xff\xd8\xff",
        "magic-only.bmp": b"BM",
        "magic-only.webp": b"RIFF\0\0\0\0WEBP",
        "magic-only.ico": b"\0\0\1\0\xff\xff",
        "xpm-huge-colours.xpm": b'/* XPM */\nstatic char *x[] = {\n"4 4 99999999 1",\n',
        # Icons whose directory disagrees with the picture inside
        "icon-directory-lies.ico": icon[:6] + bytes([48, 48]) + icon[8:],
        "icon.icns": icns(
            [
                (b"icp4", encoded(noise(rng, "RGBA", (16, 16)), "PNG")),
                (b"ic07", encoded(noise(rng, "RGB", (128, 128)), "PNG")),
            ]
        ),
        "icon-size-lies.icns": icns([(b"icp4", encoded(noise(rng, "RGB", (40, 30)), "PNG"))]),
        "icon-not-png.icns": icns([(b"ic07", rng.bytes(300))]),
        "exif-garbage.jpg": encoded(noise(rng, "RGB", SIZE), "JPEG", exif=b"Exif\0\0" + rng.bytes(60)),
        "exif-orientation-9.jpg": encoded(noise(rng, "RGB", SIZE), "JPEG", exif=_exif_orientation(9)),
        "exif-orientation-6.png": encoded(noise(rng, "RGB", SIZE), "PNG", exif=_exif_orientation(6)),
        "exif-orientation-8.webp": encoded(noise(rng, "RGB", SIZE), "WEBP", exif=_exif_orientation(8)),
        "exif-orientation-5.tif": encoded(noise(rng, "RGB", SIZE), "TIFF", exif=_exif_orientation(5)),
        "bad-crc.png": encoded(noise(rng, "RGB", SIZE), "PNG")[:-5] + b"\0\0\0\0\0",
        "interlaced.png": encoded(noise(rng, "RGB", SIZE), "PNG", interlace=1),
        "progressive.jpg": encoded(noise(rng, "RGB", (200, 150)), "JPEG", progressive=True),
        "cmyk.jpg": encoded(noise(rng, "CMYK", SIZE), "JPEG"),
    }


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def truncated(files: dict[str, bytes], rng: np.random.Generator) -> dict[str, bytes]:
    """Copies cut short at the places parsers trip on: inside the signature, the header, the
    first chunk, halfway, one byte short, and a few seeded places."""
    out = {}
    for name, data in files.items():
        cuts = {1, 8, 16, 33, 100, len(data) // 4, len(data) // 2, len(data) - 1}
        cuts |= {int(c) for c in rng.integers(1, len(data), 3)}
        for cut in sorted(c for c in cuts if 0 < c < len(data)):
            out[f"cut{cut}-{name}"] = data[:cut]
    return out


def mutated(files: dict[str, bytes], rng: np.random.Generator, per_file: int) -> dict[str, bytes]:
    """Seeded byte mutations: a few bytes overwritten, mostly in the header where parsers decide."""
    out = {}
    for name, data in files.items():
        for n in range(per_file if data else 0):
            changed = bytearray(data)
            for _ in range(int(rng.integers(1, 6))):
                at = int(rng.integers(0, min(len(data), 200) if rng.random() < 0.7 else len(data)))
                changed[at] = int(rng.integers(0, 256))
            out[f"mut{n}-{name}"] = bytes(changed)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    rng = np.random.default_rng(SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = every_mode_in_every_format(rng)
        odd = {**empty_and_slivers(rng), **bombs(), **animations(rng), **dds_textures(rng), **other_odd_files(rng)}
    files.update(odd)
    cut_from = {
        name: data
        for name, data in files.items()
        if name.startswith(("RGB.", "ramp-", "animated", "pages", "saved-", "progressive", "icon"))
    }
    files.update(truncated(cut_from, rng))
    files.update(mutated({n: d for n, d in files.items() if not n.startswith("cut")}, rng, per_file=2))
    folder = tmp_path_factory.mktemp("corpus")
    paths = []
    for name, data in sorted(files.items()):
        assert data is not None, f"the corpus could not write {name}"
        paths.append(folder / name)
        paths[-1].write_bytes(data)
    return paths


def attempt(function, *args):
    """What ``function`` returns, or the exception it raised: anything but an ImageError is
    what this test is here to catch."""
    try:
        return function(*args)
    except Exception as e:
        return e


@pytest.fixture(scope="module")
def projector(tiny_pair):
    return inspect_projector(tiny_pair[1])


@pytest.mark.filterwarnings("ignore")  # Pillow warns about many of these files, rightly
def test_every_file_is_read_at_its_header_size_or_refused_by_name(corpus, projector):
    wrong, read, refused, sizes = [], [], [], set()
    for path in corpus:
        size, image = attempt(prepared_size, path), attempt(prepare_image, path)
        for what, result in (("prepared_size", size), ("prepare_image", image)):
            if isinstance(result, ImageError):
                message = str(result)
                if path.name not in message or not message.split(path.name, 1)[1].strip(" :."):
                    wrong.append(f"{path.name}: {what} refused it without naming it and why: {message}")
            elif isinstance(result, Exception):
                wrong.append(f"{path.name}: {what} raised {type(result).__name__}: {result}")
            elif what == "prepared_size":
                sizes.add(result)
        if isinstance(image, PreparedImage):
            read.append(path.name)
            if size != (image.width, image.height):
                wrong.append(f"{path.name}: the header promised {size}, the decode gave {image.width}x{image.height}")
            if len(image.rgb) != image.width * image.height * 3:
                wrong.append(f"{path.name}: {len(image.rgb)} bytes of RGB for {image.width}x{image.height}")
        elif isinstance(image, ImageError):
            refused.append(path.name)
    # The tile geometry depends on the size alone: libmtmd's layout as the budget counts it, and
    # the tiles our own encoders would cut from pixels of that size, at every detail level.
    for width, height in sorted(sizes):
        pixels = np.zeros((height, width, 3), np.uint8)
        for detail in Detail:
            cost = attempt(image_cost, width, height, projector, detail)
            tiles = attempt(cut_tiles, pixels, tile_geometry(projector, detail))
            if isinstance(cost, Exception) or isinstance(tiles, Exception):
                wrong.append(f"{width}x{height} at {detail.value}: {cost!r} / {tiles!r}")
            elif len(tiles) != cost.tiles:
                wrong.append(f"{width}x{height} at {detail.value}: {len(tiles)} tiles cut, {cost.tiles} counted")
    assert not wrong, "\n".join(wrong)
    # Both kinds are well represented, and every mode some format stores reached the model from one
    assert len(read) > 300 and len(refused) > 300
    stored = {name.split(".")[0] for name in (p.name for p in corpus)} & {m.replace(";", "_") for m in Image.MODES}
    assert stored - {name.split(".")[0] for name in read} == set()
    assert len(stored) >= len(Image.MODES) - 1  # La (premultiplied) is for memory only
