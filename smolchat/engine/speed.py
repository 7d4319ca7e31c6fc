"""How fast this computer reads images and prompts with a given model, as measured by the
engine itself while it works, kept between runs.

The figures feed the "about N s" a person sees before sending. Each turn moves them a third
of the way towards what it measured, so they follow the machine (another model, a busy
laptop) without jumping on one odd turn. Before the first image, the vision-speed
measurement of this machine gives a starting point.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from smolchat import paths
from smolchat.files import write_json

_WEIGHT = 1 / 3  # of a new measurement against what was known
_MIN_TOKENS = 16  # fewer evaluated tokens say too little about prompt speed


@dataclass(frozen=True)
class Speed:
    encode_s_per_tile: float | None = None
    prompt_s_per_token: float | None = None  # evaluating the prompt, image embeddings included
    decode_tok_s: float | None = None
    turns: int = 0  # measured turns behind these figures (0: a starting estimate, or nothing)
    tiles: int = 0  # measured tiles behind the vision figure

    def wait_s(self, tiles: int, tokens: int) -> float | None:
        """Seconds to read ``tiles`` image tiles and evaluate ``tokens`` prompt positions."""
        if (tiles and self.encode_s_per_tile is None) or (tokens and self.prompt_s_per_token is None):
            return None
        return tiles * (self.encode_s_per_tile or 0.0) + tokens * (self.prompt_s_per_token or 0.0)


def _blend(old: float | None, new: float | None) -> float | None:
    if new is None:
        return old
    return new if old is None else old + _WEIGHT * (new - old)


def speeds_file() -> Path:
    return paths.cache_dir() / "speeds.json"


class SpeedLog:
    """Speeds per model pair and settings, in the cache folder."""

    def __init__(self, key: str, path: Path | None = None) -> None:
        self.key = key
        self.path = path or speeds_file()
        self.speed = self._read().get(key, Speed())

    def _read(self) -> dict[str, Speed]:
        try:
            raw = json.loads(self.path.read_text())
            return {k: Speed(**v) for k, v in raw.items()}
        except (OSError, ValueError, TypeError):
            return {}

    def start_from(self, encode_s_per_tile: float | None) -> None:
        """A first guess at the vision speed, used until a tile has been read."""
        if self.speed.encode_s_per_tile is None and encode_s_per_tile:
            self.speed = replace(self.speed, encode_s_per_tile=encode_s_per_tile)

    def record(
        self, *, tiles: int, encode_s: float, evaluated: int, prompt_s: float, decode_tok_s: float | None
    ) -> Speed:
        """Take one turn's (or prefill's) measurements into account, and keep them."""
        s = self.speed
        per_tile = encode_s / tiles if tiles else None
        per_token = (prompt_s - encode_s) / evaluated if evaluated >= _MIN_TOKENS and prompt_s > encode_s else None
        self.speed = Speed(
            per_tile if s.tiles == 0 and per_tile is not None else _blend(s.encode_s_per_tile, per_tile),
            _blend(s.prompt_s_per_token, per_token),
            _blend(s.decode_tok_s, decode_tok_s),
            s.turns + 1,
            s.tiles + tiles,
        )
        self._write()
        return self.speed

    def _write(self) -> None:
        try:
            everything = self._read()
            everything[self.key] = self.speed
            write_json(self.path, {k: asdict(v) for k, v in everything.items()})
        except OSError:
            pass  # an estimate is not worth an error
