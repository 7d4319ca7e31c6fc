"""SmolVLM's vision encoder (SigLIP and the idefics3 projector) run by OpenVINO.

On a CPU, OpenVINO runs this encoder two to three times faster than ggml: its matrix
kernels use the CPU's BF16/AMX/VNNI instructions through oneDNN. The network is built here
from the tensors of the mmproj GGUF itself, so nothing else is downloaded, and it follows
libmtmd's graph for idefics3 step by step (patch convolution, learned positions, pre-norm
transformer blocks with tanh-GELU, post-norm, pixel shuffle, linear projection) so that its
embeddings can stand in for libmtmd's. llama.cpp keeps the text model.

Needs the ``openvino`` package (``pip install smolchat[openvino]``); ``available()`` says
whether it is there.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import time
from pathlib import Path

import gguf
import numpy as np

from smolchat.engine.gguf_info import ModelFileError
from smolchat.engine.vision.tiles import TileGeometry

log = logging.getLogger(__name__)

# OpenVINO's names for the precisions its CPU plugin computes in.
INFERENCE_PRECISIONS = {"BF16": "bf16", "F16": "f16", "F32": "f32"}


def available() -> bool:
    return importlib.util.find_spec("openvino") is not None


class _Weights:
    """The mmproj's tensors as numpy arrays in PyTorch layout (outermost dimension first)."""

    def __init__(self, path: Path):
        try:
            self._reader = gguf.GGUFReader(path)
        except (ValueError, OSError) as e:
            raise ModelFileError(path, f"could not be read ({e}).", "Download the projector again.") from e
        self._tensors = {t.name: t for t in self._reader.tensors}
        self.path = path

    def field(self, key: str, default=None):
        f = self._reader.get_field(key)
        return default if f is None else f.contents()

    def has(self, name: str) -> bool:
        return name in self._tensors

    def get(self, name: str) -> np.ndarray:
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


