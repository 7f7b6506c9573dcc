"""The runner protocol every runtime implements (after Polygraphy's runners, without the metaprogramming).

A runner is a context manager around one loaded artifact:

    with open_runner("model.onnx") as runner:
        logits = runner.infer(batch)          # NCHW float32 -> (N, classes) float32

Runners never time themselves beyond one call; `toolkit.bench` does the timing and the statistics.
A runtime that can split one call into phases (TensorRT: h2d, compute, d2h) also implements `infer_phases`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.artifact import ModelMeta


@dataclass(frozen=True, kw_only=True)
class RunnerOptions:
    """Settings any runner may honour; each runner ignores what does not apply to it."""

    threads: int | None = None
    hint: str = "latency"             # OpenVINO performance hint: latency | throughput
    device: str = "CPU"               # OpenVINO device name
    cache_dir: Path | None = None     # OpenVINO model cache
    inference_precision: str | None = None  # OpenVINO CPU compute type (f32, bf16); None: f32 for FP32 artifacts
    max_batch: int = 8                # largest batch a runner should expect (OpenVINO reshape, TRT profile)


class Runner(abc.ABC):
    """One artifact loaded in one runtime."""

    target: str = ""

    def __init__(self, path: Path, *, meta: ModelMeta, options: RunnerOptions | None = None):
        self.path = Path(path)
        self.meta = meta
        self.options = options or RunnerOptions()

    @property
    def fixed_batch(self) -> int | None:
        """The only batch size the artifact accepts, or None when any batch size works."""
        return None

    def __enter__(self) -> "Runner":
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def load(self) -> None:
        """Load the artifact into the runtime (may be slow; compile, allocate)."""

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a float32 NCHW batch."""

    def infer_phases(self, batch: np.ndarray) -> dict[str, float] | None:
        """Milliseconds per phase of one call (e.g. h2d/compute/d2h), for runtimes that can tell."""
        return None

    @property
    def parallel_requests(self) -> int:
        """Inferences `infer_many` keeps in flight at once. Time it over whole multiples of this: with 2 requests,
        7 inferences take as long as 8, since the last one runs while the other request idles."""
        return 1

    def infer_many(self, batch: np.ndarray, count: int) -> None:
        """Run `count` inferences of `batch`; runtimes with parallel requests (OpenVINO THROUGHPUT) overlap them.

        `toolkit.bench` times this call to report throughput; latency always comes from single `infer` calls.
        """
        for _ in range(count):
            self.infer(batch)

    def close(self) -> None:
        """Release the runtime's resources."""

    def describe(self) -> dict[str, object]:
        """Runtime facts for reports (version, device, threads)."""
        return {"target": self.target}
