"""The SmolVLM family's shapes: widths, layers, heads and tiles of the 256M, 500M and 2.2B models.

The one place for them: the memory estimate takes the nearest member's shape where only file
sizes are known (before a download), the first-run measurement writes its probe models in
SmolVLM-256M's widths, and the synthetic models stand in for the real ones with them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextShape:
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int | None = None  # None: just the tokens the tokenizer needs
    n_ctx_train: int = 8192
    rope_freq_base: float = 100000.0


@dataclass(frozen=True)
class VisionShape:
    n_embd: int
    n_layer: int
    n_head: int
    n_ff: int  # keep it different from n_embd: libmtmd swaps up/down weights otherwise
    image_size: int
    patch_size: int
    scale_factor: int  # must be > 1: llama.cpp aborts the process otherwise
    preproc_image_size: int | None


@dataclass(frozen=True)
class PairShape:
    name: str
    text: TextShape
    vision: VisionShape


@dataclass(frozen=True)
class Family:
    """One SmolVLM model: its text backbone and vision tower, with their parameter counts."""

    name: str
    text: TextShape
    vision: VisionShape
    text_parameters: float
    vision_parameters: float  # the whole projector: SigLIP and the projection


# SmolLM2 135M, 360M and 1.7B, with SmolVLM's extended vocabulary
SMOLLM2_135M = TextShape(n_embd=576, n_layer=30, n_head=9, n_head_kv=3, n_ff=1536, n_vocab=49280)
SMOLLM2_360M = TextShape(n_embd=960, n_layer=32, n_head=15, n_head_kv=5, n_ff=2560, n_vocab=49280)
SMOLLM2_1_7B = TextShape(
    n_embd=2048,
    n_layer=24,
    n_head=32,
    n_head_kv=32,
    n_ff=8192,
    n_vocab=49155,
    n_ctx_train=16384,
    rope_freq_base=273768.0,
)
# SigLIP base at 512 px tiles (64 tokens each), and SigLIP so400m at 384 px (81 tokens each)
SIGLIP_BASE_512 = VisionShape(
    n_embd=768, n_layer=12, n_head=12, n_ff=3072, image_size=512, patch_size=16, scale_factor=4, preproc_image_size=2048
)
SIGLIP_SO400M_384 = VisionShape(
    n_embd=1152,
    n_layer=27,
    n_head=16,
    n_ff=4304,
    image_size=384,
    patch_size=14,
    scale_factor=3,
    preproc_image_size=1536,
)

SMOLVLM_256M = Family("SmolVLM-256M", SMOLLM2_135M, SIGLIP_BASE_512, 135e6, 98e6)
SMOLVLM_500M = Family("SmolVLM-500M", SMOLLM2_360M, SIGLIP_BASE_512, 362e6, 98e6)
SMOLVLM_2_2B = Family("SmolVLM-2.2B", SMOLLM2_1_7B, SIGLIP_SO400M_384, 1.71e9, 435e6)

FAMILY = (SMOLVLM_256M, SMOLVLM_500M, SMOLVLM_2_2B)
