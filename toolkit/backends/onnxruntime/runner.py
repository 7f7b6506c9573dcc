"""ONNX Runtime runner (CPU execution provider)."""

from __future__ import annotations

import numpy as np

from toolkit.backends.base import Runner
from toolkit.errors import RtkError


class OnnxRuntimeRunner(Runner):
    target = "onnxruntime"

    def load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if self.options.threads:
            opts.intra_op_num_threads = self.options.threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise RtkError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self._batch = inp.shape[0] if isinstance(inp.shape[0], int) else None

    @property
    def fixed_batch(self) -> int | None:
        return self._batch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def describe(self) -> dict[str, object]:
        import onnxruntime as ort

        return {"target": self.target, "version": ort.__version__, "providers": self.session.get_providers(),
                "threads": self.options.threads or "default"}
