"""The runner protocol every runtime implements (after Polygraphy's runners, without the metaprogramming).

A runner is a context manager around one loaded artifact:

    with open_runner("model.onnx") as runner:
        logits = runner.infer(batch)          # NCHW float32 -> (N, classes) float32

Runners never time themselves beyond one call; `toolkit.bench` does the timing and the statistics.
A runtime that can split one call into phases (TensorRT: h2d, compute, d2h) also implements `infer_phases`.

A runtime with its own artifact format also has a builder, `compile_<format>(job: CompileJob) -> Compiled`,
which `rtk compile` reaches through the registry (`toolkit.backends.BACKENDS`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from toolkit.artifact import ModelMeta
from toolkit.errors import RtkError
from toolkit.settings import CompileSettings


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

    def batch_for(self, asked: int, flag: str) -> int:
        """The batch a call of `asked` images runs at: `asked`, or a static-batch artifact's own batch, which the
        default 1 becomes; another size is refused, naming the option (`flag`) that asked for it."""
        fixed = self.fixed_batch
        if fixed is None or asked in (1, fixed):
            return fixed or asked
        raise RtkError(f"{self.path}: the artifact has a static batch of {fixed}, not {asked}; give {flag} {fixed} or "
                       f"leave {flag} out, or export with a dynamic batch")

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

    def infer_async(self, batch: np.ndarray, done: Callable[[np.ndarray, float], None]) -> None:
        """Start inferring `batch`; `done(logits, ms)` is called with the result and the inference's own time
        (on another thread where the runtime has asynchronous requests). Default: synchronous."""
        import time

        t0 = time.perf_counter()
        logits = self.infer(batch)
        done(logits, (time.perf_counter() - t0) * 1e3)

    def wait_async(self) -> None:
        """Return once every `infer_async` call has called its `done`."""

    def request_pool(self, size: int) -> Callable[[np.ndarray], np.ndarray] | None:
        """A thread-safe `infer` over `size` requests of its own, for a pipeline whose threads each run their
        batch's inference (`toolkit.photos.inferred_batches`); None where the runtime has no parallel requests
        (the pipeline then feeds one inferring thread)."""
        return None

    def close(self) -> None:
        """Release the runtime's resources."""

    def executed_precision(self) -> str | None:
        """The precision the runtime actually computes in, read back from it (None: it cannot tell)."""
        return None

    def describe(self) -> dict[str, object]:
        """Runtime facts for reports (version, device, threads)."""
        return {"target": self.target}


def pad_rows(batch: np.ndarray, size: int | None) -> np.ndarray:
    """`batch` with rows of zeros appended up to `size` (a static batch's); as it is when it has that many or size
    is None."""
    if not size or len(batch) >= size:
        return batch
    return np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)])


def finite(logits: np.ndarray, path: Path) -> np.ndarray:
    """`logits` when every value is a number; NaN or Inf means a broken model, not a score, so it is refused."""
    logits = np.asarray(logits)
    if not np.isfinite(logits).all():
        bad = int((~np.isfinite(logits)).sum())
        raise RtkError(f"{path}: the model output {bad} NaN/Inf values of {logits.size}; its weights or graph are "
                       "broken (re-export or re-quantize it); no score is given for it")
    return logits


@dataclass(frozen=True, kw_only=True)
class CompileJob:
    """One `rtk compile` request after the checks every target shares: what a runtime's builder is given."""

    source: Path
    source_sha256: str
    model: Any                        # the source as an onnx.ModelProto (external data not loaded)
    meta: ModelMeta                   # the source's metadata
    settings: CompileSettings
    precision: str                    # settings.precision resolved: fp32 | fp16 | int8
    qdq: bool                         # the source carries Q/DQ nodes
    output: Path | None = None        # None: beside the source, with the format's extension
    calibration: Path | None = None   # images for NNCF INT8 at compile time (OpenVINO)
    say: Callable[[str], None] = lambda _msg: None

    def output_meta(self, *, target: str, batch: str) -> ModelMeta:
        """The compiled artifact's metadata: the source's, with this step in its history."""
        out = self.meta.derived("compile", parent=self.source, target=target, precision=self.precision, batch=batch)
        return out.model_copy(update={"precision": self.precision})


@dataclass(frozen=True, kw_only=True)
class Compiled:
    """What a builder made (or, for a check only, found)."""

    batch: str                        # the batch as a label: "1", "dynamic", "dynamic 1-8 (opt 1)"
    files: list[Path] = field(default_factory=list)
    main: Path | None = None          # the file to run
    profile: Any = None
    findings: list[Any] = field(default_factory=list)
    meta: ModelMeta | None = None     # the metadata written with it (None for a check only)
