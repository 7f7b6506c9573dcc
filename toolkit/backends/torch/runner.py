"""PyTorch eager runner: the FP32 reference."""

from __future__ import annotations

import numpy as np
import torch

from toolkit.backends.base import Runner
from toolkit.models import read_checkpoint


class TorchRunner(Runner):
    target = "torch"

    def load(self) -> None:
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        self.model, _ = read_checkpoint(self.path)
        self.model.eval()

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    def describe(self) -> dict[str, object]:
        return {"target": self.target, "version": torch.__version__, "threads": torch.get_num_threads()}
