"""The conversation: the user's messages with their pictures, the model's answers as Markdown
with highlighted code, each answer's figures, and copy / regenerate / edit.

An answer is hostile text. Its Markdown is parsed with raw HTML off, in a document that never
loads a resource, and each picture it names becomes text (its alt text and address), so the rich
text handed to the label names nothing to fetch: no file, device, FIFO or server. Its links open
only after the user has seen the full address, and only web and mail addresses.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound
from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QGuiApplication,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
)
from PySide6.QtWidgets import (
    QAbstractButton,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from smolchat.engine.figures import describe_stats
from smolchat.ui.views.picture import Picture

_FENCE = re.compile(r"^```([\w+#.-]*)[^\n]*\n(.*?)(?:^```[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_CODE_STYLE = HtmlFormatter(noclasses=True, style="friendly", nowrap=True)
STATUS_NOTES = {"stopped": "stopped", "interrupted": "interrupted: SmolChat closed before the answer ended"}
PICTURE_SIDE = 160
# GitHub's dialect (tables, strike-through, autolinks) with HTML shown as the text it is.
_MARKDOWN = QTextDocument.MarkdownFeature.MarkdownDialectGitHub | QTextDocument.MarkdownFeature.MarkdownNoHTML
LINK_SCHEMES = ("http", "https", "mailto")


def markdown_html(text: str) -> str:
    """Markdown as Qt rich text, fenced code highlighted by Pygments."""
    parts, last = [], 0
    for match in _FENCE.finditer(text):
        parts.append(_prose(text[last : match.start()]))
        parts.append(_code(match[2], match[1]))
        last = match.end()
    parts.append(_prose(text[last:]))
    return "".join(parts)


class _InertDocument(QTextDocument):
    """A document that never fetches what its text names (Qt would read local files by default)."""

    def loadResource(self, kind: int, name: QUrl) -> None:  # noqa: N802 (Qt's name)
        return None


def _prose(text: str) -> str:
    if not text.strip():
        return ""
    doc = _InertDocument()
    doc.setMarkdown(text, _MARKDOWN)
    _pictures_as_text(doc)
    body = doc.toHtml()
    return body[body.find("<body") :].split(">", 1)[1].rsplit("</body>", 1)[0]


def _pictures_as_text(doc: QTextDocument) -> None:
    """Each picture becomes what it stands for, in italics: its alt text and its address."""
    pictures: list[tuple[int, int, str, str]] = []  # start, end, alt text, address
    block = doc.begin()
    while block.isValid():
        fragments = block.begin()
        while not fragments.atEnd():
            fragment = fragments.fragment()
            if fragment.charFormat().isImageFormat():
                image = fragment.charFormat().toImageFormat()
                alt = image.stringProperty(QTextFormat.Property.ImageAltText)
                start, end = fragment.position(), fragment.position() + fragment.length()
                if pictures and pictures[-1][1] == start and pictures[-1][3] == image.name():
                    start, _, earlier, _ = pictures.pop()  # alt text with emphasis comes in pieces
                    alt = earlier + alt
                pictures.append((start, end, alt, image.name()))
            fragments += 1
        block = block.next()
    cursor = QTextCursor(doc)
    italic = QTextCharFormat()
    italic.setFontItalic(True)
    for start, end, alt, address in reversed(pictures):
        cursor.setPosition(start)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        cursor.insertText(f"[picture: {alt.strip()} — {address}]" if alt.strip() else f"[picture: {address}]", italic)


def may_open(url: QUrl) -> bool:
    """Whether a link in an answer may go to the browser or the mail program (once the user agrees):
    web and mail addresses only; file:, smb: and other schemes can start programs or reach shares."""
    scheme = url.scheme().lower()
    return url.isValid() and scheme in LINK_SCHEMES and (scheme == "mailto" or bool(url.host()))


def link_address(address: str) -> str:
    """A link's target as it will be opened or copied: percent-encoded, with an international domain
    in its ASCII form, so no lookalike letter or hidden character can disguise it."""
    url = QUrl(address)
    return bytes(url.toEncoded()).decode("ascii") if url.isValid() else address


class LinkDialog(QMessageBox):
    """Where a link in an answer leads, in full, and what to do: Open (web and mail only), Copy link, Cancel."""

    def __init__(self, address: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.url = QUrl(address)
        self.address = link_address(address)
        self.setWindowTitle("Link in the answer")
        self.setTextFormat(Qt.TextFormat.PlainText)  # the address is the answer's text: never markup
        self.setInformativeText(self.address)
        self.open_button: QPushButton | None = None
        if may_open(self.url):
            self.setIcon(QMessageBox.Icon.Question)
            self.setText("Open this address?")
            self.open_button = self.addButton("Open", QMessageBox.ButtonRole.AcceptRole)
        else:
            self.setIcon(QMessageBox.Icon.Warning)
            self.setText(
                "SmolChat opens only web (http, https) and e-mail (mailto) links from an answer, "
                "so this one can only be copied."
            )
        self.copy_button = self.addButton("Copy link", QMessageBox.ButtonRole.ActionRole)
        self.cancel_button = self.addButton(QMessageBox.StandardButton.Cancel)
        self.setDefaultButton(self.cancel_button)  # Enter never opens by accident
        self.buttonClicked.connect(self._act)

    def _act(self, button: QAbstractButton) -> None:
        if button is self.open_button:
            QDesktopServices.openUrl(self.url)
        elif button is self.copy_button:
            QGuiApplication.clipboard().setText(self.address)


def _code(code: str, language: str) -> str:
    try:
        lexer = get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    return (
        f'<pre style="background:#f6f8fa; color:#24292f; padding:6px; font-family:monospace">'
        f"{highlight(code, lexer, _CODE_STYLE) if code else html.escape(code)}</pre>"
    )


class MessageBubble(QFrame):
    copy_requested = Signal(str)

    def __init__(self, role: str, text: str, images: list[Path] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.text = text
        self.pictures: list[Picture] = []
        self.setObjectName("userBubble" if role == "user" else "answerBubble")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        who = QLabel("<b>You</b>" if role == "user" else "<b>SmolChat</b>")
        self.status = QLabel("")
        self.status.setObjectName("messageStatus")
        copy = _flat_button(
            "Copy", "Copy message", "Copy this message's text", lambda: QGuiApplication.clipboard().setText(self.text)
        )
        self.actions = QHBoxLayout()
        head = QHBoxLayout()
        head.addWidget(who)
        head.addWidget(self.status)
        head.addStretch(1)
        head.addLayout(self.actions)
        head.addWidget(copy)
        self.body = QLabel()
        self.body.setTextFormat(Qt.TextFormat.RichText)
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )
        self.body.setOpenExternalLinks(False)  # the view asks first (LinkDialog)
        self.body.linkHovered.connect(self._show_link_target)
        self.body.setAccessibleName("Message text")
        self.figures = QLabel("")
        self.figures.setObjectName("answerFigures")
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        if images:
            row = QHBoxLayout()
            self.pictures = [Picture(path, PICTURE_SIDE) for path in images]
            for picture in self.pictures:
                row.addWidget(picture)
            row.addStretch(1)
            layout.addLayout(row)
        layout.addWidget(self.body)
        layout.addWidget(self.figures)
        self.set_text(text)

    def set_text(self, text: str) -> None:
        """The whole text, as Markdown for answers."""
        self.text = text
        self.body.setTextFormat(Qt.TextFormat.RichText)
        self.body.setText(markdown_html(text) if self.role != "user" else html.escape(text).replace("\n", "<br>"))

    def append(self, piece: str) -> None:
        """Streaming: plain text is cheap to lay out again and again; the Markdown comes with
        ``set_text`` when the answer ends, so repainting never slows the model down."""
        self.text += piece
        if self.body.textFormat() != Qt.TextFormat.PlainText:
            self.body.setTextFormat(Qt.TextFormat.PlainText)
        self.body.setText(self.text)

    def _show_link_target(self, address: str) -> None:
        """Hovering a link shows where it really leads, whatever its text says."""
        self.body.setToolTip(link_address(address) if address else "")

    def set_status(self, status: str) -> None:
        note = STATUS_NOTES.get(status, "")
        self.status.setText(f"<i>({note})</i>" if note else "")

    def set_figures(self, stats: dict | None) -> None:
        self.figures.setText(describe_stats(stats) if stats else "")

    def add_action(self, button: QPushButton) -> None:
        self.actions.addWidget(button)


class ChatView(QScrollArea):
    regenerate_requested = Signal()
    edit_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setAccessibleName("Conversation")
        inner = QWidget()
        self.column = QVBoxLayout(inner)
        self.column.addStretch(1)
        self.setWidget(inner)
        self.bubbles: list[MessageBubble] = []
        self.empty = QLabel("Drop a picture below and ask about it.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setObjectName("emptyChat")
        self.column.insertWidget(0, self.empty)
        self.link_dialog: LinkDialog | None = None

    def clear(self) -> None:
        for bubble in self.bubbles:
            bubble.deleteLater()
        self.bubbles = []
        self.empty.show()

    def add(
        self, role: str, text: str, images: list[Path] = (), status: str = "complete", stats: dict | None = None
    ) -> MessageBubble:
        self.empty.hide()
        bubble = MessageBubble(role, text, list(images))
        bubble.set_status(status)
        bubble.set_figures(stats)
        bubble.body.linkActivated.connect(self.ask_about_link)
        self.column.insertWidget(self.column.count() - 1, bubble)
        self.bubbles.append(bubble)
        self._update_actions()
        self.scroll_to_end()
        return bubble

    def ask_about_link(self, address: str) -> None:
        """A link in a message was clicked: show where it leads and let the user choose."""
        self.link_dialog = LinkDialog(address, self)
        self.link_dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.link_dialog.open()

    def remove_from(self, index: int) -> None:
        for bubble in self.bubbles[index:]:
            bubble.deleteLater()
        del self.bubbles[index:]
        self.empty.setVisible(not self.bubbles)
        self._update_actions()

    def remove_last(self) -> None:
        self.remove_from(len(self.bubbles) - 1)

    def _update_actions(self) -> None:
        """Regenerate on the last answer, Edit on the last question."""
        for bubble in self.bubbles:
            while bubble.actions.count():
                bubble.actions.takeAt(0).widget().deleteLater()
        answers = [b for b in self.bubbles if b.role == "assistant"]
        questions = [b for b in self.bubbles if b.role == "user"]
        if answers and answers[-1] is self.bubbles[-1]:
            answers[-1].add_action(
                _flat_button(
                    "Regenerate", "Regenerate the answer", "Write this answer again", self.regenerate_requested
                )
            )
        if questions:
            questions[-1].add_action(
                _flat_button(
                    "Edit",
                    "Edit the last message",
                    "Put the last message back in the composer to change and send it again",
                    self.edit_requested,
                )
            )

    def scroll_to_end(self) -> None:
        QTimer.singleShot(0, lambda: self.verticalScrollBar().setValue(self.verticalScrollBar().maximum()))


def _flat_button(text: str, name: str, tip: str, slot) -> QPushButton:
    button = QPushButton(text)
    button.setAccessibleName(name)
    button.setToolTip(tip)
    button.setFlat(True)
    button.clicked.connect(slot)
    return button
