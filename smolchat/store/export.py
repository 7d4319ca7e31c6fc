"""A conversation exported as Markdown (images copied alongside) or JSON."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import quote

from smolchat.engine.figures import describe_stats
from smolchat.store.conversations import COMPLETE, Conversation, StoredMessage

ROLE_NAMES = {"user": "You", "assistant": "SmolChat", "system": "System"}

# Characters that start Markdown inside a line, and those that start a block at a line's beginning.
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>&#~|])")
_BLOCK_MARKUP = re.compile(r"^([ \t]*)([-+=]|\d+(?=[.)]))", re.MULTILINE)
_FENCE = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")
# Raw HTML blocks that only a marker ends (not a blank line), by how they start.
_HTML_BLOCKS = (
    (re.compile(r" {0,3}<(script|pre|style|textarea)(?:[\s>]|$)", re.IGNORECASE), None),
    (re.compile(r" {0,3}<!--"), "-->"),
    (re.compile(r" {0,3}<\?"), "?>"),
    (re.compile(r" {0,3}<!\[CDATA\["), "]]>"),
    (re.compile(r" {0,3}<![A-Za-z]"), ">"),
)


def to_markdown(conversation: Conversation, messages: list[StoredMessage], path: Path) -> Path:
    """Write ``path`` (.md) and a folder of its images next to it; returns ``path``.

    The folder is named after the file, in letters, digits, ``-`` and ``_`` only, so it stays beside
    it, and the links are percent-encoded: any CommonMark reader (Qt's too) finds every picture. A
    picture whose file is gone is named in the text instead."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.with_name(_safe_name(path.stem, "conversation") + "-images")
    copied: dict[Path, str] = {}
    lines = [f"# {_plain(' '.join(conversation.title.split()) or 'Untitled')}", ""]
    for m in messages:
        note = f" ({_plain(m.status)})" if m.status != COMPLETE else ""
        lines += [f"**{_plain(ROLE_NAMES.get(m.role, m.role))}**{note}", ""]
        for image in m.images:
            name = _copy_image(image, folder, copied)
            lines += [
                f"![{_plain(name)}]({quote(folder.name)}/{quote(name)})"
                if name
                else f"*(picture missing: {_plain(image.name)})*",
                "",
            ]
        text = m.text.replace("\r\n", "\n").replace("\r", "\n")
        # the user's words as typed (the window shows them as plain text); answers are Markdown
        lines += [_plain(text) if m.role == "user" else _closed(text), ""]
        if m.stats and (figures := describe_stats(m.stats)):
            lines += [f"*{figures}*", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def to_json(conversation: Conversation, messages: list[StoredMessage], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "title": conversation.title,
        "model": conversation.model,
        "created_at": conversation.created_at,
        "messages": [
            {
                "role": m.role,
                "text": m.text,
                "images": [str(p) for p in m.images],
                "status": m.status,
                "stats": m.stats,
                "model": m.model,
                "created_at": m.created_at,
            }
            for m in messages
        ],
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def suggested_file_name(conversation: Conversation, suffix: str = ".md") -> str:
    """A name to offer in the save dialog: the title without separators or characters file names refuse."""
    return _safe_name(conversation.title, "conversation") + suffix


def _safe_name(text: str, fallback: str) -> str:
    """Letters, digits, ``_`` and ``-``: nothing a link must escape, no separator, no ``..``."""
    return re.sub(r"[^\w-]+", "-", text).strip("-")[:80].strip("-") or fallback


def _copy_image(image: Path, folder: Path, copied: dict[Path, str]) -> str | None:
    """The picture's name in ``folder``, copied there once; None if it cannot be read."""
    if image in copied:
        return copied[image]
    stem, suffix = _safe_name(image.stem, "picture"), _safe_name(image.suffix, "")
    suffix = f".{suffix}" if suffix else ""
    taken = {name.casefold() for name in copied.values()}  # as a case-insensitive file system sees them
    name, n = stem + suffix, 1
    while name.casefold() in taken:
        n += 1
        name = f"{stem}-{n}{suffix}"
    try:
        source = open(image, "rb")
    except OSError:
        return None
    with source:
        folder.mkdir(exist_ok=True)
        with open(folder / name, "wb") as out:
            shutil.copyfileobj(source, out)
    copied[image] = name
    return name


def _plain(text: str) -> str:
    """Text shown as it is: Markdown's markup characters escaped, its line breaks kept."""
    text = re.sub(r"[ \t]+$", "", text, flags=re.MULTILINE)
    escaped = _BLOCK_MARKUP.sub(
        lambda m: f"{m[1]}{m[2]}\\" if m[2][0].isdigit() else f"{m[1]}\\{m[2]}", _INLINE_MARKUP.sub(r"\\\1", text)
    )
    return re.sub(r"(?<=[^\n])\n(?=[^\n])", "\\\\\n", escaped)  # a backslash ending a line breaks it


def _closed(markdown: str) -> str:
    """``markdown`` with a code block or raw HTML block it leaves open closed: an answer stopped
    inside one would otherwise swallow the rest of the file, pictures included."""
    fence: tuple[str, str] | None = None  # its indent and marker: closed with both, it closes inside a list too
    html_end: str | None = None
    for line in markdown.split("\n"):
        if fence:
            if re.fullmatch(rf" {{0,3}}{re.escape(fence[1][0])}{{{len(fence[1])},}}[ \t]*", line):
                fence = None
        elif html_end:
            if html_end in line.lower():
                html_end = None
        elif opening := _FENCE.fullmatch(line):
            indent, marker, info = opening.groups()
            if not (marker[0] == "`" and "`" in info):  # an info string with a backtick makes it no fence
                fence = (indent, marker)
        else:
            for start, end in _HTML_BLOCKS:
                if begun := start.match(line):
                    end = end or f"</{begun[1].lower()}>"
                    html_end = None if end in line[begun.end() :].lower() else end
                    break
    if fence:
        return f"{markdown}\n{fence[0]}{fence[1]}"
    return f"{markdown}\n{html_end}" if html_end else markdown
