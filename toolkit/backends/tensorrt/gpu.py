"""The GPU check that runs before any TensorRT work, and the GPU facts an engine's sidecar records.

Without a usable GPU TensorRT fails late and obscurely (`trt.Builder(logger)` raises "pybind11::init(): factory
function returned nullptr"). rtk asks the CUDA runtime first, through cuda-python, and names what it found and
what is needed in one line: no NVIDIA driver, a driver too old for the CUDA build of cuda-python or TensorRT,
no GPU, or another CUDA start-up failure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from toolkit.backends.tensorrt.bindings import cuda_call, import_cudart, import_tensorrt, origin, tensorrt_cuda_major
from toolkit.errors import RtkError

# the oldest Linux driver for each CUDA major (NVIDIA's CUDA toolkit release notes)
MIN_DRIVER = {12: "525.60.13", 13: "580.65.06"}
OLD_DRIVER, NO_DEVICE = "cudaErrorInsufficientDriver", "cudaErrorNoDevice"   # cudaError_t member names


@dataclass(frozen=True)
class CudaState:
    """What the CUDA runtime reports on this machine, before any device work."""

    driver: int                 # cudaDriverGetVersion: the CUDA version the driver supports (12080 = 12.8); 0: none
    runtime: int                # cudaRuntimeGetVersion: the CUDA version cuda-python's runtime was built for
    devices: int                # cudaGetDeviceCount (0 when it failed)
    error: str | None           # cudaGetDeviceCount's error name, None when it succeeded
    error_text: str = ""


def cuda_text(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def cuda_state(cudart: Any) -> CudaState:
    driver = cuda_call(cudart.cudaDriverGetVersion())
    runtime = cuda_call(cudart.cudaRuntimeGetVersion())
    err, count = cudart.cudaGetDeviceCount()
    if int(err) == 0:
        return CudaState(driver=driver, runtime=runtime, devices=count, error=None)
    text = cuda_call(cudart.cudaGetErrorString(err))
    return CudaState(driver=driver, runtime=runtime, devices=0, error=err.name,
                     error_text=text.decode(errors="replace") if isinstance(text, bytes) else str(text))


def gpu_problem(state: CudaState, *, tensorrt_cuda: int | None = None) -> str | None:
    """One line saying what stops TensorRT on this machine and what is needed, or None when a GPU is usable."""
    if state.driver == 0:
        return ("no NVIDIA driver found (the CUDA runtime reports driver version 0); TensorRT needs an NVIDIA GPU "
                "with its driver installed: `nvidia-smi` must list the GPU")
    needs = [(f"cuda-python's runtime (CUDA {cuda_text(state.runtime)})", state.runtime // 1000)]
    if tensorrt_cuda:
        needs.append((f"TensorRT's CUDA {tensorrt_cuda} build", tensorrt_cuda))
    have = state.driver // 1000
    for what, major in needs:
        if have < major or state.error == OLD_DRIVER:
            other = f", or install the CUDA {have} builds: pip install 'rtk[tensorrt-cu{have}]'" if have in MIN_DRIVER else ""
            return (f"the NVIDIA driver supports CUDA {cuda_text(state.driver)}, too old for {what}: update the "
                    f"driver to {MIN_DRIVER.get(major, f'one for CUDA {major}')} or newer{other}")
    if state.error in (NO_DEVICE, None) and state.devices == 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return (f"the NVIDIA driver (CUDA {cuda_text(state.driver)}) finds no GPU{hint}; TensorRT needs one: "
                "check `nvidia-smi`")
    if state.error is not None:
        return (f"CUDA could not start ({state.error}: {state.error_text}); TensorRT needs a working GPU: check "
                "`nvidia-smi` and the driver")
    return None


def require_gpu() -> CudaState:
    """The CUDA state of a machine TensorRT can use; otherwise one line, before any work is done."""
    state = cuda_state(import_cudart())
    problem = gpu_problem(state, tensorrt_cuda=tensorrt_cuda_major())
    if problem:
        raise RtkError(problem)
    return state


def gpu_facts(device: int = 0) -> dict[str, str]:
    """Name and compute capability of the CUDA device an engine is built for or runs on."""
    cudart = import_cudart()
    props = cuda_call(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name, "compute_capability": f"{props.major}.{props.minor}"}


class TensorRTReport(BaseModel):
    """What `rtk doctor` says about TensorRT here: versions, which way each was found, and what stops it."""

    tensorrt: str | None
    tensorrt_found: str | None         # "pip wheel tensorrt-cu12" or "system package (...)"
    tensorrt_location: str | None
    tensorrt_cuda: int | None          # the CUDA major of a pip TensorRT
    cuda_python: str | None
    cuda_python_found: str | None
    cuda_driver: str | None            # the CUDA version the NVIDIA driver supports; "none" without a driver
    cuda_runtime: str | None           # the CUDA version of cuda-python's runtime
    gpu: str | None
    problem: str | None                # the first thing that stops TensorRT here, in rtk's words; None: ready


def tensorrt_report() -> TensorRTReport:
    trt, cuda = origin("tensorrt", "tensorrt_bindings"), origin("cuda.bindings")
    problem = state = None
    facts: dict[str, str] = {}
    try:
        version = import_tensorrt().__version__
    except RtkError as exc:
        version, problem = trt["version"], str(exc)
    try:
        state = cuda_state(import_cudart())
        problem = problem or gpu_problem(state, tensorrt_cuda=tensorrt_cuda_major())
        facts = gpu_facts() if problem is None else {}
    except RtkError as exc:
        problem = problem or str(exc)
    return TensorRTReport(tensorrt=version, tensorrt_found=trt["found"], tensorrt_location=trt["location"],
                          tensorrt_cuda=tensorrt_cuda_major(), cuda_python=cuda["version"],
                          cuda_python_found=cuda["found"],
                          cuda_driver=None if state is None else (cuda_text(state.driver) if state.driver else "none"),
                          cuda_runtime=None if state is None else cuda_text(state.runtime), gpu=facts.get("gpu"),
                          problem=problem)
