"""A conversation exported as Markdown (images copied alongside) or JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from smolchat.store.conversations import Conversation, StoredMessage

ROLE_NAMES = {"user": "You", "assistant": "SmolChat", "system": "System"}


def to_markdown(conversation: Conversation, messages: list[StoredMessage], path: Path) -> Path:
    """Write ``path`` (.md) and a folder of its images next to it; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = path.with_name(path.stem + "-images")
    lines = [f"# {conversation.title}", ""]
    for m in messages:
        note = f" ({m.status})" if m.status not in ("complete",) else ""
        lines += [f"**{ROLE_NAMES.get(m.role, m.role)}**{note}", ""]
        for image in m.images:
            images.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, images / image.name)
            lines += [f"![{image.name}]({images.name}/{image.name})", ""]
        lines += [m.text, ""]
        if m.stats and m.stats.get("ttft_s") is not None:
            lines += [f"*first token {m.stats['ttft_s']:.2f} s · {m.stats.get('decode_tok_s') or 0:.1f} tok/s*", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def to_json(conversation: Conversation, messages: list[StoredMessage], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "title": conversation.title, "model": conversation.model, "created_at": conversation.created_at,
        "messages": [{"role": m.role, "text": m.text, "images": [str(p) for p in m.images], "status": m.status,
                      "stats": m.stats, "model": m.model, "created_at": m.created_at} for m in messages],
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path
