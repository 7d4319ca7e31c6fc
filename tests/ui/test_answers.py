"""Answers are hostile text: shown as Markdown, they never load a file or address, and their links
open only after the user has seen the full address and said yes."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QPoint, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication

from smolchat.ui.views.chat_view import ChatView, markdown_html, may_open

# What in a tag makes Qt fetch a file or an address while it parses or lays out rich text.
LOADS = re.compile(r"^<\s*(img|link|style)\b|\bsrc\s*=|background\s*=|url\s*\(|@import", re.IGNORECASE)


def resource_references(rich: str) -> list[str]:
    return [tag for tag in re.findall(r"<[^>]*>", rich) if LOADS.search(tag)]


def visible_text(rich: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", rich))


WATCH_FIFO = textwrap.dedent("""
    import os, sys, time

    while True:
        try:
            fd = os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK)  # fails (ENXIO) while nobody reads
        except OSError:
            time.sleep(0.002)
            continue
        print("reader", flush=True)
        os.close(fd)  # the reader sees the end of the file and goes on
""")


class FifoWatch:
    """A FIFO that notices readers: whoever opens it is counted and let go at once, so a reader fails
    the test instead of hanging it. The watcher is a process of its own: a reader blocked in Qt holds
    this process's interpreter lock."""

    def __init__(self, path) -> None:
        self.path = path
        os.mkfifo(path)
        self._watcher = subprocess.Popen(
            [sys.executable, "-c", WATCH_FIFO, str(path)], stdout=subprocess.PIPE, text=True
        )

    def stop(self) -> int:
        """How many times the FIFO was opened."""
        self._watcher.terminate()
        out, _ = self._watcher.communicate(timeout=30)
        return out.count("reader")


@pytest.fixture
def view(qtbot):
    chat = ChatView()
    chat.resize(700, 500)
    qtbot.addWidget(chat)
    chat.show()
    return chat


def shown(qtbot, view: ChatView, text: str):
    """An answer added to the conversation, laid out and painted as the window would."""
    bubble = view.add("assistant", text)
    qtbot.waitExposed(view)
    view.grab()
    bubble.body.grab()
    return bubble


