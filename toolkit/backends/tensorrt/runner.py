"""TensorRT 10: engine from ONNX (FP32, FP16, INT8 from QDQ) and a runner with device buffers and CUDA events.

TensorRT and cuda-python are imported only when used (`pip install 'rtk[tensorrt]'`). An engine is only
valid for the TensorRT version and GPU that built it, so every engine gets a sidecar `<engine>.json` with
those facts, its build settings, the source ONNX's sha256 and the ModelMeta (key "meta"); the runner
refuses an engine whose sidecar names another TensorRT version or GPU before TensorRT is asked to load it.

INT8 is explicit quantization: the ONNX carries Q/DQ nodes (`rtk quantize --int8 --target tensorrt`) and
the network is built strongly typed, so no INT8 flag or calibrator is set (TensorRT 10's documented path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.artifact import ModelMeta, atomic_path, now_iso, sidecar_path, write_json
from toolkit.backends.base import Runner
from toolkit.errors import RtkError
from toolkit.backends.tensorrt.check import BatchProfile

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


def check_compatible(sidecar: dict[str, Any], *, tensorrt: str, gpu: str, compute_capability: str,
                     path: Path) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU (engines are not portable)."""
    built = sidecar.get("tensorrt")
    if built != tensorrt:
        raise RtkError(f"{path}: built with TensorRT {built}, this machine has {tensorrt}; rebuild it here with "
                       "`rtk compile --target tensorrt`")
    if sidecar.get("compute_capability") != compute_capability or sidecar.get("gpu") != gpu:
        raise RtkError(f"{path}: built for {sidecar.get('gpu')} (sm {sidecar.get('compute_capability')}), this GPU "
                       f"is {gpu} (sm {compute_capability}); rebuild it here with `rtk compile --target tensorrt`")


def read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise RtkError(f"{path}: its sidecar {side.name} is missing; rebuild with `rtk compile --target tensorrt`")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError:
        raise RtkError(f"{side}: not valid JSON; rebuild with `rtk compile --target tensorrt`") from None


