"""SmolVLM's vision encoder run by ONNX Runtime, with 8-bit matrix products.

On CPUs without BF16 or VNNI (AVX2 laptops), F32 is the ceiling for OpenVINO's and ggml's
encoders alike, and their 8-bit paths are no faster there. ONNX Runtime's MLAS kernels are:
its DynamicQuantizeMatMul quantizes each activation matrix to 8 bits as it goes and multiplies
it by 8-bit weights, at about twice the F32 rate of the same cores (355 against 189 GOP/s for a
1024x768x3072 product on 2 Zen 3 cores). Weights are quantized per output row when the encoder
is built; attention, norms and GELU stay in F32. "F32" builds the same network without
quantizing, as the reference the 8-bit one is checked against.

The network is built from the mmproj GGUF's tensors, following libmtmd's idefics3 graph as
``openvino_encoder`` does, so its embeddings can stand in for libmtmd's, and saved once per
projector and precision with its weights in a file beside it: later sessions start from the
file in 0.15 s, and ONNX Runtime maps the weights from it and lets them go once it has
repacked them, so they are held once, not twice. Where the folder cannot be written (a full
disk), the network is handed over from memory instead. Needs the ``onnxruntime`` and ``onnx``
packages (``pip install smolchat[onnxruntime]``); ``onnx`` only to build the network.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

from smolchat.engine.vision.projector_files import EXPORT_SOURCE_FILE, PARTIAL, export_path
from smolchat.engine.vision.projector_weights import ProjectorWeights, encoder_shape, int8_per_row

log = logging.getLogger(__name__)

PRECISIONS = ("INT8", "F32")
GRAPH_VERSION = 1  # raise when _Graph builds a different network: saved ones are then made again
_MODEL_FILE, _WEIGHTS_FILE = "encoder.onnx", "weights.bin"
_PAGE = 65536  # weights start on this boundary in the file: a page on every system ONNX Runtime maps on
_ONNX_TYPES = {"<f4": 1, "|i1": 3, "<i8": 7}  # numpy dtype -> onnx TensorProto type


def _return_freed_memory() -> None:
    """Hand the allocator's free pages back to the system: building the graph frees hundreds of
    MB in pieces that glibc would otherwise keep for later."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def exported_model(mmproj_path: str | os.PathLike[str], precision: str) -> Path:
    """The saved network for ``mmproj_path`` in ``precision``, written first if need be.
    OSError where it cannot be written."""
    folder = export_path(mmproj_path, f"onnx-{precision}-v{GRAPH_VERSION}")
    model = folder / _MODEL_FILE
    if model.exists():
        return model
    started = time.perf_counter()
    partial = folder.with_name(f"{folder.name}{PARTIAL}-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        weights = ProjectorWeights(mmproj_path)
        with open(partial / _WEIGHTS_FILE, "wb") as data:
            graph = _Graph(weights, encoder_shape(weights, "ONNX Runtime"), quantized=precision == "INT8", sink=data)
            data.flush()
            os.fsync(data.fileno())
        del weights
        (partial / _MODEL_FILE).write_bytes(graph.serialized())
        (partial / EXPORT_SOURCE_FILE).write_text(os.path.abspath(mmproj_path), encoding="utf-8")
        del graph
        try:
            os.replace(partial, folder)
        except OSError:
            if not model.exists():  # not another process that saved it first
                raise
            shutil.rmtree(partial, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        _return_freed_memory()
    log.info(
        "saved the ONNX vision encoder for %s (%s) in %.2f s",
        Path(mmproj_path).name,
        precision,
        time.perf_counter() - started,
    )
    return model


class OnnxVisionEncoder:
    """Turns normalized tiles (float32 NCHW) into the embeddings libmtmd would produce."""

    def __init__(self, mmproj_path: str | os.PathLike[str], *, threads: int, precision: str = "INT8"):
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise ValueError(f"ONNX Runtime reads images in {' or '.join(PRECISIONS)}, not {precision!r}")
        self.path = Path(mmproj_path)
        self.precision = precision
        self.threads = threads
        started = time.perf_counter()
        weights = ProjectorWeights(self.path)
        shape = encoder_shape(weights, "ONNX Runtime")
        del weights
        self.mean, self.std, self.geometry = shape.mean, shape.std, shape.geometry
        self.tokens_per_tile = shape.tokens_per_tile
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initializers are not the user's
        # Its threads would otherwise spin after each tile, taking the cores from llama.cpp,
        # which evaluates that tile's embeddings next.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # A planned block for all of a run's activations would be held at its largest (40 MB
        # more for a 512 px tile), for no measurable speed.
        options.enable_mem_pattern = False
        self._weights: dict[str, np.ndarray] = {}
        self._session = self._saved_session(ort, options) or self._session_from_memory(ort, options, shape)
        _return_freed_memory()
        self.output_width = int(self._session.get_outputs()[0].shape[-1])
        log.info(
            "ONNX Runtime vision encoder for %s ready in %.2f s (%s, %d threads)",
            self.path.name,
            time.perf_counter() - started,
            precision,
            threads,
        )

    def _saved_session(self, ort, options):
        """A session on the saved network (saved first if need be); None where it cannot be."""
        for _attempt in range(2):
            try:
                model = exported_model(self.path, self.precision)
            except OSError as e:
                log.warning("could not save the ONNX vision encoder (%s); building it in memory", e)
                return None
            try:
                return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            except Exception as e:  # a damaged save: make it again, once
                log.warning("the saved ONNX vision encoder %s did not load (%s)", model.parent.name, e)
                shutil.rmtree(model.parent, ignore_errors=True)
        return None

    def _session_from_memory(self, ort, options, shape):
        graph = _Graph(ProjectorWeights(self.path), shape, quantized=self.precision == "INT8", sink=self._weights)
        # The weights go to the session as they are, not inside the serialized graph: no
        # second and third copy of them while it is built. The session does not copy them:
        # they are kept here as long as it lives.
        options.add_external_initializers(
            list(self._weights), [ort.OrtValue.ortvalue_from_numpy(a) for a in self._weights.values()]
        )
        return ort.InferenceSession(graph.serialized(), options, providers=["CPUExecutionProvider"])

    def encode(self, tiles: np.ndarray) -> np.ndarray:
        """Embeddings for a batch of normalized tiles: (tiles, tokens per tile, output width)."""
        (out,) = self._session.run(None, {"pixels": np.ascontiguousarray(tiles, dtype=np.float32)})
        return np.ascontiguousarray(out, dtype=np.float32)


class _Graph:
    """The encoder as an ONNX graph: standard operators plus three of ONNX Runtime's own
    (DynamicQuantizeMatMul, MultiHeadAttention, FastGelu, the tanh GELU SigLIP uses)."""

    def __init__(self, w: ProjectorWeights, shape, *, quantized: bool, sink: dict[str, np.ndarray] | BinaryIO):
        """Weights go to ``sink`` as they are made: a dict (to hand to the session) or a file
        the graph names (written page-aligned, so that ONNX Runtime can map them)."""
        from onnx import helper, numpy_helper

        self._helper, self._numpy_helper = helper, numpy_helper
        self.w, self.quantized, self._sink = w, quantized, sink
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0
        self._build(shape)

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{kind}_{self._count}"

    def _const(self, array: np.ndarray) -> str:
        name = self._name("w")
        array = np.ascontiguousarray(array)
        if array.size >= 1024:  # weights: outside the graph, which names where they are
            from onnx import TensorProto

            if isinstance(self._sink, dict):
                self._sink[name] = array
                location, offset = "given-to-the-session", 0
            else:
                offset = -(-self._sink.tell() // _PAGE) * _PAGE
                self._sink.seek(offset)
                self._sink.write(array.tobytes())
                location = _WEIGHTS_FILE
            tensor = TensorProto(name=name, data_type=_ONNX_TYPES[array.dtype.str], dims=array.shape)
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", str(offset)), ("length", str(array.nbytes))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            self.initializers.append(tensor)
        else:
            self.initializers.append(self._numpy_helper.from_array(array, name))
        return name

    def _op(self, kind: str, inputs: list[str], *, domain: str = "", outputs: int = 1, **attributes) -> list[str]:
        names = [self._name(kind) for _ in range(outputs)]
        self.nodes.append(self._helper.make_node(kind, inputs, names, domain=domain, **attributes))
        return names

    def _one(self, kind: str, inputs: list[str], **kw) -> str:
        return self._op(kind, inputs, **kw)[0]

    def _linear(self, x: str, prefixes: list[str]) -> str:
        """x @ W.T + b, with the weights of ``prefixes`` side by side (q, k and v in one product)."""
        w = self.w
        weight = np.concatenate([w.f32(p + ".weight") for p in prefixes], axis=0)  # (out, in)
        biases = [p + ".bias" for p in prefixes if w.has(p + ".bias")]
        bias = np.concatenate([w.f32(b) for b in biases]) if len(biases) == len(prefixes) else None
        if not self.quantized:
            y = self._one("MatMul", [x, self._const(weight.T)])
            return self._one("Add", [y, self._const(bias)]) if bias is not None else y
        q, scale = int8_per_row(weight)
        inputs = [x, self._const(q.T), self._const(scale), self._const(np.zeros(len(scale), np.int8))]
        if bias is not None:
            inputs.append(self._const(bias))
        return self._one("DynamicQuantizeMatMul", inputs, domain="com.microsoft")

    def _layer_norm(self, x: str, prefix: str) -> str:
        w = self.w
        scale, bias = self._const(w.f32(prefix + ".weight")), self._const(w.f32(prefix + ".bias"))
        return self._one("LayerNormalization", [x, scale, bias], axis=-1, epsilon=self.eps)

    def _reshape(self, x: str, *dims: int) -> str:
        return self._one("Reshape", [x, self._const(np.array(dims, np.int64))])

    def _build(self, s) -> None:
        from onnx import TensorProto

        w, e, g = self.w, s.n_embd, s.geometry
        self.eps = s.eps
        side, scale = s.side, g.scale_factor
        n_pos = side * side

        conv_inputs = ["pixels", self._const(w.f32("v.patch_embd.weight"))]
        if w.has("v.patch_embd.bias"):
            conv_inputs.append(self._const(w.f32("v.patch_embd.bias")))
        x = self._one("Conv", conv_inputs, kernel_shape=[g.patch_size] * 2, strides=[g.patch_size] * 2)
        x = self._one("Transpose", [self._reshape(x, 0, e, n_pos)], perm=[0, 2, 1])  # (B, patches, E)
        x = self._one("Add", [x, self._const(w.f32("v.position_embd.weight"))])
        if w.has("v.pre_ln.weight"):
            x = self._layer_norm(x, "v.pre_ln")
        split = self._const(np.array([e, e, e], np.int64))
        for i in range(s.n_layer):
            p = f"v.blk.{i}."
            qkv = self._linear(self._layer_norm(x, p + "ln1"), [p + "attn_q", p + "attn_k", p + "attn_v"])
            q, k, v = self._op("Split", [qkv, split], outputs=3, axis=-1)
            attention = self._one("MultiHeadAttention", [q, k, v], domain="com.microsoft", num_heads=s.n_head)
            x = self._one("Add", [x, self._linear(attention, [p + "attn_out"])])
            up = self._linear(self._layer_norm(x, p + "ln2"), [p + "ffn_up"])
            x = self._one(
                "Add", [x, self._linear(self._one("FastGelu", [up], domain="com.microsoft"), [p + "ffn_down"])]
            )
        if w.has("v.post_ln.weight"):
            x = self._layer_norm(x, "v.post_ln")
        # Pixel shuffle: each scale x scale block of patches becomes one token, as libmtmd does it.
        m = side // scale
        x = self._one("Transpose", [self._reshape(x, 0, side, m, scale * e)], perm=[0, 2, 1, 3])
        x = self._one("Transpose", [self._reshape(x, 0, m, m, scale * scale * e)], perm=[0, 2, 1, 3])
        x = self._linear(self._reshape(x, 0, m * m, scale * scale * e), ["mm.model.fc"])
        self.nodes[-1].output[0] = "embeddings"
        h = self._helper
        self.graph = h.make_graph(
            self.nodes,
            "smolvlm_vision",
            [h.make_tensor_value_info("pixels", TensorProto.FLOAT, ["tiles", 3, g.tile_size, g.tile_size])],
            [
                h.make_tensor_value_info(
                    "embeddings", TensorProto.FLOAT, ["tiles", m * m, w.get("mm.model.fc.weight").shape[0]]
                )
            ],
            self.initializers,
        )

    def serialized(self) -> bytes:
        h = self._helper
        model = h.make_model(self.graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
        model.ir_version = 8  # what every ONNX Runtime since 1.10 reads
        self.graph = self.initializers = self.nodes = None  # type: ignore[assignment]
        return model.SerializeToString()
