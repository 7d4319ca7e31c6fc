"""The vision projector's tensors and shape, read from its GGUF for the encoders SmolChat
builds itself (OpenVINO's and ONNX Runtime's), with what they cannot build refused first."""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from smolchat.engine.gguf_info import ModelFileError
from smolchat.engine.vision.tiles import TileGeometry

_USE_LIBMTMD = "Use the llama.cpp vision encoder for it."


class ProjectorWeights:
    """The mmproj's tensors as numpy arrays in PyTorch layout (outermost dimension first)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        try:
            self._reader = gguf.GGUFReader(self.path)
        except (ValueError, OSError) as e:
            raise ModelFileError(self.path, f"could not be read ({e}).", "Download the projector again.") from e
        self._tensors = {t.name: t for t in self._reader.tensors}

    def field(self, key: str, default=None):
        f = self._reader.get_field(key)
        return default if f is None else f.contents()

    def has(self, name: str) -> bool:
        return name in self._tensors

    def get(self, name: str) -> np.ndarray:
        """The tensor as the file holds it (F16 or F32), or dequantized to F32."""
        tensor = self._tensors.get(name)
        if tensor is None:
            raise ModelFileError(
                self.path, f"has no tensor '{name}'.", "The projector is incomplete; download it again."
            )
        shape = tuple(int(n) for n in reversed(tensor.shape))
        kind = tensor.tensor_type
        if kind in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32):
            return np.asarray(tensor.data).reshape(shape)
        return gguf.quants.dequantize(tensor.data, kind).reshape(shape).astype(np.float32)

    def f32(self, name: str) -> np.ndarray:
        """A copy of the tensor in F32. The file's pages it was read from are let go: an
        encoder built from the file holds its own copy, and would otherwise hold the file too
        (pages of a mapped file count in the process's memory while they are mapped)."""
        array = np.array(self.get(name), np.float32)
        self._release(name)
        return array

    def _release(self, name: str) -> None:
        tensor, data = self._tensors[name], self._reader.data
        raw = getattr(data, "_mmap", None)
        if raw is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        start = -(-int(tensor.data_offset) // page) * page
        end = (int(tensor.data_offset) + int(tensor.n_bytes)) // page * page
        if end > start:
            try:
                raw.madvise(mmap.MADV_DONTNEED, start, end - start)
            except (OSError, ValueError):
                pass  # only memory, and only until the file is closed


@dataclass(frozen=True)
class EncoderShape:
    """What an idefics3 (SmolVLM) encoder built from the file looks like."""

    n_embd: int
    n_head: int
    n_layer: int
    eps: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    geometry: TileGeometry

    @property
    def side(self) -> int:
        """Patches along a tile's side."""
        return self.geometry.tile_size // self.geometry.patch_size

    @property
    def tokens_per_tile(self) -> int:
        return (self.side // self.geometry.scale_factor) ** 2


def encoder_shape(w: ProjectorWeights, encoder: str) -> EncoderShape:
    """The shape of the projector in ``w``; ModelFileError for one ``encoder`` cannot build."""
    projector = w.field("clip.vision.projector_type") or w.field("clip.projector_type")
    if projector != "idefics3":
        raise ModelFileError(
            w.path, f"has a '{projector}' projector, which the {encoder} path does not build.", _USE_LIBMTMD
        )
    if w.field("clip.use_silu", False) or not w.field("clip.use_gelu", False):
        raise ModelFileError(w.path, f"uses an activation the {encoder} path does not build.", _USE_LIBMTMD)
    tile = int(w.field("clip.vision.image_size"))
    patch = int(w.field("clip.vision.patch_size"))
    scale = int(w.field("clip.vision.projector.scale_factor"))
    longest = w.field("clip.vision.preproc_image_size")
    if (tile // patch) % scale:
        raise ModelFileError(w.path, "has tiles that do not divide by its scale factor.", _USE_LIBMTMD)
    return EncoderShape(
        n_embd=int(w.field("clip.vision.embedding_length")),
        n_head=int(w.field("clip.vision.attention.head_count")),
        n_layer=int(w.field("clip.vision.block_count")),
        eps=float(w.field("clip.vision.attention.layer_norm_epsilon", 1e-6)),
        mean=tuple(float(x) for x in w.field("clip.vision.image_mean", [0.5, 0.5, 0.5])),
        std=tuple(float(x) for x in w.field("clip.vision.image_std", [0.5, 0.5, 0.5])),
        geometry=TileGeometry(tile, patch, scale, int(longest) if longest else None),
    )


def int8_per_row(weight: np.ndarray, levels: int = 63) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` (out, in) as int8 values in [-levels, levels] and one F32 scale per output row.

    63 levels (7 bits) rather than 127: CPUs without VNNI multiply 8-bit numbers with
    instructions that add pairs of products into 16 bits, which saturate when both weights of a
    pair are near 127 and the activations large; at 7 bits they cannot (2 x 255 x 63 < 32767).
    """
    w = np.asarray(weight, np.float32)
    scale = np.abs(w).max(axis=1) / levels
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(w / scale[:, None]), -levels, levels).astype(np.int8)
    return q, scale.astype(np.float32)
