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
from smolchat.ui import theme
from smolchat.ui.views.picture import Picture

_FENCE = re.compile(r"^```([\w+#.-]*)[^\n]*\n(.*?)(?:^```[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
STATUS_NOTES = {"stopped": "stopped", "interrupted": "interrupted: SmolChat closed before the answer ended"}
PICTURE_SIDE = 160
# GitHub's dialect (tables, strike-through, autolinks) with HTML shown as the text it is.
_MARKDOWN = QTextDocument.MarkdownFeature.MarkdownDialectGitHub | QTextDocument.MarkdownFeature.MarkdownNoHTML
LINK_SCHEMES = ("http", "https", "mailto")


def markdown_html(text: str) -> str:
    """Markdown as Qt rich text, fenced code highlighted by Pygments: what the answer's labels
    show, all in one piece."""
    return "".join(_prose(content) if kind == PROSE else _code(content, kind) for kind, content in segments(text))


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
    """A fenced block as rich text in the theme's code colours, lines wrapped rather than
    widening the conversation."""
    colours = theme.current()
    try:
        lexer = get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    formatter = _formatters.get(colours.code_style)
    if formatter is None:
        formatter = _formatters[colours.code_style] = HtmlFormatter(
            noclasses=True, style=colours.code_style, nowrap=True
        )
    return (
        f'<pre style="background:{colours.code_background}; color:{colours.code_text}; padding:6px; '
        f'white-space:pre-wrap; font-family:monospace">'
        f"{highlight(code, lexer, formatter) if code else html.escape(code)}</pre>"
    )


_formatters: dict[str, HtmlFormatter] = {}


def segments(text: str) -> list[tuple[str, str]]:
    """An answer cut into its prose and its fenced code blocks, in order: ("prose", markdown)
    or (language, code) pairs; a language of "" for a block that names none."""
    parts: list[tuple[str, str]] = []
    last = 0
    for match in _FENCE.finditer(text):
        if text[last : match.start()].strip():
            parts.append((PROSE, text[last : match.start()]))
        parts.append((match[1], match[2]))
        last = match.end()
    if text[last:].strip() or not parts:
        parts.append((PROSE, text[last:]))
    return parts


PROSE = "\0prose"  # never a fence's language: a fence's language is one word


class CodeBlock(QFrame):
    """A fenced code block of an answer: its language, a Copy button, the highlighted code."""

    def __init__(self, code: str, language: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.code = code
        self.language = language
        self.setObjectName("codeBlock")
        name = QLabel(language or "code")
        name.setTextFormat(Qt.TextFormat.PlainText)  # the answer's own word: never markup
        name.setObjectName("codeLanguage")
        self.copy_button = _flat_button(
            "Copy", f"Copy the {language or 'code'} block", "Copy this code, exactly as written", self.copy
        )
        head = QHBoxLayout()
        head.setContentsMargins(8, 2, 4, 0)
        head.addWidget(name)
        head.addStretch(1)
        head.addWidget(self.copy_button)
        self.text = QLabel(_code(code, language))
        self.text.setObjectName("codeText")
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setAccessibleName(f"{language or 'Code'} block")
        self.text.setContentsMargins(8, 0, 8, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 6)
        layout.setSpacing(0)
        layout.addLayout(head)
        layout.addWidget(self.text)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.code)
        self.copy_button.setText("Copied")
        QTimer.singleShot(1500, self, lambda: self.copy_button.setText("Copy"))

    def repaint_theme(self) -> None:
        self.text.setText(_code(self.code, self.language))


class MessageBubble(QFrame):
    """One message: who wrote it, its pictures, its text (an answer's as Markdown, its code
    blocks with a Copy button each), its figures, and Copy (plus Regenerate or Edit on the last)."""

    copy_requested = Signal(str)
    link_clicked = Signal(str)
    picture_clicked = Signal(Path)

    def __init__(self, role: str, text: str, images: list[Path] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.text = text
        self.pictures: list[Picture] = []
        self.labels: list[QLabel] = []  # the prose, between code blocks
        self.code_blocks: list[CodeBlock] = []
        self.setObjectName("userBubble" if role == "user" else "answerBubble")
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
        self.body = self._label()
        self.parts = QVBoxLayout()
        self.parts.setSpacing(6)
        self.parts.addWidget(self.body)
        self.figures = QLabel("")
        self.figures.setObjectName("answerFigures")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.addLayout(head)
        if images:
            row = QHBoxLayout()
            self.pictures = [Picture(path, PICTURE_SIDE) for path in images]
            for picture in self.pictures:
                picture.setCursor(Qt.CursorShape.PointingHandCursor)
                picture.setToolTip(f"{picture.path.name}: click to see it full size")
                picture.clicked.connect(self.picture_clicked)
                row.addWidget(picture)
            row.addStretch(1)
            layout.addLayout(row)
        layout.addLayout(self.parts)
        layout.addWidget(self.figures)
        self.figures.hide()
        self.set_text(text)

    def _label(self) -> QLabel:
        label = QLabel()
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setWordWrap(True)
        label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )
        label.setOpenExternalLinks(False)  # the view asks first (LinkDialog)
        label.linkHovered.connect(lambda address, label=label: self._show_link_target(label, address))
        label.linkActivated.connect(self.link_clicked)
        label.setAccessibleName("Message text")
        self.labels.append(label)
        return label

    def set_text(self, text: str) -> None:
        """The whole text, as Markdown for answers, each code block a widget of its own."""
        self.text = text
        self._clear_parts()
        self.body.setTextFormat(Qt.TextFormat.RichText)
        if self.role == "user":
            self.body.setText(html.escape(text).replace("\n", "<br>"))
            return
        for n, (kind, content) in enumerate(segments(text)):
            if kind == PROSE:
                label = self.body if n == 0 else self._label()
                label.setText(_prose(content))
                if label is not self.body:
                    self.parts.addWidget(label)
            else:
                if n == 0:  # the answer opens with code: no prose above it
                    self.body.hide()
                block = CodeBlock(content, kind)
                self.code_blocks.append(block)
                self.parts.addWidget(block)

    def _clear_parts(self) -> None:
        for widget in [*self.code_blocks, *self.labels[1:]]:
            widget.hide()
            widget.deleteLater()
        self.code_blocks, self.labels = [], [self.body]
        self.body.show()

    def repaint_theme(self) -> None:
        """Code colours are written into the rich text: write it again in the theme now."""
        for block in self.code_blocks:
            block.repaint_theme()

    def append(self, piece: str) -> None:
        """Streaming: plain text is cheap to lay out again and again; the Markdown comes with
        ``set_text`` when the answer ends, so repainting never slows the model down."""
        self.text += piece
        if self.body.textFormat() != Qt.TextFormat.PlainText:
            self._clear_parts()
            self.body.setTextFormat(Qt.TextFormat.PlainText)
        self.body.setText(self.text)

    def _show_link_target(self, label: QLabel, address: str) -> None:
        """Hovering a link shows where it really leads, whatever its text says."""
        label.setToolTip(link_address(address) if address else "")

    def set_status(self, status: str) -> None:
        note = STATUS_NOTES.get(status, "")
        self.status.setText(f"<i>({note})</i>" if note else "")

    def set_figures(self, stats: dict | None) -> None:
        self.figures.setText(describe_stats(stats) if stats else "")
        self.figures.setVisible(bool(stats))

    def add_action(self, button: QPushButton) -> None:
        self.actions.addWidget(button)


class ChatView(QScrollArea):
    """The conversation, newest at the bottom. It follows a streaming answer unless the user
    has scrolled up to read; then "Jump to latest" brings them back."""

    regenerate_requested = Signal()
    edit_requested = Signal()
    picture_clicked = Signal(Path)

    FOLLOW_MARGIN = 24  # within this many pixels of the bottom counts as at the bottom

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAccessibleName("Conversation")
        inner = QWidget()
        inner.setObjectName("conversation")
        self.column = QVBoxLayout(inner)
        self.column.setSpacing(10)
        self.column.setContentsMargins(16, 12, 16, 12)
        self.column.addStretch(1)
        self.setWidget(inner)
        self.bubbles: list[MessageBubble] = []
        self._rows: list[QWidget] = []
        self.empty = QLabel("Drop a picture below and ask about it.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setObjectName("emptyChat")
        self.column.insertWidget(0, self.empty)
        self.link_dialog: LinkDialog | None = None
        self.following = True
        self.jump_button = QPushButton("↓ Jump to latest", self.viewport())
        self.jump_button.setObjectName("jumpToLatest")
        self.jump_button.setAccessibleName("Jump to latest")
        self.jump_button.setToolTip("Scroll to the newest message and follow the answer again")
        self.jump_button.clicked.connect(self.scroll_to_end)
        self.jump_button.hide()
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(self._grew)

    # -- messages ------------------------------------------------------------------------------

    def clear(self) -> None:
        for row in self._rows:
            row.deleteLater()
        self.bubbles, self._rows = [], []
        self.empty.show()
        self.following = True
        self.jump_button.hide()

    def add(
        self, role: str, text: str, images: list[Path] = (), status: str = "complete", stats: dict | None = None
    ) -> MessageBubble:
        self.empty.hide()
        bubble = MessageBubble(role, text, list(images))
        bubble.set_status(status)
        bubble.set_figures(stats)
        bubble.link_clicked.connect(self.ask_about_link)
        bubble.picture_clicked.connect(self.picture_clicked)
        row = QWidget()
        line = QHBoxLayout(row)
        line.setContentsMargins(0, 0, 0, 0)
        if role == "user":  # the user's own words on the right, as in every messenger
            line.addStretch(1)
            line.addWidget(bubble)
        else:
            line.addWidget(bubble, 1)
        self._fit_width(bubble)
        self.column.insertWidget(self.column.count() - 1, row)
        self.bubbles.append(bubble)
        self._rows.append(row)
        self._update_actions()
        self.scroll_to_end()
        return bubble

    def _fit_width(self, bubble: MessageBubble) -> None:
        width = self.viewport().width() - 32
        bubble.setMaximumWidth(max(200, int(width * (0.78 if bubble.role == "user" else 1.0))))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        for bubble in self.bubbles:
            self._fit_width(bubble)
        self._place_jump_button()

    def repaint_theme(self) -> None:
        for bubble in self.bubbles:
            bubble.repaint_theme()

    def ask_about_link(self, address: str) -> None:
        """A link in a message was clicked: show where it leads and let the user choose."""
        self.link_dialog = LinkDialog(address, self)
        self.link_dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.link_dialog.open()

    def remove_from(self, index: int) -> None:
        for row in self._rows[index:]:
            row.deleteLater()
        del self.bubbles[index:]
        del self._rows[index:]
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
                    "Put the last message back in the composer to change and send it again (Up in an empty box)",
                    self.edit_requested,
                )
            )

    # -- following the answer ----------------------------------------------------------------------

    def scroll_to_end(self) -> None:
        """Show the newest message and follow what is written next."""
        self.following = True
        self.jump_button.hide()
        QTimer.singleShot(0, self, lambda: self.verticalScrollBar().setValue(self.verticalScrollBar().maximum()))

    def _at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - self.FOLLOW_MARGIN

    def _scrolled(self, _value: int) -> None:
        self.following = self._at_bottom()
        self.jump_button.setVisible(not self.following and bool(self.bubbles))
        if self.jump_button.isVisible():
            self._place_jump_button()
            self.jump_button.raise_()

    def _grew(self, _minimum: int, maximum: int) -> None:
        """The conversation grew (an answer streams): keep the bottom in view while following."""
        if self.following:
            self.verticalScrollBar().setValue(maximum)

    def _place_jump_button(self) -> None:
        self.jump_button.adjustSize()
        area = self.viewport().rect()
        self.jump_button.move(
            (area.width() - self.jump_button.width()) // 2, area.height() - self.jump_button.height() - 12
        )


def _flat_button(text: str, name: str, tip: str, slot) -> QPushButton:
    button = QPushButton(text)
    button.setAccessibleName(name)
    button.setToolTip(tip)
    button.setFlat(True)
    button.clicked.connect(slot)
    return button
