"""The GPU faults TensorRT meets, each reported in one line (exit 2) before any work, with what was found.

Where this machine can give the real error, the test takes it: the real cuda-python (12.9 and 13.5) finds no
NVIDIA driver here; the real TensorRT bindings (10.16 and 11.4) behind the stand-in libraries of tests/
trt_bindings.py raise TensorRT's own "factory function returned nullptr", which is what TensorRT does without a
usable GPU (the stand-in returns NULL from the factory just as the real library does then). A too-old driver,
a machine without a GPU and other CUDA start-up failures cannot happen here: those are given to the classifier
as the CUDA runtime reports them (error names that the conformance run checks exist in both cuda-python majors).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from toolkit.backends.tensorrt.gpu import NO_DEVICE, OLD_DRIVER, CudaState, gpu_problem

from trt_bindings import CUDART, TENSORRT, run_rtk

NEWEST = {b.major: b for b in TENSORRT}   # the newest of each major (TENSORRT is oldest-first)

_STATE = """
import json
import cuda.bindings
from cuda.bindings import runtime
from toolkit.backends.tensorrt.gpu import cuda_state, gpu_problem
state = cuda_state(runtime)
print(json.dumps({"version": cuda.bindings.__version__, "state": state.__dict__, "problem": gpu_problem(state),
                  "errors": [e.name for e in runtime.cudaError_t]}))
"""


@pytest.mark.parametrize("cudart", CUDART, ids=lambda b: b.label)
def test_real_cuda_python_finds_no_driver_here(cudart):
    done = run_rtk(["-c", _STATE], tensorrt=None, cudart=cudart)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["version"] == cudart.requirements[0].split("==")[1]
    assert found["state"]["driver"] == 0 and found["state"]["error"] == OLD_DRIVER
    assert found["problem"].startswith("no NVIDIA driver found")
    assert {OLD_DRIVER, NO_DEVICE, "cudaErrorInitializationError"} <= set(found["errors"])


@pytest.mark.parametrize("major", sorted(NEWEST))
def test_compile_and_bench_stop_in_one_line_before_any_work(major, random_onnx, tmp_path):
    """`rtk compile --target tensorrt` with the real TensorRT and cuda-python installed, on a machine without a
    driver: exit 2, one line naming what is missing, nothing written; `rtk bench` on an engine the same."""
    engine = tmp_path / "m.engine"
    done = run_rtk(["-m", "toolkit.cli", "compile", str(random_onnx), "--target", "tensorrt", "--precision", "fp16",
                    "-o", str(engine)], tensorrt=NEWEST[major], cudart=CUDART[-1])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: no NVIDIA driver found (the CUDA runtime reports driver version 0); TensorRT needs an NVIDIA GPU "
        "with its driver installed: `nvidia-smi` must list the GPU"]
    assert list(tmp_path.iterdir()) == []
    engine.write_bytes(b"engine")
    engine.with_name("m.engine.json").write_text(json.dumps({"tensorrt": "10.16.1.11", "meta": {
        "num_classes": 2, "class_names": ["a", "b"]}}))
    done = run_rtk(["-m", "toolkit.cli", "bench", str(engine), "--runs", "1"], tensorrt=NEWEST[major],
                   cudart=CUDART[-1])
    assert done.returncode == 2 and done.stderr.startswith("error: no NVIDIA driver found"), done.stderr


_BUILDER = """
from toolkit.backends.tensorrt.bindings import import_tensorrt, new_builder, new_runtime
from toolkit.errors import RtkError
trt = import_tensorrt()
try:
    trt.Builder(trt.Logger(trt.Logger.WARNING))
except TypeError as exc:
    print("raw:", exc)
for make in (new_builder, new_runtime):
    try:
        make(trt)
    except RtkError as exc:
        print("rtk:", exc)
"""


@pytest.mark.parametrize("major", sorted(NEWEST))
def test_builder_without_a_usable_gpu_is_one_line(major):
    """The stand-in is acceptable here: it makes the factory return NULL exactly as TensorRT does without a GPU."""
    done = run_rtk(["-c", _BUILDER], tensorrt=NEWEST[major], cudart=CUDART[-1])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    version = NEWEST[major].requirements[0].split("==")[1]
    assert lines == ["raw: pybind11::init(): factory function returned nullptr",
                     f"rtk: TensorRT {version} could not create its builder (it returned nothing: no usable NVIDIA "
                     "GPU, or a driver too old for this TensorRT); check `nvidia-smi` and `rtk doctor`",
                     f"rtk: TensorRT {version} could not create its runtime (it returned nothing: no usable NVIDIA "
                     "GPU, or a driver too old for this TensorRT); check `nvidia-smi` and `rtk doctor`"]


def test_driver_too_old_no_gpu_and_init_failure(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    too_old = CudaState(driver=12020, runtime=13000, devices=0, error=OLD_DRIVER)
    assert gpu_problem(too_old) == (
        "the NVIDIA driver supports CUDA 12.2, too old for cuda-python's runtime (CUDA 13.0): update the driver to "
        "580.65.06 or newer, or install the CUDA 12 builds: pip install 'rtk[tensorrt-cu12]'")
    trt_too_new = CudaState(driver=12080, runtime=12090, devices=1, error=None)
    assert gpu_problem(trt_too_new) is None
    assert "too old for TensorRT's CUDA 13 build" in gpu_problem(trt_too_new, tensorrt_cuda=13)
    no_gpu = CudaState(driver=12080, runtime=12090, devices=0, error=NO_DEVICE)
    assert gpu_problem(no_gpu) == "the NVIDIA driver (CUDA 12.8) finds no GPU; TensorRT needs one: check `nvidia-smi`"
    failed = CudaState(driver=13000, runtime=13000, devices=0, error="cudaErrorInitializationError",
                       error_text="initialization error")
    assert gpu_problem(failed) == ("CUDA could not start (cudaErrorInitializationError: initialization error); "
                                   "TensorRT needs a working GPU: check `nvidia-smi` and the driver")


def test_doctor_reports_tensorrt_and_cuda_and_how_they_were_found(tmp_path):
    out = tmp_path / "doctor.json"
    done = run_rtk(["-m", "toolkit.cli", "doctor", "--json", str(out)], tensorrt=NEWEST[11], cudart=CUDART[0])
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())["tensorrt"]
    assert report["tensorrt"] == "11.4.0.106" and report["tensorrt_found"] == "pip wheel tensorrt_cu12_bindings"
    assert report["tensorrt_cuda"] == 12 and report["cuda_python"] == "12.9.10"
    assert report["cuda_python_found"] == "pip wheel cuda-bindings"
    assert report["cuda_driver"] == "none" and report["cuda_runtime"] == "12.9" and report["gpu"] is None
    assert report["problem"].startswith("no NVIDIA driver found")


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="nvidia-smi is here: gpu_check.sh runs for real")
def test_gpu_check_stops_in_one_line_without_a_gpu(tmp_path):
    script = Path(__file__).parents[1] / "benchmarks" / "gpu_check.sh"
    done = subprocess.run(["bash", str(script), str(tmp_path / "work")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "LIMIT": "1m"})
    assert done.returncode == 2 and not (tmp_path / "work").exists()
    assert done.stderr.strip() == "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); run this on a GPU machine"
