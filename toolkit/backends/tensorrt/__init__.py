"""TensorRT 10: engine from ONNX (builder), the engine's sidecar, a runner with device buffers and CUDA events,
and the CPU-side check of what TensorRT would refuse (check, which needs no TensorRT at all).

TensorRT and cuda-python are imported only when used (`pip install 'rtk[tensorrt]'`). An engine is only
valid for the TensorRT version and GPU that built it, so every engine gets a sidecar `<engine>.json` with
those facts; the runner refuses an engine whose sidecar names another TensorRT version or GPU before
TensorRT is asked to load it.
"""

from toolkit.backends.tensorrt.bindings import INSTALL, cuda_call, gpu_facts, import_cudart, import_tensorrt
from toolkit.backends.tensorrt.builder import ENGINE_SUFFIXES, BatchProfile, compile_engine, engine_from_onnx
from toolkit.backends.tensorrt.check import Finding, check_onnx, has_qdq, qdq_form
from toolkit.backends.tensorrt.runner import TensorRTRunner
from toolkit.backends.tensorrt.sidecar import check_compatible, read_engine_meta, read_sidecar

__all__ = ["ENGINE_SUFFIXES", "INSTALL", "BatchProfile", "Finding", "TensorRTRunner", "check_compatible",
           "check_onnx", "compile_engine", "cuda_call", "engine_from_onnx", "gpu_facts", "has_qdq", "import_cudart",
           "import_tensorrt", "qdq_form", "read_engine_meta", "read_sidecar"]
