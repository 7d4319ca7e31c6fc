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

import numpy as np

from smolchat.engine.vision.projector_weights import ProjectorWeights, encoder_shape, int8_per_row

log = logging.getLogger(__name__)

# OpenVINO's names for the precisions its CPU plugin computes in. INT8: 8-bit weights (per
# output row), computed in F32 or, where the CPU has 8-bit dot products (VNNI, AMX), with
# activations quantized on the fly ("dynamic quantization"); a quarter of the F32 memory.
INFERENCE_PRECISIONS = {"BF16": "bf16", "F16": "f16", "F32": "f32", "INT8": "f32"}


def available() -> bool:
    return importlib.util.find_spec("openvino") is not None


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
        w = ProjectorWeights(self.path)
        shape = encoder_shape(w, "OpenVINO")
        self.n_embd, self.n_head, self.n_layer, self.eps = shape.n_embd, shape.n_head, shape.n_layer, shape.eps
        self.mean, self.std, self.geometry = shape.mean, shape.std, shape.geometry
        self.tokens_per_tile = shape.tokens_per_tile
        g = self.geometry
        tile, patch, scale = g.tile_size, g.patch_size, g.scale_factor

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
        del model, w  # the graph's constants and the file's pages: the compiled model has its own
        self._request = self._compiled.create_infer_request()
        log.info(
            "OpenVINO vision encoder for %s ready in %.2f s (%s, %d threads)",
            self.path.name,
            time.perf_counter() - started,
            precision,
            threads,
        )

    # -- graph -----------------------------------------------------------------------------

    def _build(self, ov, w: ProjectorWeights, tile: int, patch: int, scale: int):
        import openvino.opset13 as op

        def const(name: str):
            data = w.get(name)
            node = op.constant(data)
            return op.convert(node, np.float32) if data.dtype != np.float32 else node

        def matrix(name: str):
            if self.precision != "INT8":
                return const(name)
            q, scale = int8_per_row(w.get(name))  # the pattern OpenVINO reads as compressed weights
            return op.multiply(op.convert(op.constant(q), np.float32), op.constant(scale[:, None]))

        def linear(x, prefix: str):
            y = op.matmul(x, matrix(prefix + ".weight"), transpose_a=False, transpose_b=True)
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