HOSTILE_PICTURES = {
    "markdown image": "Look: ![a cat]({target}) here.",
    "raw img": 'Look: <img src="{target}"> here.',
    "background image": '<span style="background-image:url({target})">styled</span>',
    "table background": '<table background="{target}"><tr><td>cell</td></tr></table>',
    "stylesheet": '<link rel="stylesheet" href="{target}">text',
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("form", HOSTILE_PICTURES)
def test_a_picture_in_an_answer_never_opens_the_file(qtbot, view, tmp_path, form):
    fifo = FifoWatch(tmp_path / "picture.png")
    try:
        body = shown(qtbot, view, HOSTILE_PICTURES[form].format(target=fifo.path)).body.text()
    finally:
        view.clear()  # gone before the watcher is: a label that reads the FIFO may not block later tests
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        readers = fifo.stop()
    assert readers == 0, f"showing the answer opened {fifo.path}"
    assert resource_references(body) == []
    assert str(fifo.path) in visible_text(body)  # the address is shown, as text


def test_markdown_images_become_their_alt_text_and_address(qtbot, view):
    bubble = shown(qtbot, view, 'Here: ![a *red* cat](http://127.0.0.1:1/x.png "title") and ![](/dev/zero).')
    text = visible_text(bubble.body.text())
    assert "a red cat" in text and "http://127.0.0.1:1/x.png" in text
    assert resource_references(bubble.body.text()) == []


def test_a_large_png_in_an_answer_is_not_laid_out(qtbot, view, tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (4000, 3000), (200, 30, 30)).save(big)
    bubble = shown(qtbot, view, f"![the big one]({big})")
    assert bubble.body.heightForWidth(600) < 200  # a 3000 px tall picture would be in the layout
    assert "the big one" in visible_text(bubble.body.text()) and str(big) in visible_text(bubble.body.text())


DEV_ZERO = textwrap.dedent("""
    import resource
    import sys

    from PySide6.QtWidgets import QApplication

    from smolchat.ui.views.chat_view import ChatView

    qt = QApplication([])
    # Reading /dev/zero would grow until this limit, then abort: the test fails instead of the machine.
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + (512 << 20), resource.RLIM_INFINITY))
    view = ChatView()
    view.show()
    bubble = view.add("assistant", "![zeros](/dev/zero)")
    qt.processEvents()
    view.grab()
    print(bubble.body.text())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and /dev/zero")
def test_an_answer_pointing_at_dev_zero_is_shown(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", DEV_ZERO],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "zeros" in visible_text(done.stdout) and "/dev/zero" in visible_text(done.stdout)


def test_code_blocks_stay_highlighted_and_escaped(qtbot, view):
    bubble = shown(qtbot, view, "Try:\n\n```python\nprint('<img src=\"/dev/zero\">')\n```\n")
    (block,) = bubble.code_blocks
    assert "print('<img src=\"/dev/zero\">')" in visible_text(block.text.text())
    assert "<span style=" in block.text.text()  # Pygments' colours
    assert resource_references(block.text.text()) == [] and resource_references(bubble.body.text()) == []


def test_fuzzed_answers_never_carry_resource_references(qtbot):
    """Markdown and HTML pieces shuffled together, seeded: whatever the mix, nothing to load."""
    pieces = [
        "![a](/dev/zero)",
        "<img src=x>",
        "<img src='y'>",
        '<p style="background-image: url(z)">',
        "**b**",
        "[l](file:///etc/passwd)",
        "```\n<img src=q>\n```\n",
        "<table background=t><tr><td>",
        "\n\n",
        "> ",
        "| a | b |\n|---|---|\n| ![c](d) | e |\n",
        "`<img src=c>`",
        "<",
        ">",
        "![",
        "](",
        ")",
        '"',
        "*",
        "\n",
    ]
    rng = np.random.default_rng(11)
    for _ in range(300):
        text = "".join(rng.choice(pieces, size=int(rng.integers(1, 25))))
        assert resource_references(markdown_html(text)) == [], text


# -- links ---------------------------------------------------------------------------------------


class OpenedUrls(QObject):
    """Stands in for the browser and every other program a link could start."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url.toString())


@pytest.fixture
def opened():
    """Every URL handed to QDesktopServices, whoever hands it (Qt's own label included)."""
    recorder = OpenedUrls()
    schemes = ["file", "http", "https", "mailto", "smb", "javascript"]
    for scheme in schemes:
        QDesktopServices.setUrlHandler(scheme, recorder, "open")
    yield recorder.urls
    for scheme in schemes:
        QDesktopServices.unsetUrlHandler(scheme)


def click_first_link(qtbot, bubble) -> None:
    """A click on the first characters of the answer, where its link is."""
    body = bubble.body
    at = body.contentsRect().topLeft() + QPoint(4, body.fontMetrics().height() // 2)
    qtbot.mouseClick(body, Qt.MouseButton.LeftButton, pos=at)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("https://example.org/a?b=c", True),
        ("HTTP://example.org", True),
        ("mailto:someone@example.org", True),
        ("file:///usr/bin/xterm", False),
        ("smb://host/share", False),
        ("javascript:alert(1)", False),
        ("https:///no-host", False),
        ("relative/page.html", False),
        ("", False),
    ],
)
def test_only_web_and_mail_links_may_open(address, allowed):
    assert may_open(QUrl(address)) is allowed


def test_a_file_link_is_never_opened_only_copied(qtbot, view, opened):
    bubble = shown(qtbot, view, "[https://example.org](file:///usr/bin/xterm) is a fine page")
    click_first_link(qtbot, bubble)
    dialog = view.link_dialog
    assert "file:///usr/bin/xterm" in dialog.informativeText()
    assert dialog.open_button is None and "web" in dialog.text()  # says why it won't open
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == "file:///usr/bin/xterm"
    assert opened == []


def test_a_web_link_opens_only_after_confirming(qtbot, view, opened):
    bubble = shown(qtbot, view, "[example.org](https://evil.example/path?q=1) says hi")
    click_first_link(qtbot, bubble)
    assert opened == []
    assert "https://evil.example/path?q=1" in view.link_dialog.informativeText()  # not the text it hid behind
    view.link_dialog.cancel_button.click()
    assert opened == []

    click_first_link(qtbot, bubble)
    view.link_dialog.open_button.click()
    assert opened == ["https://evil.example/path?q=1"]


def test_copy_link_copies_without_opening(qtbot, view, opened):
    bubble = shown(qtbot, view, "[mail me](mailto:someone@example.org)")
    click_first_link(qtbot, bubble)
    view.link_dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == "mailto:someone@example.org" and opened == []


def test_hovering_a_link_shows_where_it_goes(qtbot, view):
    bubble = shown(qtbot, view, "[example.org](https://evil.example/x)")
    bubble.body.linkHovered.emit("https://evil.example/x")
    assert "https://evil.example/x" in bubble.body.toolTip()
    bubble.body.linkHovered.emit("")
    assert bubble.body.toolTip() == ""
