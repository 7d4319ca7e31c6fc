"""What each text file of a repo would need here, from the one memory estimate: from the
files' own metadata where they are already in the cache, else from their sizes and formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smolchat.engine.gguf_info import (
    ModelFileError,
    inspect_projector,
    inspect_text_model,
)
from smolchat.models import hf_cache
from smolchat.models.hub import RemoteFile, RepoListing
from smolchat.models.machine import MachineMemory
from smolchat.models.memory import MemoryEstimate, Verdict, estimate_memory, verdict


def estimate_files(
    listing: RepoListing, cache_dir: Path, machine: MachineMemory, *, n_ctx: int, n_gpu_layers: int = 0
) -> list[tuple[RemoteFile, MemoryEstimate, Verdict]]:
    """Each text file of ``listing`` with the default projector: its estimate and verdict."""
    try:
        local = {f.filename: f.path for f in hf_cache.cached_files(cache_dir, listing.repo)}
    except OSError:  # an unreadable cache: estimate every file from its size
        local = {}
    projector = listing.default_projector

    def known(f: RemoteFile, inspect):
        try:
            return inspect(local[f.path]) if f.path in local else f.size
        except ModelFileError:
            return f.size

    rows = []
    for text in listing.text_files:
        bits: dict[str, Any] = {"text_bits_per_weight": text.format.bits_per_weight} if text.format else {}
        if projector and projector.format:
            bits["projector_bits_per_weight"] = projector.format.bits_per_weight
        estimate = estimate_memory(
            known(text, inspect_text_model),
            known(projector, inspect_projector) if projector else None,
            n_ctx=n_ctx,
            n_gpu_layers=n_gpu_layers,
            **bits,
        )
        rows.append((text, estimate, verdict(estimate, machine)))
    return rows
