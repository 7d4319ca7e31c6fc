"""The SmolVLM family on the Hugging Face Hub: the repos SmolChat offers without being asked.

Any other repo id works too (``owner/name``); these are the ones known to hold a SmolVLM text
model and its vision projector in GGUF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smolchat.errors import SmolChatError


@dataclass(frozen=True)
class CatalogEntry:
    repo: str
    title: str
    parameters: str  # "256M", as the model card says
    publisher: str  # "official" (ggml-org, converted by llama.cpp's maintainers) or "community"
    note: str


DEFAULT_REPO = "ggml-org/SmolVLM-256M-Instruct-GGUF"

CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        DEFAULT_REPO,
        "SmolVLM 256M Instruct",
        "256M",
        "official",
        "The smallest and fastest: answers in seconds on any laptop CPU.",
    ),
    CatalogEntry(
        "ggml-org/SmolVLM-500M-Instruct-GGUF",
        "SmolVLM 500M Instruct",
        "500M",
        "official",
        "Noticeably better answers for about twice the memory of 256M.",
    ),
    CatalogEntry(
        "ggml-org/SmolVLM-Instruct-GGUF",
        "SmolVLM 2.2B Instruct",
        "2.2B",
        "official",
        "The most capable SmolVLM; wants a recent CPU with 8 GB of RAM or a GPU.",
    ),
    CatalogEntry(
        "ggml-org/SmolVLM2-256M-Video-Instruct-GGUF",
        "SmolVLM2 256M Video Instruct",
        "256M",
        "official",
        "Version 2 of the 256M model: better on documents and screenshots.",
    ),
    CatalogEntry(
        "ggml-org/SmolVLM2-500M-Video-Instruct-GGUF",
        "SmolVLM2 500M Video Instruct",
        "500M",
        "official",
        "Version 2 of the 500M model: better on documents and screenshots.",
    ),
    CatalogEntry(
        "ggml-org/SmolVLM2-2.2B-Instruct-GGUF",
        "SmolVLM2 2.2B Instruct",
        "2.2B",
        "official",
        "Version 2 of the 2.2B model: the best quality in the family.",
    ),
    CatalogEntry(
        "Mungert/SmolVLM-256M-Instruct-GGUF",
        "SmolVLM 256M Instruct (many formats)",
        "256M",
        "community",
        "Every format from BF16 down to 1-bit, and hybrids such as BF16+Q8_0, for comparing them.",
    ),
    CatalogEntry(
        "Mungert/SmolVLM-500M-Instruct-GGUF",
        "SmolVLM 500M Instruct (many formats)",
        "500M",
        "community",
        "Every format from BF16 down to 1-bit, and hybrids, for the 500M model.",
    ),
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class BadRepoIdError(SmolChatError):
    pass


def check_repo_id(repo: str) -> str:
    """``repo`` with surrounding spaces and a pasted Hub address removed, or a clear error."""
    repo = repo.strip().removeprefix("https://huggingface.co/").removeprefix("hf.co/").strip("/")
    if not _REPO_ID.match(repo) or ".." in repo or repo.endswith((".", "-")):
        raise BadRepoIdError(
            f"'{repo}' is not a Hugging Face repo id. It looks like owner/name, for example {DEFAULT_REPO}."
        )
    return repo


def catalog_entry(repo: str) -> CatalogEntry | None:
    return next((e for e in CATALOG if e.repo.lower() == repo.lower()), None)
