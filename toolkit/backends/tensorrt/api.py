"""Every TensorRT and cuda-python name rtk's TensorRT backend uses, with the majors it uses each on.

One list, three readers: the backend checks the installed TensorRT and cuda-python against it before any
work (a release that lacks a name fails with one line naming it, not with an AttributeError mid-build);
tests/test_trt_api.py imports the real Python bindings of each supported major on a CPU machine and checks
every name here exists there, enum members included; and the same test reads the backend's source (ast) to
prove every `trt.X`, `cudart.X` and TensorRT-object method it touches is listed, so a new call cannot skip
the check. Names are dotted paths from the module (`BuilderFlag.VERSION_COMPATIBLE`, `ICudaEngine.
get_tensor_name`); a method used on an object is listed under its class, and RECEIVERS says which variable
names the backend gives objects of each class.

This module imports nothing, so the conformance test can load it by path into a bare interpreter.
tests/trt_bindings.py names the releases it is checked against (the oldest and newest of each major).
"""

from __future__ import annotations

from typing import Any, Iterable

TENSORRT_MAJORS = (10, 11)
CUDA_MAJORS = (12, 13)
_TRT = frozenset(TENSORRT_MAJORS)
_CUDA = frozenset(CUDA_MAJORS)

# name -> the TensorRT majors rtk uses it on
TENSORRT: dict[str, frozenset[int]] = {
    "__version__": _TRT,
    "nptype": _TRT,
    "Logger": _TRT,
    "Logger.WARNING": _TRT,
    "Builder": _TRT,
    "Builder.create_network": _TRT,
    "Builder.create_builder_config": _TRT,
    "Builder.create_optimization_profile": _TRT,
    "Builder.build_serialized_network": _TRT,
    "BuilderFlag.VERSION_COMPATIBLE": _TRT,
    "BuilderFlag.TF32": _TRT,
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": frozenset({10}),  # 11 is always strongly typed (flag deprecated)
    "INetworkDefinition.get_input": _TRT,
    "ITensor.name": _TRT,
    "ITensor.shape": _TRT,
    "OnnxParser": _TRT,
    "OnnxParser.parse_from_file": _TRT,
    "OnnxParser.num_errors": _TRT,
    "OnnxParser.get_error": _TRT,
    "ParserError.desc": _TRT,
    "IBuilderConfig.set_memory_pool_limit": _TRT,
    "IBuilderConfig.set_flag": _TRT,
    "IBuilderConfig.get_flag": _TRT,
    "IBuilderConfig.create_timing_cache": _TRT,
    "IBuilderConfig.set_timing_cache": _TRT,
    "IBuilderConfig.get_timing_cache": _TRT,
    "IBuilderConfig.add_optimization_profile": _TRT,
    "ITimingCache.serialize": _TRT,
    "MemoryPoolType.WORKSPACE": _TRT,
    "IOptimizationProfile.set_shape": _TRT,
    "Runtime": _TRT,
    "Runtime.deserialize_cuda_engine": _TRT,
    "Runtime.engine_host_code_allowed": _TRT,
    "ICudaEngine.create_execution_context": _TRT,
    "ICudaEngine.num_io_tensors": _TRT,
    "ICudaEngine.get_tensor_name": _TRT,
    "ICudaEngine.get_tensor_mode": _TRT,
    "ICudaEngine.get_tensor_shape": _TRT,
    "ICudaEngine.get_tensor_dtype": _TRT,
    "ICudaEngine.get_tensor_profile_shape": _TRT,
    "TensorIOMode.INPUT": _TRT,
    "TensorIOMode.OUTPUT": _TRT,
    "IExecutionContext.set_input_shape": _TRT,
    "IExecutionContext.set_tensor_address": _TRT,
    "IExecutionContext.execute_async_v3": _TRT,
}

# name in cuda-python's runtime API (`cuda.bindings.runtime`) -> the cuda-python majors rtk uses it on
CUDART: dict[str, frozenset[int]] = {
    "cudaDriverGetVersion": _CUDA,
    "cudaRuntimeGetVersion": _CUDA,
    "cudaGetDeviceCount": _CUDA,
    "cudaGetErrorString": _CUDA,
    "cudaGetDeviceProperties": _CUDA,
    "cudaDeviceProp.name": _CUDA,
    "cudaDeviceProp.major": _CUDA,
    "cudaDeviceProp.minor": _CUDA,
    "cudaMalloc": _CUDA,
    "cudaMallocHost": _CUDA,
    "cudaFree": _CUDA,
    "cudaFreeHost": _CUDA,
    "cudaStreamCreate": _CUDA,
    "cudaStreamDestroy": _CUDA,
    "cudaStreamSynchronize": _CUDA,
    "cudaEventCreate": _CUDA,
    "cudaEventDestroy": _CUDA,
    "cudaEventRecord": _CUDA,
    "cudaEventElapsedTime": _CUDA,
    "cudaMemcpyAsync": _CUDA,
    "cudaMemcpyKind.cudaMemcpyHostToDevice": _CUDA,
    "cudaMemcpyKind.cudaMemcpyDeviceToHost": _CUDA,
}

# variable name in the backend -> the class of the object it holds (for methods and attributes on objects)
RECEIVERS = {
    "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser", "error": "ParserError",
    "config": "IBuilderConfig", "cache": "ITimingCache", "opt_profile": "IOptimizationProfile", "inp": "ITensor",
    "runtime": "Runtime", "engine": "ICudaEngine", "context": "IExecutionContext", "props": "cudaDeviceProp",
}


def used_on(table: dict[str, frozenset[int]], major: int) -> list[str]:
    """The names of `table` rtk uses with this major, sorted."""
    return sorted(name for name, majors in table.items() if major in majors)


def missing(module: Any, names: Iterable[str]) -> list[str]:
    """The dotted names that `module` lacks (empty when it has every one)."""
    absent = []
    for name in names:
        obj = module
        for part in name.split("."):
            if not hasattr(obj, part):
                absent.append(name)
                break
            obj = getattr(obj, part)
    return absent