def engine_from_onnx(source: Path, output: Path, *, meta: ModelMeta, precision: str, profile: BatchProfile | None,
                     workspace_mb: int | None, timing_cache: Path | None, source_sha256: str) -> dict[str, Any]:
    """Build and write a serialized engine and its sidecar; returns the sidecar's content.

    `precision` is fp32 (TF32 allowed, TensorRT's default), fp16 (FP16 kernels allowed) or int8 (the ONNX
    has Q/DQ; the network is strongly typed). `profile` covers a dynamic batch axis.
    """
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if precision == "int8" else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise RtkError(f"{source}: TensorRT's ONNX parser refused it ({errors[:300]}); "
                       "run `rtk compile --target tensorrt --check-only` for details")
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    inp = network.get_input(0)
    shapes = None
    if any(d < 0 for d in inp.shape):
        if profile is None:
            raise RtkError(f"{source}: dynamic batch needs a profile; give --min-batch/--opt-batch/--max-batch")
        rest = tuple(inp.shape)[1:]
        shapes = {k: (getattr(profile, k), *rest) for k in ("min", "opt", "max")}
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(inp.name, shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RtkError(f"{source}: TensorRT could not build an engine (see the log above); try a larger "
                       "--workspace-mb or --check-only")
    sidecar = {"tensorrt": trt.__version__, **gpu_facts(), "precision": precision, "input": inp.name,
               "input_shape": list(inp.shape), "profile": shapes and {k: list(v) for k, v in shapes.items()},
               "workspace_mb": workspace_mb, "source": Path(source).name, "source_sha256": source_sha256,
               "built_at": now_iso(), "meta": meta.model_dump(mode="json")}
    with atomic_path(output) as tmp:
        tmp.write_bytes(bytes(serialized))
        write_json(sidecar_path(output), sidecar)
    if timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return sidecar


class TensorRTRunner(Runner):
    """A deserialized engine with pinned host and device buffers sized for the profile's largest batch."""

    target = "tensorrt"

    def load(self) -> None:
        trt = import_tensorrt()
        self.cudart = cudart = import_cudart()
        self.sidecar = read_sidecar(self.path)
        check_compatible(self.sidecar, tensorrt=trt.__version__, path=self.path, **gpu_facts())
        self._allocs: list[Any] = []
        self._hosts: list[Any] = []
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RtkError(f"{self.path}: TensorRT could not deserialize it; rebuild with "
                           "`rtk compile --target tensorrt`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        shape = tuple(self.engine.get_tensor_shape(self.input))
        self._static = shape[0] >= 0
        self.max_batch = shape[0] if self._static else self.engine.get_tensor_profile_shape(self.input, 0)[2][0]
        self.min_batch = shape[0] if self._static else self.engine.get_tensor_profile_shape(self.input, 0)[0][0]
        self.in_shape = shape[1:]
        self.out_shape = tuple(self.engine.get_tensor_shape(self.output))[1:]
        self.in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input)))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output)))
        self.h_in, self.d_in = self._buffers(self.in_dtype, (self.max_batch, *self.in_shape))
        self.h_out, self.d_out = self._buffers(self.out_dtype, (self.max_batch, *self.out_shape))
        self.context.set_tensor_address(self.input, int(self.d_in))
        self.context.set_tensor_address(self.output, int(self.d_out))
        self.stream = cuda_call(cudart.cudaStreamCreate())
        self.events = [cuda_call(cudart.cudaEventCreate()) for _ in range(4)]

    def _buffers(self, dtype: np.dtype, shape: tuple[int, ...]) -> tuple[np.ndarray, Any]:
        import ctypes

        nbytes = int(np.prod(shape)) * dtype.itemsize
        host_ptr = cuda_call(self.cudart.cudaMallocHost(nbytes))
        self._hosts.append(host_ptr)
        host = np.frombuffer((ctypes.c_byte * nbytes).from_address(int(host_ptr)), dtype=dtype).reshape(shape)
        device = cuda_call(self.cudart.cudaMalloc(nbytes))
        self._allocs.append(device)
        return host, device

    @property
    def fixed_batch(self) -> int | None:
        return self.max_batch if self._static or self.min_batch == self.max_batch else None

    def _run(self, batch: np.ndarray, timed: bool) -> tuple[np.ndarray, dict[str, float] | None]:
        cudart = self.cudart
        n = len(batch)
        if not self.min_batch <= n <= self.max_batch:
            raise RtkError(f"{self.path}: batch {n} is outside the engine's profile {self.min_batch}-"
                           f"{self.max_batch}; rebuild with --min-batch/--max-batch covering {n}")
        if not self._static:
            self.context.set_input_shape(self.input, (n, *self.in_shape))
        self.h_in[:n] = batch
        in_bytes = n * self.h_in[0].nbytes
        out_bytes = n * self.h_out[0].nbytes
        start, h2d, compute, d2h = self.events
        kind = cudart.cudaMemcpyKind
        cuda_call(cudart.cudaEventRecord(start, self.stream))
        cuda_call(cudart.cudaMemcpyAsync(self.d_in, self.h_in.ctypes.data, in_bytes,
                                         kind.cudaMemcpyHostToDevice, self.stream))
        cuda_call(cudart.cudaEventRecord(h2d, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RtkError(f"{self.path}: TensorRT execution failed (see the log above)")
        cuda_call(cudart.cudaEventRecord(compute, self.stream))
        cuda_call(cudart.cudaMemcpyAsync(self.h_out.ctypes.data, self.d_out, out_bytes,
                                         kind.cudaMemcpyDeviceToHost, self.stream))
        cuda_call(cudart.cudaEventRecord(d2h, self.stream))
        cuda_call(cudart.cudaStreamSynchronize(self.stream))
        phases = None
        if timed:
            pairs = ((start, h2d), (h2d, compute), (compute, d2h))
            ms = [cuda_call(cudart.cudaEventElapsedTime(a, b)) for a, b in pairs]
            phases = dict(zip(("h2d", "compute", "d2h"), (float(v) for v in ms)))
        return self.h_out[:n].astype(np.float32, copy=True), phases

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits; a batch larger than the profile's maximum runs in chunks of that maximum."""
        x = np.ascontiguousarray(batch, dtype=self.in_dtype)
        if len(x) <= self.max_batch:
            return self._run(x, timed=False)[0]
        return np.concatenate([self._run(x[i:i + self.max_batch], timed=False)[0]
                               for i in range(0, len(x), self.max_batch)])

    def infer_phases(self, batch: np.ndarray) -> dict[str, float] | None:
        """GPU milliseconds of host-to-device copy, engine compute and device-to-host copy (CUDA events)."""
        return self._run(np.ascontiguousarray(batch, dtype=self.in_dtype), timed=True)[1]

    def close(self) -> None:
        cudart = getattr(self, "cudart", None)
        if cudart is None:
            return
        for event in getattr(self, "events", []):
            cudart.cudaEventDestroy(event)
        if getattr(self, "stream", None) is not None:
            cudart.cudaStreamDestroy(self.stream)
        for ptr in getattr(self, "_allocs", []):
            cudart.cudaFree(ptr)
        for ptr in getattr(self, "_hosts", []):
            cudart.cudaFreeHost(ptr)
        self.context = self.engine = self.stream = self.h_in = self.h_out = None
        self.events, self._allocs, self._hosts = [], [], []

    def describe(self) -> dict[str, object]:
        return {"target": self.target, "version": self.sidecar.get("tensorrt"), "device": self.sidecar.get("gpu"),
                "compute_capability": self.sidecar.get("compute_capability"),
                "precision": self.sidecar.get("precision"), "profile": self.sidecar.get("profile")}
