"""The one place that times things: warm-up, enough runs, perf_counter, percentiles.

`time_calls` times one call repeatedly; `interleaved` times several against each other in alternating rounds
(quantize's FP32 vs INT8, the pruning search's candidates, validate's p50 and the benchmarks all use it);
`bench` is `rtk bench`. Runners never time themselves beyond one call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from toolkit.io import sha256_file
from toolkit.backends import RunnerOptions, open_runner
from toolkit.backends.base import finite
from toolkit.doctor import this_cpu
from toolkit.errors import RtkError
from toolkit.isa import effective_tier, fresh_python, saturation_risk
from toolkit.preprocess import random_input
from toolkit.progress import Progress, silent
from toolkit.remote import DeviceInfo
from toolkit.settings import BenchSettings


class Latency(BaseModel):
    """Summary of latency samples in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    runs: int

    @classmethod
    def from_ms(cls, samples: Sequence[float]) -> "Latency":
        a = np.asarray(samples, dtype=np.float64)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(p50=p50, p90=p90, p99=p99, mean=a.mean(), std=a.std(ddof=1) if a.size > 1 else 0.0,
                   min=a.min(), max=a.max(), runs=int(a.size))


def time_calls(fn: Callable[[], object], *, warmup: int = 10, runs: int | None = None,
               seconds: float | None = None, min_runs: int = 10) -> np.ndarray:
    """Milliseconds of each call of `fn` after `warmup` untimed calls.

    With `runs`, exactly that many timed calls; with `seconds`, calls until that much time has passed
    (and at least `min_runs`); with neither, 50 runs.
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    if runs is None and seconds is None:
        runs = 50
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if runs is not None and len(samples) >= runs:
            break
        if seconds is not None and time.perf_counter() - start >= seconds and len(samples) >= min_runs:
            break
    return np.asarray(samples)


@dataclass(frozen=True, kw_only=True)
class Timed:
    """One call to time against others: `warmup` untimed calls before its first round, `rewarm` before each later
    one (the runtime is already warm then), `runs` timed calls per round."""

    call: Callable[[], object]
    runs: int
    warmup: int = 5
    rewarm: int = 1


# Idle time before each turn when items alternate. A runtime's worker threads keep running after its call
# returns (ONNX Runtime's intra-op pool spins by default), so the item timed next shared the CPU with them: on the
# AMD EPYC (Zen 5, 2 cores), a 50%-pruned INT8 IR timed right after ONNX Runtime FP32 ran at 3.6 ms, 1.8-2.3 ms
# alone, and 2.1-2.5 ms after 0.1 s idle.
SETTLE_S = 0.1


def interleaved(items: Sequence[Timed], *, rounds: int, order: Callable[[int], Sequence[int]] | None = None,
                settle: float = SETTLE_S) -> list[list[np.ndarray]]:
    """Milliseconds of each item's calls, per round: `samples[item][round]`.

    The items take turns within every round (in `order(round)`, default as given), so a drift of the machine's
    speed or a noisy neighbour hits all of them alike instead of whichever ran last; with more than one item,
    each turn starts after `settle` seconds idle, so it does not share the CPU with the previous item's threads.
    """
    samples: list[list[np.ndarray]] = [[] for _ in items]
    for r in range(rounds):
        for i in (order(r) if order else range(len(items))):
            it = items[i]
            if settle and len(items) > 1:
                time.sleep(settle)
            samples[i].append(time_calls(it.call, warmup=it.warmup if r == 0 else it.rewarm, runs=it.runs))
    return samples


def interleaved_p50(calls: Sequence[Callable[[], object]], *, rounds: int, runs: int, warmup: int = 5) -> list[float]:
    """Median latency (ms) of each call over all its rounds of `interleaved`."""
    got = interleaved([Timed(call=c, runs=runs, warmup=warmup) for c in calls], rounds=rounds)
    return [Latency.from_ms(np.concatenate(rs)).p50 for rs in got]


class BenchPoint(BaseModel):
    batch: int
    latency_ms: Latency
    throughput_ips: float
    phases_ms: dict[str, Latency] = Field(default_factory=dict)
    pipeline: dict[str, int | bool] = Field(default_factory=dict, description="--images: this batch size's photo "
                                            "pipeline: its threads (workers), whether each inferred its own batch "
                                            "(threads_infer), depth and peak_in_flight.")
    samples_ms: list[float] = Field(default_factory=list, description="Every timed call, in order.")


class BenchResult(BaseModel):
    artifact: str
    sha256: str
    target: str
    precision: str
    input_size: int
    runtime: dict[str, object]
    warmup: int
    results: list[BenchPoint]
    device: DeviceInfo | None = Field(None, description="The SSH device it ran on (`remote`), from its rtk doctor.")
    cpu: str | None = Field(None, description="The CPU it was timed on, as `rtk doctor` names it (model, core, "
                            "family and model numbers).")
    isa: str | None = Field(None, description="oneDNN ISA tier the runtime's CPU kernels ran on (toolkit.isa).")
    executed_precision: str | None = Field(None, description="The precision the runtime computed in, read back "
                                           "from it (OpenVINO: compute layers by runtimePrecision).")
    saturation_risk: str | None = Field(None, description="An INT8 artifact quantized for a VNNI tier run on a tier "
                                        "without VNNI, where its first convolution can saturate (toolkit.isa).")
    photos: dict[str, Any] | None = Field(None, description="`--images`: the photo pipeline's phase report "
                                          "(toolkit.predict.PhaseReport) at the first batch size; each result's `pipeline` is its own.")


def bench(path: str | Path, *, target: str | None = None, settings: BenchSettings | None = None, seed: int = 0,
          images: str | Path | None = None, progress: Progress = silent) -> BenchResult:
    """Latency and throughput of one artifact on one runtime, per batch size; on the SSH device `settings.remote`
    names, by the rtk installed there, when it is set (toolkit.remote.commands). With `images` (a folder of photos),
    end to end instead: decode, preprocess and inference of every photo, each phase timed
    (`toolkit.predict.run_photos`)."""
    path = Path(path)
    s = settings or BenchSettings()
    if s.remote:
        if images is not None:
            raise RtkError("--images with --remote: copy the photos to the device and run rtk bench there")
        from toolkit.remote.commands import bench_on_device

        return bench_on_device(path, target=target, settings=s, say=progress)
    if images is not None:
        return _photos(path, Path(images), target=target, settings=s, progress=progress)
    batches, warmup = s.batches, s.warmup
    options = RunnerOptions(threads=s.threads, hint=s.hint, max_batch=max(batches))
    points = []
    with open_runner(path, target, options=options) as runner:
        batches = _batches(runner, batches)
        rng = np.random.default_rng(seed)
        for batch in batches:
            progress(f"batch {batch}")
            x = random_input(runner.meta.preprocess, batch, rng)
            finite(runner.infer(x), path)               # a model that outputs NaN is broken, not fast
            ms = time_calls(lambda: runner.infer(x), warmup=warmup, runs=s.runs, seconds=s.seconds)
            lat = Latency.from_ms(ms)
            rounds = runner.parallel_requests
            count = -(-max(len(ms) // 2, 10) // rounds) * rounds   # whole rounds of the parallel requests
            runner.infer_many(x, rounds)                            # every request warmed before the clock
            t0 = time.perf_counter()
            runner.infer_many(x, count)
            throughput = batch * count / (time.perf_counter() - t0)
            phases: dict[str, Latency] = {}
            if runner.infer_phases(x) is not None:
                split = [runner.infer_phases(x) for _ in range(min(len(ms), 50))]
                phases = {k: Latency.from_ms([s[k] for s in split]) for k in split[0]}
            points.append(BenchPoint(batch=batch, latency_ms=lat, throughput_ips=throughput,
                                     phases_ms=phases, samples_ms=[round(float(v), 4) for v in ms]))
        runtime = runner.describe()
        meta = runner.meta
        ran = runner.executed_precision()
    return BenchResult(artifact=str(path), sha256=sha256_file(path), target=runner.target, precision=meta.precision,
                       input_size=meta.preprocess.crop, runtime=runtime, warmup=warmup, results=points,
                       isa=effective_tier(runner.target), executed_precision=ran, cpu=this_cpu().name,
                       saturation_risk=saturation_risk(meta.extra, effective_tier(runner.target)))


def bench_process(path: str | Path, *, target: str | None, settings: BenchSettings) -> BenchResult:
    """`rtk bench` in a fresh process, as a user runs it: the latencies `rtk run` and `rtk sweep` report. Timed inside
    a long-lived process instead (a sweep's Ray worker), OpenVINO ran 2-12% slower than stand-alone on the same
    artifacts, while an `rtk bench` process started from that worker matched stand-alone within 1.3% (Intel Xeon,
    Emerald Rapids, alternated; benchmarks/README.md)."""
    import subprocess
    import tempfile

    from toolkit.remote.commands import flags_of

    with tempfile.TemporaryDirectory(prefix="rtk-bench-") as tmp:
        out = Path(tmp) / "bench.json"
        argv = ["bench", str(path), *(["--target", target] if target else []), *flags_of(settings), "--json", str(out)]
        done = subprocess.run([*fresh_python("toolkit.cli"), *argv], capture_output=True, text=True)
        if done.returncode == 0 and out.is_file():
            return BenchResult.model_validate_json(out.read_text())
    line = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1].removeprefix("error: ")
    raise (RtkError if done.returncode == 2 else RuntimeError)(f"rtk bench {path}: {line}")


def _batches(runner, asked: list[int]) -> list[int]:
    """The batch sizes to time, each once; a static-batch artifact runs its own batch (the default 1 becomes it)."""
    return list(dict.fromkeys(runner.batch_for(b, "--batch") for b in asked))


def _photos(path: Path, folder: Path, *, target: str | None, settings: BenchSettings,
            progress: Progress) -> BenchResult:
    """`rtk bench --images DIR`: every photo of the folder through the overlapped pipeline (the throughput), then
    timed again one batch after another (the latency), once per batch size after `warmup` untimed photos. The
    latency is the batch's (decode + preprocess of its photos, then its inference): what a photo in it waits."""
    from toolkit.predict import image_paths, run_photos
    from toolkit.settings import PredictSettings

    if not folder.is_dir():
        raise RtkError(f"--images {folder}: not a folder; give a folder of photos")
    if settings.runs is not None or settings.seconds is not None:
        raise RtkError("--images times every photo of the folder once per batch size; leave out --runs and --seconds "
                       "(put more photos in the folder for more samples)")
    skipped: list[str] = []
    paths = image_paths([folder], skipped)
    s = settings
    if s.depth is not None and s.depth < max(s.batches):
        raise RtkError(f"--depth {s.depth} holds less than a batch of {max(s.batches)}; give --depth "
                       f"{max(s.batches)} or more")
    options = RunnerOptions(threads=s.threads, hint=s.hint, max_batch=max(s.batches))
    points, photos = [], None
    with open_runner(path, target, options=options) as runner:
        for batch in _batches(runner, s.batches):
            if batch > len(paths) and not runner.fixed_batch:      # a static batch pads the photos there are
                raise RtkError(f"--batch {batch} is more than the {len(paths)} photos in {folder}: no batch that size "
                               "would run; add photos or give a smaller --batch")
            progress(f"{len(paths)} image files, batch {batch}")
            if s.depth is not None and s.depth < batch:
                static = f" (the static batch of {path})" if runner.fixed_batch else ""
                raise RtkError(f"--depth {s.depth} holds less than a batch of {batch}{static}; give --depth {batch} "
                               "or more")
            run = PredictSettings(fast_decode=s.fast_decode, batch_size=batch, workers=s.workers, depth=s.depth)
            every = {str(p) for p in paths}
            if s.warmup:
                try:
                    run_photos(paths[:min(len(paths), s.warmup)], runner, settings=run, skippable=every)
                except RtkError:    # none of the first photos decode: the timed run says whether any does
                    pass
            report = run_photos(paths, runner, settings=run, skippable=every)[2]
            if report.batch_size != batch:          # fewer photos decoded than the batch: it ran smaller
                raise RtkError(f"--batch {batch} is more than the {report.images} photos in {folder} that decode; "
                               "add photos or give a smaller --batch")
            points.append(BenchPoint(batch=report.batch_size, latency_ms=report.total_ms,
                                     throughput_ips=report.images_per_s,
                                     phases_ms={"decode": report.decode_ms, "preprocess": report.preprocess_ms,
                                                "infer": report.infer_ms},
                                     pipeline={k: getattr(report, k) for k in ("workers", "threads_infer", "depth",
                                                                               "peak_in_flight")}))
            report.skipped = sorted(skipped + report.skipped)
            photos = photos or report.model_dump(mode="json")
        meta = runner.meta
        ran = runner.executed_precision()
    return BenchResult(artifact=str(path), sha256=sha256_file(path), target=runner.target, precision=meta.precision,
                       input_size=meta.preprocess.crop, runtime=photos["runtime"], warmup=s.warmup, results=points,
                       isa=effective_tier(runner.target), photos=photos, executed_precision=ran,
                       cpu=this_cpu().name, saturation_risk=saturation_risk(meta.extra, effective_tier(runner.target)))
