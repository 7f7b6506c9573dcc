"""OpenVINO runner for `.xml` and `.onnx`, compiled with a performance hint: LATENCY for one request at a time,
THROUGHPUT for parallel requests, which `infer_many` drives through an AsyncInferQueue.

Inputs are copied into the requests' own tensors (`share_inputs=False`), never shared: OpenVINO's CPU plugin keeps
a pointer to a shared input after the call returns, and once the array was freed, a later request that copies its
input (an AsyncInferQueue's) wrote into that freed memory and corrupted the heap: a segfault when one runner ran
`toolkit.predict.run_photos` twice, as the photo benchmark does (tests/test_openvino.py). The copy costs about 1%
of a batch-1 INT8 call (AMD EPYC Zen 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from toolkit.backends.base import Runner
from toolkit.backends.openvino.loader import core, one_line, read_model, require_bin
from toolkit.backends.openvino.precision import (HINT, RUNTIME_PATH, bare_default, executed, require_bf16,
                                                 runtime_config, summary)
from toolkit.errors import RtkError

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


class OpenVINORunner(Runner):
    """One `.xml` or `.onnx` compiled for an OpenVINO device with a LATENCY or THROUGHPUT hint."""

    target = "openvino"

    def load(self) -> None:
        hint = self.options.hint.lower()
        if hint not in HINTS:
            raise RtkError(f"--hint {self.options.hint!r}: choose latency or throughput")
        if self.path.suffix.lower() == ".xml":
            require_bin(self.path)
        ov_core = core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[hint]}
        if self.options.cache_dir is not None:
            Path(self.options.cache_dir).mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(self.options.cache_dir)
        if self.options.threads:
            config["INFERENCE_NUM_THREADS"] = self.options.threads
        if self.meta.precision == "bf16":
            require_bf16()
        precision = self.options.inference_precision or runtime_config(self.meta.precision).get(HINT)
        if precision and self.options.device.upper().startswith("CPU"):
            config[HINT] = precision
        try:
            self.compiled = ov_core.compile_model(str(self.path), self.options.device, config)
        except Exception as exc:
            raise RtkError(f"{self.path}: OpenVINO cannot compile it for {self.options.device} "
                           f"({one_line(exc)})") from None
        self.request = self.compiled.create_infer_request()
        self._queue = self._async = None
        shape = self.compiled.input(0).get_partial_shape()
        self._batch = shape[0].get_length() if shape[0].is_static else None
        self._dtype = self.compiled.input(0).get_element_type().to_dtype()    # uint8 where preprocessing is embedded

    @property
    def fixed_batch(self) -> int | None:
        return self._batch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(batch, dtype=self._dtype)}, share_inputs=False)
        return self.request.get_output_tensor(0).data.copy()

    @property
    def parallel_requests(self) -> int:
        return int(self._property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") or 1)

    def infer_many(self, batch: np.ndarray, count: int) -> None:
        """`count` inferences spread over the device's optimal number of parallel requests."""
        import openvino as ov

        if self._queue is None:
            self._queue = ov.AsyncInferQueue(self.compiled, self.parallel_requests)
        x = np.ascontiguousarray(batch, dtype=self._dtype)
        for _ in range(count):
            self._queue.start_async({0: x}, share_inputs=False)
        self._queue.wait_all()

    def infer_async(self, batch: np.ndarray, done: Callable[[np.ndarray, float], None]) -> None:
        """Through an AsyncInferQueue of the device's optimal number of requests; `done` gets the logits and
        OpenVINO's own timing of the request (`InferRequest.latency`), not the time spent queued."""
        import openvino as ov

        if self._async is None:
            self._async = ov.AsyncInferQueue(self.compiled, self.parallel_requests)
            self._async.set_callback(lambda request, call: call(request.get_output_tensor(0).data.copy(),
                                                                 request.latency))
        self._async.start_async({0: np.ascontiguousarray(batch, dtype=self._dtype)}, done, share_inputs=False)

    def wait_async(self) -> None:
        if self._async is not None:
            self._async.wait_all()

    def request_pool(self, size: int) -> Callable[[np.ndarray], np.ndarray] | None:
        """`size` InferRequests of their own, each taken by one call at a time (THROUGHPUT's streams run them in
        parallel); None with a single request (LATENCY)."""
        import queue

        if self.parallel_requests < 2:
            return None
        free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(size):
            free.put(self.compiled.create_infer_request())

        def infer(batch: np.ndarray) -> np.ndarray:
            request = free.get()
            try:
                request.infer({0: np.ascontiguousarray(batch, dtype=self._dtype)}, share_inputs=False)
                return request.get_output_tensor(0).data.copy()
            finally:
                free.put(request)
        return infer

    def executed_precision(self) -> str:
        return summary(executed(self.compiled))

    def precision_facts(self) -> dict[str, object]:
        """What ran, and what a bare `compile_model(path, device)` would run instead when that differs."""
        layers = executed(self.compiled)
        facts: dict[str, object] = {"executed_precision": summary(layers), "executed_layers": layers}
        if self.options.device.upper().startswith("CPU"):
            bare = bare_default(self.options.device)
            mine = self._property(HINT)
            if mine is not None and mine.get_type_name() != bare:
                ran = mine.get_type_name()
                facts["bare_compile_differs"] = (
                    f"a bare core.compile_model(path, '{self.options.device}') computes float layers in {bare} on "
                    f"this CPU, rtk ran {ran}: pass {HINT}={ran}"
                    + (" (the IR's rt_info rtk/runtime_config records it)" if self._recorded_hint() == ran else ""))
        return facts

    def _recorded_hint(self) -> str | None:
        """The INFERENCE_PRECISION_HINT the IR's rt_info rtk/runtime_config records (None for an ONNX file, or an
        IR without it)."""
        if self.path.suffix.lower() != ".xml":
            return None
        model = read_model(self.path)
        key = [*RUNTIME_PATH, HINT]
        return str(model.get_rt_info(key).astype(str)) if model.has_rt_info(key) else None

    def _property(self, name: str) -> Any:
        try:
            return self.compiled.get_property(name)
        except Exception:
            return None

    def close(self) -> None:
        self._queue = self._async = self.request = self.compiled = None

    def describe(self) -> dict[str, object]:
        import openvino as ov

        precision = self._property(HINT)
        return {"target": self.target, "version": ov.get_version(), "device": self.options.device,
                "hint": self.options.hint.lower(), "streams": self._property("NUM_STREAMS"),
                "infer_requests": self._property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"),
                "threads": self._property("INFERENCE_NUM_THREADS") or "default",
                "inference_precision": precision.get_type_name() if precision is not None else None,
                **self.precision_facts(),
                "cache_dir": str(self.options.cache_dir) if self.options.cache_dir else None}
