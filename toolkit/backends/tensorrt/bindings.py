"""TensorRT and cuda-python, imported only when used and checked against what rtk needs before any work.

rtk supports TensorRT 10.x and 11.x (api.py lists every name it uses, per major; CI checks the list against
the real bindings of 10.0, 10.16, 11.0 and 11.4) and cuda-python 12.6 or newer (`cuda.bindings.runtime`).
A desktop GPU gets both from pip (the `tensorrt-cu12` / `tensorrt-cu13` extras); a Jetson uses the TensorRT
that JetPack installs as a system package. `origin` tells which way each was found.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
from typing import Any

from toolkit.backends import BACKENDS
import toolkit.backends.tensorrt.api as api   # not `from toolkit.backends.tensorrt import api`: a cycle
from toolkit.errors import RtkError

SUPPORTED = "TensorRT 10.x or 11.x"
INSTALL = BACKENDS["tensorrt"].install


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:4])


@functools.cache
def import_tensorrt() -> Any:
    """The `tensorrt` module, refused with one line when its major is unsupported or it lacks a name rtk uses."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        if importlib.util.find_spec("tensorrt") is None:
            raise RtkError(f"target tensorrt needs {SUPPORTED}: {INSTALL}") from None
        raise RtkError(f"TensorRT is installed but does not import ({str(exc).splitlines()[0]}): its libraries "
                       f"are missing or broken; reinstall: {INSTALL}") from None
    major = version_tuple(trt.__version__)[0]
    if major not in api.TENSORRT_MAJORS:
        raise RtkError(f"TensorRT {trt.__version__} is installed; rtk supports {SUPPORTED}: {INSTALL}")
    absent = api.missing(trt, api.used_on(api.TENSORRT, major))
    if absent:
        raise RtkError(f"TensorRT {trt.__version__} lacks {', '.join(absent)}, which rtk uses; install a newer "
                       f"{major}.x: {INSTALL}")
    return trt


@functools.cache
def import_cudart() -> Any:
    """cuda-python's runtime API (`cuda.bindings.runtime`, cuda-python 12.6 or newer), checked like TensorRT."""
    try:
        import cuda.bindings
        from cuda.bindings import runtime as cudart
    except ImportError:
        raise RtkError(f"target tensorrt needs cuda-python 12.6 or newer: {INSTALL}") from None
    major = version_tuple(cuda.bindings.__version__)[0]
    absent = api.missing(cudart, api.used_on(api.CUDART, major)) if major in api.CUDA_MAJORS else ["(its major)"]
    if absent:
        raise RtkError(f"cuda-python {cuda.bindings.__version__} lacks {', '.join(absent)}, which rtk uses; rtk "
                       f"supports cuda-python 12.6+ and 13.x: {INSTALL}")
    return cudart


def major_minor(trt: Any) -> tuple[int, int]:
    return version_tuple(trt.__version__)[:2]


def network_flags(trt: Any) -> int:
    """Strongly typed on every major: the ONNX's types are the engine's (TensorRT 11 has no other mode; on 10 the
    flag asks for it). FP16 and INT8 come from the ONNX (FP16 tensors, Q/DQ), never from builder flags."""
    if major_minor(trt)[0] < 11:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _created(factory: Any, trt: Any, what: str) -> Any:
    """`factory(logger)`, with TensorRT's 'factory function returned nullptr' (no usable GPU) as one line."""
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        return factory(logger), logger
    except TypeError as exc:
        if "nullptr" not in str(exc):
            raise
        raise RtkError(f"TensorRT {trt.__version__} could not create its {what} (it returned nothing: no usable "
                       f"NVIDIA GPU, or a driver too old for this TensorRT); check `nvidia-smi` and `rtk doctor`") from None


def new_builder(trt: Any) -> tuple[Any, Any]:
    """(trt.Builder, its logger)."""
    return _created(trt.Builder, trt, "builder")


def new_runtime(trt: Any) -> tuple[Any, Any]:
    """(trt.Runtime, its logger)."""
    return _created(trt.Runtime, trt, "runtime")


def cuda_call(result: Any) -> Any:
    """Unwrap a cuda-python `(err, value...)` tuple, turning a CUDA error into a one-line RtkError."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RtkError(f"CUDA call failed: {getattr(err, 'name', err)}; check the GPU with `nvidia-smi`")
    return values[0] if len(values) == 1 else (tuple(values) or None)


def origin(module: str, *providers: str) -> dict[str, str | None]:
    """How `module` is installed: its version, "pip wheel <distribution>" or "system package", and where it lives.

    `providers` are further top-level names whose distribution provides it (pip's `tensorrt` is two lines over
    the `tensorrt_bindings` wheel; JetPack's system `tensorrt` has neither pip metadata nor that package).
    """
    spec = importlib.util.find_spec(module.split(".")[0])
    if spec is None:
        return {"version": None, "found": None, "location": None}
    location = str(spec.submodule_search_locations[0] if spec.submodule_search_locations else spec.origin)
    provided = importlib.metadata.packages_distributions()
    for top in (module.split(".")[0], *providers):
        for name in provided.get(top, []):
            dist = importlib.metadata.distribution(name)
            installer = (dist.read_text("INSTALLER") or "").strip()
            how = f"pip wheel {dist.metadata['Name']}" if installer in ("pip", "uv") else (
                f"system package ({installer or 'no installer recorded'})")
            return {"version": dist.version, "found": how, "location": location}
    return {"version": None, "found": "system package (no Python package metadata, e.g. JetPack)", "location": location}


def tensorrt_cuda_major() -> int | None:
    """The CUDA major of a pip-installed TensorRT (its `tensorrt-cu12` / `-cu13` distribution), None otherwise."""
    for name in importlib.metadata.packages_distributions().get("tensorrt_bindings", []):
        found = re.search(r"cu(\d+)", name)
        if found:
            return int(found.group(1))
    return None
