"""The icons and desktop entry a packaged or installed SmolChat shows in menus and docks."""

from __future__ import annotations

import configparser

from PIL import Image

from smolchat import paths

RESOURCES = paths.resources_dir()


def test_the_icon_comes_in_every_size_a_desktop_asks_for():
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        with Image.open(RESOURCES / "icons" / f"smolchat-{size}.png") as png:
            assert png.size == (size, size) and png.mode == "RGBA"
            assert png.getpixel((0, 0))[3] == 0, "rounded corners stay transparent"
    with Image.open(RESOURCES / "smolchat.ico") as ico:
        assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]
    with Image.open(RESOURCES / "smolchat.icns") as icns:
        assert icns.size == (1024, 1024)  # 512 px at 2x


def test_the_desktop_entry_launches_smolchat_with_its_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(RESOURCES / "smolchat.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application" and desktop["Name"] == "SmolChat"
    assert desktop["Exec"] == "smolchat" and desktop["Icon"] == "smolchat"
    assert desktop["Terminal"] == "false" and desktop["Categories"].endswith(";")
