"""TensorRT runner: a deserialized engine with device buffers and CUDA events (h2d / compute / d2h phases).

Before TensorRT is asked to load anything, the GPU is checked (`gpu.require_gpu`) and the sidecar is held
against this TensorRT and GPU (`sidecar.check_compatible`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.backends.base import Runner
from toolkit.backends.tensorrt.bindings import cuda_call, import_cudart, import_tensorrt, new_runtime
from toolkit.backends.tensorrt.gpu import gpu_facts, require_gpu
from toolkit.backends.tensorrt.sidecar import check_compatible, read_sidecar
from toolkit.errors import RtkError


class TensorRTRunner(Runner):
    """A deserialized engine with pinned host and device buffers sized for the profile's largest batch."""

    target = "tensorrt"

    def load(self) -> None:
        trt = import_tensorrt()
        self.cudart = cudart = import_cudart()
        self.sidecar = read_sidecar(self.path)
        require_gpu()
        check_compatible(self.sidecar, tensorrt=trt.__version__, path=self.path, **gpu_facts())
        self._allocs: list[Any] = []
        self._hosts: list[Any] = []
        runtime, self._logger = new_runtime(trt)
        if self.sidecar.get("version_compatible"):
            runtime.engine_host_code_allowed = True   # the plan carries its lean runtime; rtk built it (sidecar)
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
        cuda_call(cudart.cudaEventRecord(start, self.stream))
        cuda_call(cudart.cudaMemcpyAsync(self.d_in, self.h_in.ctypes.data, in_bytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        cuda_call(cudart.cudaEventRecord(h2d, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RtkError(f"{self.path}: TensorRT execution failed (see the log above)")
        cuda_call(cudart.cudaEventRecord(compute, self.stream))
        cuda_call(cudart.cudaMemcpyAsync(self.h_out.ctypes.data, self.d_out, out_bytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
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
        import tensorrt as trt

        return {"target": self.target, "version": trt.__version__, "built_with": self.sidecar.get("tensorrt"),
                "version_compatible": self.sidecar.get("version_compatible", False),
                "device": self.sidecar.get("gpu"), "compute_capability": self.sidecar.get("compute_capability"),
                "precision": self.sidecar.get("precision"), "profile": self.sidecar.get("profile")}
