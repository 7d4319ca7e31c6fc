"""PDF pages as images: rendered by PDFium (pypdfium2) at the size the model reads them.

A page is rendered so that its longest side is the projector's preprocessing size (2048 px
for SmolVLM-256M/500M), the size libmtmd scales every image to anyway: rendering larger is
wasted, smaller loses the small print a form or an invoice needs. Each page is then an image
like any photo, with its own cost.
"""

from __future__ import annotations

import math
import os
import re
import threading
from pathlib import Path

from smolchat.engine.images import ImageError, PreparedImage, from_pixels

PDF_SUFFIX = ".pdf"
MAX_PAGE_SIDE = 4096
_PDFIUM = threading.Lock()  # PDFium is not thread-safe: one document call at a time


class DocumentError(ImageError):
    """A PDF that cannot be used; the message names the file, then says why."""


def is_pdf(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == PDF_SUFFIX


def page_count(path: str | os.PathLike[str]) -> int:
    with _PDFIUM, _Document(path) as pdf:
        return len(pdf)


def parse_pages(spec: str, count: int, path: str | os.PathLike[str] = "") -> list[int]:
    """Page numbers (from 1) from a list like ``1-3,5``, in the order given, each once."""
    pages: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise DocumentError(path, f"{part!r} is not a page or a range of pages (write e.g. 1-3,5).")
        first = int(match[1])
        last = int(match[2]) if match[2] else first
        if first < 1 or last < first:
            raise DocumentError(path, f"{part!r} is not a range of pages (pages count from 1).")
        if last > count:
            raise DocumentError(path, f"has {count} page{'s' if count != 1 else ''}; there is no page {last}.")
        pages += [p for p in range(first, last + 1) if p not in pages]
    if not pages:
        raise DocumentError(path, "no page was chosen.")
    return pages


def page_sizes(path: str | os.PathLike[str], pages: list[int], longest_side: int) -> list[tuple[int, int]]:
    """The pixel sizes ``render_pages`` gives these pages, from the page boxes alone."""
    longest_side = max(1, min(longest_side, MAX_PAGE_SIDE))
    sizes = []
    with _PDFIUM, _Document(path) as pdf:
        for number in pages:
            page = pdf[number - 1]
            try:
                width, height = page.get_size()
            finally:
                page.close()
            scale = longest_side / max(width, height)
            sizes.append((math.ceil(width * scale), math.ceil(height * scale)))  # as pypdfium2 sizes its bitmap
    return sizes


def render_pages(path: str | os.PathLike[str], pages: list[int], longest_side: int) -> list[PreparedImage]:
    """The pages (numbered from 1) as RGB images, their longest side ``longest_side`` pixels."""
    longest_side = max(1, min(longest_side, MAX_PAGE_SIDE))
    images = []
    with _PDFIUM, _Document(path) as pdf:
        for number in pages:
            if not 1 <= number <= len(pdf):
                raise DocumentError(path, f"has {len(pdf)} pages; there is no page {number}.")
            page = pdf[number - 1]
            try:
                width, height = page.get_size()
                if not (width > 0 and height > 0):
                    raise DocumentError(path, f"page {number} has no size.")
                bitmap = page.render(scale=longest_side / max(width, height), may_draw_forms=True)
                picture = bitmap.to_pil().convert("RGB")
            finally:
                page.close()
            images.append(from_pixels(picture, f"{path} page {number}"))
    return images


def extract_pages(path: str | os.PathLike[str], pages: list[int]) -> bytes:
    """A new PDF holding only these pages (from 1), in this order: what the window keeps when
    a person picks pages, so the conversation holds just what was sent."""
    import io

    import pypdfium2 as pdfium

    with _PDFIUM, _Document(path) as source:
        picked = pdfium.PdfDocument.new()
        try:
            picked.import_pages(source, [p - 1 for p in pages])
            out = io.BytesIO()
            picked.save(out)
        finally:
            picked.close()
    return out.getvalue()


class _Document:
    """A PDF opened by PDFium, its failures DocumentErrors naming the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    def __enter__(self):
        import pypdfium2 as pdfium

        label = str(self.path)
        if not os.path.isfile(self.path):
            raise DocumentError(
                label, "the file does not exist." if not os.path.exists(self.path) else "is not a file."
            )
        if os.path.getsize(self.path) == 0:
            raise DocumentError(label, "is empty (0 bytes).")
        try:
            self.pdf = pdfium.PdfDocument(os.fspath(self.path))
        except pdfium.PdfiumError as e:
            text = str(e).lower()
            if "password" in text:
                raise DocumentError(
                    label, "is protected by a password. Open it, and save or print a copy without one."
                ) from e
            detail = str(e).rsplit("PDFium: ", 1)[-1].rstrip(").") or type(e).__name__
            raise DocumentError(label, f"is not a PDF SmolChat can read, or it is damaged ({detail}).") from e
        except OSError as e:
            raise DocumentError(label, f"cannot be read ({e.strerror or e}).") from e
        if len(self.pdf) == 0:
            self.pdf.close()
            raise DocumentError(label, "has no pages.")
        return self.pdf

    def __exit__(self, kind, error, trace) -> None:
        self.pdf.close()
        if error is None or isinstance(error, DocumentError):
            return
        if isinstance(error, MemoryError):
            raise DocumentError(self.path, "is too large to render in the memory available.") from error
        if isinstance(error, Exception):  # a damaged page (pypdfium2 raises PdfiumError, or worse)
            detail = str(error).rsplit("PDFium: ", 1)[-1].rstrip(").") or type(error).__name__
            raise DocumentError(self.path, f"is damaged ({detail}).") from error
