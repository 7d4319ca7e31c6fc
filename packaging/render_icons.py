"""Renders resources/smolchat.svg into the PNG, ICO and ICNS icons that sit beside it.

Run after changing the SVG:  uv run python packaging/render_icons.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)  # freedesktop's hicolor sizes, and macOS's largest


def render(svg: Path, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    return image


def main() -> int:
    QGuiApplication(sys.argv[:1] + ["-platform", "offscreen"])
    svg = RESOURCES / "smolchat.svg"
    pngs = []
    for size in SIZES:
        png = RESOURCES / "icons" / f"smolchat-{size}.png"
        png.parent.mkdir(exist_ok=True)
        render(svg, size).save(str(png))
        pngs.append(png)
    Image.open(pngs[-1]).save(RESOURCES / "smolchat.ico", sizes=[(s, s) for s in SIZES if s <= 256])
    # macOS wants 512 px at 2x: drawn at 1024 rather than scaled up.
    with tempfile.TemporaryDirectory() as folder:
        retina = Path(folder) / "smolchat-1024.png"
        render(svg, 1024).save(str(retina))
        Image.open(retina).save(RESOURCES / "smolchat.icns")
    print(f"wrote {len(pngs)} PNGs, smolchat.ico and smolchat.icns in {RESOURCES}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
