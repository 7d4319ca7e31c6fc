"""GGUF weight formats, read from file names, with what each one trades.

Repos name their files after the format of the weights (``SmolVLM-256M-Instruct-Q8_0.gguf``,
``mmproj-SmolVLM-256M-Instruct-f16.gguf``, ``SmolVLM-256M-Instruct-bf16_q8_0.gguf``). The
name is all a listing gives before download, so it is what the model picker shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Format:
    name: str  # canonical spelling: "Q4_K_M", "BF16", hybrids "BF16+Q8_0"
    bits_per_weight: float  # average, for size and memory estimates before download
    summary: str  # the trade-off, in one line

    @property
    def is_float(self) -> bool:
        return self.name in ("F32", "F16", "BF16")


def _fmt(name: str, bits: float, summary: str) -> Format:
    return Format(name, bits, summary)


_FLOAT = {
    "F32": _fmt("F32", 32.0, "Full 32-bit precision: the largest and slowest; only for comparing other formats."),
    "BF16": _fmt(
        "BF16",
        16.0,
        "16-bit, the precision the model was trained in: exact quality, twice the size "
        "of Q8_0; fast on CPUs with BF16 instructions and on recent GPUs.",
    ),
    "F16": _fmt(
        "F16",
        16.0,
        "16-bit: exact quality for all practical purposes, twice the size of Q8_0; "
        "the best choice for the vision projector.",
    ),
}

_EIGHT = "8-bit: answers indistinguishable from 16-bit at half the size; the best choice when memory allows."
_SIX = "6-bit: very close to Q8_0, a fifth smaller."
_FIVE = "5-bit: a small loss of quality for a third less memory than Q8_0."
_FOUR_MIXED = (
    "4-bit, with the most sensitive tensors kept larger: the usual balance of size and quality "
    "for larger models (small models gain little from it)."
)
_FOUR = "4-bit: about half the size of Q8_0, with a slight but noticeable loss of quality."
_THREE = "3-bit: for tight memory; answers get visibly worse, especially with small models."
_TWO = "2-bit: only when nothing else fits; expect mistakes."
_ONE = "1-bit class, experimental: barely usable with models this small."

_QUANTS = {
    "Q8_0": (8.5, _EIGHT),
    "Q6_K": (6.56, _SIX),
    "Q5_K_M": (5.69, _FIVE),
    "Q5_K_S": (5.54, _FIVE),
    "Q5_K": (5.5, _FIVE),
    "Q5_0": (5.5, _FIVE),
    "Q5_1": (6.0, _FIVE),
    "Q4_K_M": (4.85, _FOUR_MIXED),
    "Q4_K_L": (5.0, _FOUR_MIXED),
    "Q4_K_S": (4.58, _FOUR),
    "Q4_K": (4.5, _FOUR),
    "Q4_0": (4.5, _FOUR),
    "Q4_1": (5.0, _FOUR),
    "IQ4_XS": (4.25, _FOUR),
    "IQ4_NL": (4.5, _FOUR),
    "Q3_K_L": (4.27, _THREE),
    "Q3_K_M": (3.91, _THREE),
    "Q3_K_S": (3.5, _THREE),
    "Q3_K": (3.44, _THREE),
    "IQ3_M": (3.66, _THREE),
    "IQ3_S": (3.44, _THREE),
    "IQ3_XS": (3.3, _THREE),
    "IQ3_XXS": (3.06, _THREE),
    "Q2_K": (2.63, _TWO),
    "Q2_K_S": (2.5, _TWO),
    "IQ2_M": (2.7, _TWO),
    "IQ2_S": (2.5, _TWO),
    "IQ2_XS": (2.31, _TWO),
    "IQ2_XXS": (2.06, _TWO),
    "IQ1_M": (1.75, _ONE),
    "IQ1_S": (1.56, _ONE),
    "TQ1_0": (1.69, _ONE),
    "TQ2_0": (2.06, _ONE),
}

FORMATS: dict[str, Format] = {**_FLOAT, **{n: _fmt(n, b, s) for n, (b, s) in _QUANTS.items()}}

# Longest names first, so that "Q4_K_M" wins over "Q4_K" and "IQ3_XXS" over "IQ3_XS".
_NAMES = sorted(FORMATS, key=len, reverse=True)
_FORMAT_AT_END = re.compile(
    r"[-_.](?P<first>" + "|".join(_NAMES) + r")(?:[-_+](?P<second>" + "|".join(_NAMES) + r"))?$",
    re.IGNORECASE,
)


def is_projector(filename: str) -> bool:
    """Whether a GGUF file is a vision projector (mmproj), from its name."""
    return "mmproj" in PurePosixPath(filename).name.lower()


def parse_format(filename: str) -> Format | None:
    """The weight format a GGUF file's name states, or None where it states none."""
    name = PurePosixPath(filename).name
    if not name.lower().endswith(".gguf"):
        return None
    stem = re.sub(r"[-_.]mmproj$", "", name[: -len(".gguf")], flags=re.IGNORECASE)  # "...-bf16-mmproj"
    match = _FORMAT_AT_END.search(stem)
    if match is None:
        return None
    first = FORMATS[match["first"].upper()]
    if match["second"] is None:
        return first
    second = FORMATS[match["second"].upper()]
    # Hybrids name the precision of the sensitive tensors (embeddings, output) first and
    # that of everything else second.
    big, rest = (first, second) if first.bits_per_weight >= second.bits_per_weight else (second, first)
    return Format(
        f"{big.name}+{rest.name}",
        rest.bits_per_weight + 0.3,
        f"Mixed: most weights in {rest.name}, the embeddings and output in {big.name}: slightly better "
        f"than {rest.name} alone, slightly larger.",
    )


