"""A turn's figures (``TurnStats.as_dict()``, also as kept with a message) in words, the same
under an answer in the window, in an exported conversation and after ``smolchat ask``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe_stats(stats: Mapping[str, Any], *, brief: bool = True, vision: str | None = None) -> str:
    """'first token 0.41 s · 38.2 tok/s · 1.9 s in all · 5 tiles read' (``brief``); in full,
    with the tokens of the prompt and of the answer, how the tiles were read (``vision``, the
    vision plan in words) and how the answer ended. Brief figures of a turn that never reached
    its first token are empty: there is nothing to tell."""
    ttft_s, decode_tok_s, tiles = stats.get("ttft_s"), stats.get("decode_tok_s"), stats.get("image_tiles_encoded")
    if brief and ttft_s is None:
        return ""
    parts = [f"first token {ttft_s:.2f} s"] if ttft_s is not None else []
    if decode_tok_s:
        parts.append(f"{decode_tok_s:.1f} tok/s")
    if brief:
        if stats.get("e2e_s") is not None:
            parts.append(f"{stats['e2e_s']:.1f} s in all")
        if tiles:
            parts.append(f"{tiles} tiles read")
        return " · ".join(parts)
    parts.append(f"{stats['generated_tokens']} tokens in {stats['e2e_s']:.2f} s")
    details = [
        f"{stats[key]} {what}"
        for key, what in (("image_tokens", "image"), ("reused_tokens", "reused"))
        if stats.get(key)
    ]
    parts.append(f"prompt {stats['prompt_tokens']} tokens" + (f" ({', '.join(details)})" if details else ""))
    if tiles:
        parts.append(f"{tiles} tiles encoded in {stats['encode_s']:.2f} s" + (f" by {vision}" if vision else ""))
    parts.append(stats["finish_reason"])
    return " · ".join(parts)
