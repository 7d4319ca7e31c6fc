"""Light and dark: the window's colours, its style sheet, and which of the two the desktop wants.

Every colour a view paints with comes from here, so the two themes stay complete and readable
(``contrast`` is the WCAG ratio; the tests hold text to 4.5:1 on what it is drawn on).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

LIGHT, DARK = "light", "dark"


@dataclass(frozen=True)
class Colours:
    name: str
    window: str  # behind everything
    base: str  # inside fields and lists
    text: str
    muted: str  # figures, costs, group headings: quiet but readable
    accent: str  # selection, focus, the drop zone
    accent_text: str  # text on the accent
    link: str
    border: str
    user_bubble: str
    user_text: str
    answer_bubble: str
    code_background: str
    code_text: str
    code_style: str  # the Pygments style of code blocks
    warn: str  # "tight", a context nearly full
    error: str  # "does not fit", a context overflowing
    ok: str  # "fits"
    banner: str  # an error banner's background
    banner_text: str
    drop: str  # the drop zone's background while a file is dragged over

    def fit(self, verdict: str) -> str:
        """The colour of a model's "fits / tight / does not fit"."""
        return {"fits": self.ok, "tight": self.warn, "does not fit": self.error}.get(verdict, self.text)


LIGHT_COLOURS = Colours(
    name=LIGHT,
    window="#f4f5f7",
    base="#ffffff",
    text="#1f2328",
    muted="#57606a",
    accent="#0b5cc7",
    accent_text="#ffffff",
    link="#0a53be",
    border="#d0d7de",
    user_bubble="#dbe9ff",
    user_text="#0b1f3a",
    answer_bubble="#ffffff",
    code_background="#f6f8fa",
    code_text="#24292f",
    code_style="friendly",
    warn="#8a5300",
    error="#b3261e",
    ok="#1b6e20",
    banner="#fdecea",
    banner_text="#5f1410",
    drop="#e3eefc",
)

DARK_COLOURS = Colours(
    name=DARK,
    window="#1b1c1f",
    base="#24262a",
    text="#e6e7e9",
    muted="#a3a8b0",
    accent="#4d8ff7",
    accent_text="#0b1220",
    link="#86b7ff",
    border="#3a3e45",
    user_bubble="#2a3a55",
    user_text="#eef3ff",
    answer_bubble="#24262a",
    code_background="#0d1117",
    code_text="#e6edf3",
    code_style="github-dark",
    warn="#f0b45b",
    error="#ff8a80",
    ok="#7bd88f",
    banner="#4a1f1f",
    banner_text="#ffdad6",
    drop="#20324f",
)

THEMES = {LIGHT: LIGHT_COLOURS, DARK: DARK_COLOURS}

# Where text meets what it is drawn on: (text, background) pairs that must stay readable.
READABLE_PAIRS = (
    ("text", "window"),
    ("text", "base"),
    ("muted", "window"),
    ("muted", "base"),
    ("link", "base"),
    ("link", "answer_bubble"),
    ("user_text", "user_bubble"),
    ("text", "answer_bubble"),
    ("muted", "answer_bubble"),
    ("muted", "user_bubble"),
    ("code_text", "code_background"),
    ("muted", "code_background"),
    ("accent_text", "accent"),
    ("warn", "base"),
    ("error", "base"),
    ("ok", "base"),
    ("warn", "window"),
    ("error", "window"),
    ("banner_text", "banner"),
    ("text", "drop"),
)


def contrast(first: str, second: str) -> float:
    """The WCAG 2 contrast ratio of two colours (1 to 21)."""

    def luminance(colour: str) -> float:
        c = QColor(colour)

        def linear(v: float) -> float:
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        return 0.2126 * linear(c.redF()) + 0.7152 * linear(c.greenF()) + 0.0722 * linear(c.blueF())

    a, b = sorted((luminance(first), luminance(second)), reverse=True)
    return (a + 0.05) / (b + 0.05)


