"""OpenVINO: IR from ONNX (builder), reading IRs and their metadata (loader), and a runner for `.xml` and `.onnx`.

The IR carries rtk's ModelMeta as JSON in its `rt_info` (key rtk/meta), so an `.xml` + `.bin` pair is a
complete artifact. Nothing here imports `openvino` until it is used.
"""

from toolkit.backends.openvino.builder import compile_ir, convert_onnx, ir_from_onnx, ir_output
from toolkit.backends.openvino.loader import META_PATH, bin_path, read_ir_meta, read_model
from toolkit.backends.openvino.runner import OpenVINORunner

__all__ = ["META_PATH", "OpenVINORunner", "bin_path", "compile_ir", "convert_onnx", "ir_from_onnx", "ir_output",
           "read_ir_meta", "read_model"]
