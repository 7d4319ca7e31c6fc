"""PDF pages become images at the model's preprocessing size; bad PDFs get messages."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from smolchat.media import attach
from smolchat.media.pdf import DocumentError, page_count, parse_pages, render_pages


def write_pdf(path, pages: int, size=(612, 792)):
    pictures = []
    for number in range(1, pages + 1):
        picture = Image.new("RGB", size, "white")
        ImageDraw.Draw(picture).rectangle((50, 50 + 20 * number, 300, 80 + 20 * number), fill="black")
        pictures.append(picture)
    pictures[0].save(path, save_all=True, append_images=pictures[1:])
    return path


@pytest.fixture(scope="module")
def three_pages(tmp_path_factory):
    return write_pdf(tmp_path_factory.mktemp("pdf") / "invoice.pdf", 3)


def test_the_chosen_pages_render_at_the_size_asked(three_pages):
    assert page_count(three_pages) == 3
    first, third = render_pages(three_pages, [1, 3], 128)
    assert (first.width, first.height) == (99, 128)  # a letter page, its longest side 128 px
    assert first.source.endswith("invoice.pdf page 1") and third.source.endswith("invoice.pdf page 3")
    assert first.content_id != third.content_id and not first.one_tile


def test_page_lists():
    assert parse_pages("1-3,5", 6) == [1, 2, 3, 5]
    assert parse_pages(" 2 , 1-2 ", 3) == [2, 1]
    for spec, says in [("0", "count from 1"), ("3-1", "not a range"), ("7", "there is no page 7"), ("a", "not a page")]:
        with pytest.raises(DocumentError, match=says):
            parse_pages(spec, 6)


def test_a_long_pdf_asks_which_pages(tmp_path):
    long = write_pdf(tmp_path / "report.pdf", 12, size=(100, 140))
    with pytest.raises(DocumentError, match="has 12 pages. Choose the pages"):
        attach.check([long])
    (checked,) = attach.check([long], pages="2,4")
    assert checked.kind == "pages" and checked.pages == (2, 4)


def test_bad_pdfs_get_messages_that_name_them(tmp_path, three_pages):
    from pypdf import PdfReader, PdfWriter

    locked = tmp_path / "locked.pdf"
    writer = PdfWriter()
    for page in PdfReader(three_pages).pages:
        writer.add_page(page)
    writer.encrypt("secret", algorithm="RC4-128")
    writer.write(locked)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF garbage")
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(three_pages.read_bytes()[:300])
    for path, says in [
        (locked, "protected by a password"),
        (broken, "damaged|no pages"),
        (empty, "is empty"),
        (cut, "damaged"),
        (tmp_path / "missing.pdf", "does not exist"),
    ]:
        with pytest.raises(DocumentError, match=says) as caught:
            attach.check([path])
        assert str(path) in str(caught.value)


@pytest.mark.parametrize("size", [(612, 792), (842, 595), (300, 301)])
def test_the_budget_knows_a_page_size_before_rendering_it(tmp_path, size):
    from smolchat.media.pdf import page_sizes

    doc = write_pdf(tmp_path / "page.pdf", 1, size=size)
    for side in (128, 2048):
        (rendered,) = render_pages(doc, [1], side)
        assert page_sizes(doc, [1], side) == [(rendered.width, rendered.height)]


def test_a_huge_page_renders_at_the_size_the_model_reads(tmp_path):
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    doc.new_page(14400, 14400)  # 200 x 200 inches, PDF's largest page
    doc.save(tmp_path / "poster.pdf")
    doc.close()
    (page,) = render_pages(tmp_path / "poster.pdf", [1], 2048)
    assert (page.width, page.height) == (2048, 2048)