_current = LIGHT_COLOURS
_applied: str | None = None  # the theme the application is painted in, once ``apply`` ran


def current() -> Colours:
    """The colours the window paints with now."""
    return _current


def applied() -> str | None:
    """The theme the application is painted in (None: not painted yet)."""
    return _applied


def system_scheme() -> str:
    """What the desktop asks for (Qt 6's style hints); light where it does not say."""
    scheme = QGuiApplication.styleHints().colorScheme()
    return DARK if scheme == Qt.ColorScheme.Dark else LIGHT


def resolve(choice: str) -> str:
    """``choice``: "system", "light" or "dark"; the theme it means now."""
    return choice if choice in THEMES else system_scheme()


def apply(name: str) -> Colours:
    """Paint the whole application in theme ``name`` (light or dark)."""
    global _current, _applied
    colours = THEMES[name]
    _current = colours
    app = QApplication.instance()
    if isinstance(app, QApplication):
        _applied = name
        if app.style().name().lower() != "fusion":
            app.setStyle("Fusion")  # the one style that draws a palette faithfully on every desktop
        app.setPalette(palette(colours))
        app.setStyleSheet(style_sheet(colours))
    return colours


def palette(c: Colours) -> QPalette:
    p = QPalette()
    role = QPalette.ColorRole
    for r, colour in (
        (role.Window, c.window),
        (role.WindowText, c.text),
        (role.Base, c.base),
        (role.AlternateBase, c.window),
        (role.Text, c.text),
        (role.Button, c.base),
        (role.ButtonText, c.text),
        (role.ToolTipBase, c.base),
        (role.ToolTipText, c.text),
        (role.PlaceholderText, c.muted),
        (role.Highlight, c.accent),
        (role.HighlightedText, c.accent_text),
        (role.Link, c.link),
        (role.LinkVisited, c.link),
        (role.Mid, c.border),
        (role.Midlight, c.border),
        (role.BrightText, c.error),
    ):
        p.setColor(r, QColor(colour))
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, r, QColor(c.muted))
    return p


def style_sheet(c: Colours) -> str:
    return f"""
QFrame#userBubble {{ background: {c.user_bubble}; border: none; border-radius: 14px; }}
QFrame#userBubble QLabel {{ color: {c.user_text}; }}
QFrame#answerBubble {{ background: {c.answer_bubble}; border: 1px solid {c.border}; border-radius: 14px; }}
QFrame#codeBlock {{ background: {c.code_background}; border: 1px solid {c.border}; border-radius: 8px; }}
QFrame#codeBlock QLabel#codeText {{ color: {c.code_text}; }}
QLabel#codeLanguage {{ color: {c.muted}; }}
QLabel#answerFigures, QLabel#thumbnailCost, QLabel#messageStatus, QLabel#groupHeading {{ color: {c.muted}; }}
QFrame#userBubble QLabel#messageStatus {{ color: {c.user_text}; }}
QLabel#answerFigures {{ font-size: 11px; }}
QLabel#meterNote {{ color: {c.warn}; }}
QLabel#emptyChat {{ color: {c.muted}; font-size: 15px; }}
QFrame#banner {{ background: {c.banner}; border-radius: 8px; }}
QFrame#banner QLabel {{ color: {c.banner_text}; }}
QFrame#banner[kind="info"] {{ background: {c.drop}; }}
QFrame#banner[kind="info"] QLabel {{ color: {c.text}; }}
QWidget#composer[dragging="true"] {{ background: {c.drop}; border: 2px dashed {c.accent}; border-radius: 10px; }}
QPushButton#jumpToLatest {{ background: {c.accent}; color: {c.accent_text}; border-radius: 12px; padding: 4px 12px; }}
QListWidget#conversations::item {{ padding: 3px 4px; }}
QProgressBar[level="near"]::chunk {{ background: {c.warn}; }}
QProgressBar[level="over"]::chunk {{ background: {c.error}; }}
"""
