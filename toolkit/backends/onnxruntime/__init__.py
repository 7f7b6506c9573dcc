"""ONNX Runtime backend."""

from toolkit.backends.onnxruntime.runner import OnnxRuntimeRunner

__all__ = ["OnnxRuntimeRunner"]
