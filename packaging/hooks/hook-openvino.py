# OpenVINO finds its device plugins next to libopenvino at run time, so nothing imports them
# and they are collected here. SmolChat runs OpenVINO on the CPU only and builds its network
# in Python, so the GPU and NPU plugins and the model-format readers (ONNX, PyTorch, ...;
# about 80 MB) stay out. The TensorFlow reader stays: `import openvino` loads it.
from PyInstaller.utils.hooks import collect_dynamic_libs, collect_submodules

_LEFT_OUT = (
    "intel_gpu_plugin",
    "intel_npu_plugin",
    "onnx_frontend",
    "paddle_frontend",
    "pytorch_frontend",
    "jax_frontend",
    "gguf_frontend",
    "tensorflow_lite_frontend",
)

binaries = [
    (source, dest) for source, dest in collect_dynamic_libs("openvino") if not any(part in source for part in _LEFT_OUT)
]
_UNUSED_MODULES = (
    "openvino.tools",
    "openvino.torch",
    "openvino.frontend.onnx",
    "openvino.frontend.paddle",
    "openvino.frontend.pytorch",
    "openvino.frontend.jax",
    "openvino.frontend.tensorflow_lite",
)
hiddenimports = collect_submodules("openvino", filter=lambda name: not name.startswith(_UNUSED_MODULES))
