"""TensorRT 10.x and 11.x: engine from ONNX (builder), the engine's sidecar, a runner with device buffers and CUDA
events, the GPU check that runs before any of them (gpu), and the CPU-side check of what TensorRT would refuse
(check, which needs no TensorRT at all).

TensorRT and cuda-python are imported only when used, and checked against the names rtk uses (api), so an
unsupported release fails with one line. Networks are strongly typed on both majors: the ONNX carries the
precision (FP16 tensors from `toolkit.fp16`, INT8 Q/DQ). An engine is only valid for the TensorRT version and GPU
that built it (or later TensorRT versions, when built version-compatible), so every engine gets a sidecar
`<engine>.json` with those facts, checked before TensorRT is asked to load it.
"""

from toolkit.backends.tensorrt.bindings import INSTALL, SUPPORTED, cuda_call, import_cudart, import_tensorrt
from toolkit.backends.tensorrt.builder import (ENGINE_SUFFIXES, BatchProfile, EngineBuild, compile_engine,
                                               engine_from_onnx)
from toolkit.backends.tensorrt.check import Finding, check_onnx, has_qdq, qdq_form
from toolkit.backends.tensorrt.gpu import gpu_facts, require_gpu
from toolkit.backends.tensorrt.runner import TensorRTRunner
from toolkit.backends.tensorrt.sidecar import check_compatible, read_engine_meta, read_sidecar

__all__ = ["ENGINE_SUFFIXES", "INSTALL", "SUPPORTED", "BatchProfile", "EngineBuild", "Finding", "TensorRTRunner",
           "check_compatible", "check_onnx", "compile_engine", "cuda_call", "engine_from_onnx", "gpu_facts",
           "has_qdq", "import_cudart", "import_tensorrt", "qdq_form", "read_engine_meta", "read_sidecar",
           "require_gpu"]