class OpenVINOVisionEncoder:
    """Turns normalized tiles (float32 NCHW) into the embeddings libmtmd would produce."""

    def __init__(
        self,
        mmproj_path: str | os.PathLike[str],
        *,
        threads: int,
        precision: str = "BF16",
    ):
        import openvino as ov

        self.path = Path(mmproj_path)
        self.precision = precision
        self.threads = threads
        started = time.perf_counter()
        w = _Weights(self.path)
        projector = w.field("clip.vision.projector_type") or w.field("clip.projector_type")
        if projector != "idefics3":
            raise ModelFileError(
                self.path,
                f"has a '{projector}' projector, which the OpenVINO path does not build.",
                "Use the llama.cpp vision encoder for it.",
            )
        self.n_embd = int(w.field("clip.vision.embedding_length"))
        self.n_head = int(w.field("clip.vision.attention.head_count"))
        self.n_layer = int(w.field("clip.vision.block_count"))
        self.eps = float(w.field("clip.vision.attention.layer_norm_epsilon", 1e-6))
        self.mean = tuple(float(x) for x in w.field("clip.vision.image_mean", [0.5, 0.5, 0.5]))
        self.std = tuple(float(x) for x in w.field("clip.vision.image_std", [0.5, 0.5, 0.5]))
        tile = int(w.field("clip.vision.image_size"))
        patch = int(w.field("clip.vision.patch_size"))
        scale = int(w.field("clip.vision.projector.scale_factor"))
        longest = w.field("clip.vision.preproc_image_size")
        self.geometry = TileGeometry(tile, patch, scale, int(longest) if longest else None)
        if w.field("clip.use_silu", False) or not w.field("clip.use_gelu", False):
            raise ModelFileError(
                self.path,
                "uses an activation the OpenVINO path does not build.",
                "Use the llama.cpp vision encoder for it.",
            )
        side = tile // patch
        if side % scale:
            raise ModelFileError(
                self.path,
                "has tiles that do not divide by its scale factor.",
                "Use the llama.cpp vision encoder for it.",
            )
        self.tokens_per_tile = (side // scale) ** 2

        model = self._build(ov, w, tile, patch, scale)
        self.output_width = int(model.output(0).get_partial_shape()[2].get_length())
        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISIONS[precision],
        }
        # No CACHE_DIR: a compiled blob saves 0.5 s of a 1.5 s load and takes 370 MB of disk
        # per model and precision (SmolVLM-256M).
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        log.info(
            "OpenVINO vision encoder for %s ready in %.2f s (%s, %d threads)",
            self.path.name,
            time.perf_counter() - started,
            precision,
            threads,
        )

    # -- graph -----------------------------------------------------------------------------

    def _build(self, ov, w: _Weights, tile: int, patch: int, scale: int):
        import openvino.opset13 as op

        def const(name: str):
            data = w.get(name)
            node = op.constant(data)
            return op.convert(node, np.float32) if data.dtype != np.float32 else node

        def linear(x, prefix: str):
            y = op.matmul(x, const(prefix + ".weight"), transpose_a=False, transpose_b=True)
            return op.add(y, const(prefix + ".bias")) if w.has(prefix + ".bias") else y

        def layer_norm(x, prefix: str):
            y = op.mvn(x, op.constant(np.array([-1], np.int64)), True, self.eps, "inside_sqrt")
            return op.add(op.multiply(y, const(prefix + ".weight")), const(prefix + ".bias"))

        def shape(*dims: int):
            return op.constant(np.array(dims, np.int64))

        e, h = self.n_embd, self.n_head
        d = e // h
        side = tile // patch
        n_pos = side * side

        pixels = op.parameter([-1, 3, tile, tile], np.float32, name="pixels")
        x = op.convolution(pixels, const("v.patch_embd.weight"), [patch, patch], [0, 0], [0, 0], [1, 1])
        if w.has("v.patch_embd.bias"):
            x = op.add(x, op.reshape(const("v.patch_embd.bias"), shape(1, e, 1, 1), False))
        x = op.transpose(op.reshape(x, shape(0, e, n_pos), True), shape(0, 2, 1))  # (B, patches, E)
        x = op.add(x, const("v.position_embd.weight"))
        if w.has("v.pre_ln.weight"):
            x = layer_norm(x, "v.pre_ln")

        to_heads = shape(0, n_pos, h, d)
        for i in range(self.n_layer):
            p = f"v.blk.{i}."
            y = layer_norm(x, p + "ln1")
            q, k, v = (
                op.transpose(op.reshape(linear(y, p + name), to_heads, True), shape(0, 2, 1, 3))
                for name in ("attn_q", "attn_k", "attn_v")
            )
            attn = op.scaled_dot_product_attention(q, k, v, scale=op.constant(np.float32(1 / math.sqrt(d))))
            attn = op.reshape(op.transpose(attn, shape(0, 2, 1, 3)), shape(0, n_pos, e), True)
            x = op.add(x, linear(attn, p + "attn_out"))
            y = op.gelu(linear(layer_norm(x, p + "ln2"), p + "ffn_up"), "tanh")
            x = op.add(x, linear(y, p + "ffn_down"))
        if w.has("v.post_ln.weight"):
            x = layer_norm(x, "v.post_ln")

        # Pixel shuffle: each scale x scale block of patches becomes one token, as libmtmd does it.
        s, m = scale, side // scale
        x = op.reshape(x, shape(0, side, m, s * e), True)
        x = op.transpose(x, shape(0, 2, 1, 3))
        x = op.reshape(x, shape(0, m, m, s * s * e), True)
        x = op.transpose(x, shape(0, 2, 1, 3))
        x = op.reshape(x, shape(0, m * m, s * s * e), True)
        x = linear(x, "mm.model.fc")
        return ov.Model([x], [pixels], "smolvlm_vision")

    # -- inference -------------------------------------------------------------------------

    def encode(self, tiles: np.ndarray) -> np.ndarray:
        """Embeddings for a batch of normalized tiles: (tiles, tokens per tile, output width)."""
        result = self._request.infer({0: np.ascontiguousarray(tiles, dtype=np.float32)})
        return np.ascontiguousarray(next(iter(result.values())), dtype=np.float32)
