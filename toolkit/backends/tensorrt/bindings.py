"""TensorRT and cuda-python, imported only when used (`pip install 'rtk[tensorrt]'`), and the GPU's facts."""

from __future__ import annotations

from typing import Any

from toolkit.errors import RtkError

INSTALL = "pip install 'rtk[tensorrt]' on a machine with an NVIDIA GPU"


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise RtkError(f"target tensorrt needs TensorRT 10: {INSTALL}") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise RtkError(f"TensorRT {trt.__version__} is installed; rtk needs TensorRT 10: {INSTALL}")
    return trt


def import_cudart() -> Any:
    """cuda-python's runtime API (NVIDIA's own bindings; `cuda.bindings` since 12.6, `cuda.cudart` before)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise RtkError(f"the TensorRT runner needs cuda-python: {INSTALL}") from None
    return cudart


def cuda_call(result: Any) -> Any:
    """Unwrap a cuda-python `(err, value...)` tuple, turning a CUDA error into a one-line RtkError."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RtkError(f"CUDA call failed: {getattr(err, 'name', err)}; check the GPU with `nvidia-smi`")
    return values[0] if len(values) == 1 else (tuple(values) or None)


def gpu_facts(device: int = 0) -> dict[str, str]:
    """Name and compute capability of the CUDA device an engine is built for or runs on."""
    cudart = import_cudart()
    props = cuda_call(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name, "compute_capability": f"{props.major}.{props.minor}"}
