"""ONNX Runtime runner (CPU execution provider).

An FP16 ONNX of rtk's (`toolkit.fp16`, metadata precision fp16) runs as its CPU form: ONNX Runtime's CPU EP has
no FP16 Conv for x86 and would otherwise compute it in FP32 with only the weights rounded, so validating it
there would not measure FP16 (see toolkit/fp16.py). Its latency on this runner says nothing about FP16 speed.
"""

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
        model: str | bytes = str(self.path)
        if self.meta.precision == "fp16":
            from toolkit.onnx_file import load_onnx
            from toolkit.fp16 import cpu_form

            model = cpu_form(load_onnx(self.path)).SerializeToString()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        try:
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise RtkError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self._batch = inp.shape[0] if isinstance(inp.shape[0], int) else None

    @property
    def fixed_batch(self) -> int | None:
        return self._batch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        except Exception as exc:
            if type(exc).__name__ not in ("InvalidArgument", "Fail", "RuntimeException", "InvalidGraph"):
                raise
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise RtkError(f"{self.path}: ONNX Runtime cannot run it on a {batch.shape} image batch ({first})") from None

    def describe(self) -> dict[str, object]:
        import onnxruntime as ort

        facts = {"target": self.target, "version": ort.__version__, "providers": self.session.get_providers(),
                 "threads": self.options.threads or "default"}
        if self.meta.precision == "fp16":
            facts["fp16"] = "CPU form: FP32 arithmetic, every tensor rounded to FP16 between nodes"
        return facts