def format_name(filename: str) -> str:
    """The name of the format a file's name states, "?" where it states none."""
    fmt = parse_format(filename)
    return fmt.name if fmt else "?"


# The default text format prefers Q8_0 while it stays small (for models up to about 1 GB
# at Q8_0, 4-bit saves little memory and no time: SmolVLM-256M's Q4_K_M is mostly Q5_0 and
# saves 38 MB), then Q4_K_M; then whatever is closest in quality and size.
_TEXT_PREFERENCE = ["Q8_0", "Q4_K_M", "Q6_K", "Q5_K_M", "Q4_K_S", "Q4_0", "Q5_0", "F16", "BF16", "F32"]
_PROJECTOR_PREFERENCE = ["F16", "BF16", "F32", "Q8_0"]
SMALL_MODEL_BYTES = 1 << 30


def default_text_file(files: dict[str, int]) -> str | None:
    """The text model file chosen by default among ``files`` (name -> size in bytes)."""
    formats = {n: f for n in files if not is_projector(n) and (f := parse_format(n))}
    by_format = {f.name: n for n, f in formats.items()}
    q8, q4 = by_format.get("Q8_0"), by_format.get("Q4_K_M")
    if q8 and q4:
        return q8 if files[q8] <= SMALL_MODEL_BYTES else q4
    chosen = _first_preferred(by_format, _TEXT_PREFERENCE)
    if chosen is None and by_format:  # only low-bit or hybrid formats: the most precise of them
        chosen = by_format[max(by_format, key=lambda f: formats[by_format[f]].bits_per_weight)]
    return chosen or next((n for n in sorted(files) if not is_projector(n) and n.lower().endswith(".gguf")), None)


def default_projector_file(files: dict[str, int]) -> str | None:
    """The mmproj chosen by default: F16, since vision encoders lose visibly more from
    quantization than text models."""
    by_format = {f.name: n for n in files if is_projector(n) and (f := parse_format(n))}
    return _first_preferred(by_format, _PROJECTOR_PREFERENCE) or next(
        (n for n in sorted(files) if is_projector(n)), None
    )


def _first_preferred(by_format: dict[str, str], preference: list[str]) -> str | None:
    return next((by_format[f] for f in preference if f in by_format), None)
