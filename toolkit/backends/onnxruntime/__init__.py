"""ONNX Runtime: the runner for `.onnx` on the CPU execution provider (the FP32 baseline every report compares to)."""

from toolkit.backends.onnxruntime.runner import OnnxRuntimeRunner

__all__ = ["OnnxRuntimeRunner"]
