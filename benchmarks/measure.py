"""Timings for the benchmark: interleaved repeats of the compared rows, scaling, OpenVINO hints, benchmark_app.

Every timing goes through `toolkit.bench` (`interleaved`, `time_calls`). Rows compared with each other are measured in one
process, repeat by repeat (row A, row B, ..., then again), with the order rotated each repeat, so a noisy
neighbour slows every row alike instead of one of them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from toolkit.backends import RunnerOptions, open_runner
from toolkit.bench import Latency, Timed as Call, interleaved as interleave, time_calls

Say = Callable[[str], None]


@dataclass(frozen=True)
class Timed:
    """One artifact on one runtime, to be timed."""

    key: str
    path: Path
    target: str
    hint: str = "latency"


def spread(values: Sequence[float]) -> dict[str, float | list[float]]:
    """Median with min-max over repeats (the quoted form)."""
    a = np.asarray(values, dtype=float)
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()), "repeats": [float(v) for v in a]}


def neighbour_means(outer: Sequence[float]) -> list[float]:
    """For windows timed outer, inner, outer, ..., outer: the mean of the two outer windows around each inner
    one, which cancels a drift of this VM's speed across the three."""
    return [(outer[i] + outer[i + 1]) / 2 for i in range(len(outer) - 1)]


def alternate(outer: Callable[[], float], inner: Callable[[], float], *, repeats: int, label: str,
              say: Say = print) -> tuple[list[float], list[float]]:
    """Run outer, inner, outer, ..., outer (`repeats` inner runs) and return both series; compare each inner value
    with `neighbour_means(outer)`, which cancels a drift of this VM's speed across the three runs."""
    outs: list[float] = []
    ins: list[float] = []
    for r in range(repeats + 1):
        say(f"{label}, {r + 1}/{repeats + 1}")
        outs.append(outer())
        if r < repeats:
            ins.append(inner())
    return outs, ins


class CommandFailed(Exception):
    """A measuring command failed; `record` is its {"error": ...} result, which the measurement returns."""

    def __init__(self, record: dict) -> None:
        super().__init__(record["error"])
        self.record = record


def _ok(got: dict) -> dict:
    if "error" in got:
        raise CommandFailed(got)
    return got


def _input(runner, batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *runner.meta.preprocess.input_shape)).astype(np.float32)


def interleaved(items: Sequence[Timed], *, batches: Sequence[int], repeats: int, runs_for: Callable[[int], int],
                warmup: int, threads: int | None = None, say: Say = print) -> tuple[dict, dict[str, str]]:
    """{key: {batch: spread of p50 ms}} for every item that opens; failures as {key: reason}.

    `warmup` calls before each timing at batch 1; one at larger batches (a call there takes 2-16 batch-1 calls'
    time, and the session is already warm from batch 1)."""
    p50: dict[str, dict[int, list[float]]] = {}
    failed: dict[str, str] = {}
    with ExitStack() as stack:
        runners = {}
        for it in items:
            opts = RunnerOptions(threads=threads, hint=it.hint, max_batch=max(batches))
            try:
                runners[it.key] = stack.enter_context(open_runner(it.path, it.target, options=opts))
            except Exception as exc:
                failed[it.key] = f"failed to load: {str(exc).splitlines()[0][:200]}"
        keys = list(runners)
        inputs = {(k, b): _input(runners[k], b) for k in keys for b in batches}
        cells = [(k, b) for b in batches for k in keys]
        calls = [Call(call=lambda r=runners[k], x=inputs[(k, b)]: r.infer(x), runs=runs_for(b),
                      warmup=warmup if b == 1 else 1, rewarm=warmup if b == 1 else 1) for k, b in cells]

        def order(r: int) -> list[int]:
            say(f"repeat {r + 1}/{repeats}" + (f", {threads} threads" if threads else ""))
            turn = keys[r % len(keys):] + keys[:r % len(keys)] if keys else []
            return [cells.index((k, b)) for b in batches for k in turn]

        for (k, b), rounds in zip(cells, interleave(calls, rounds=repeats, order=order)):
            p50.setdefault(k, {})[b] = [Latency.from_ms(ms).p50 for ms in rounds]
    return {k: {b: spread(v) for b, v in per.items()} for k, per in p50.items()}, failed


def scaling(items: Sequence[Timed], *, batches: Sequence[int], threads: Sequence[int], repeats: int,
            runs_for: Callable[[int], int], warmup: int, say: Say = print) -> list[dict]:
    """Latency and throughput (batch / latency) per batch size and thread count."""
    rows = []
    for t in threads:
        got, failed = interleaved(items, batches=batches, repeats=repeats, runs_for=runs_for, warmup=warmup,
                                  threads=t, say=say)
        for it in items:
            if it.key in failed:
                rows.append({"row": it.key, "threads": t, "error": failed[it.key]})
                continue
            for b in batches:
                lat = got[it.key][b]
                rows.append({"row": it.key, "threads": t, "batch": b, "latency_ms": lat,
                             "throughput_ips": b * 1e3 / lat["median"]})
    return rows


def openvino_hints(xml: Path, *, repeats: int, seconds: float, ceiling: Callable[[], float] | None = None,
                   say: Say = print) -> dict:
    """Images/s of the LATENCY hint at batch 1 vs the THROUGHPUT hint at batch 8 (parallel requests).

    Windows of about `seconds` each, in the order latency, throughput, latency, ..., latency: each throughput
    window is divided by the mean of the latency windows either side of it (this VM's speed drifts and jumps,
    and a plain pair charges that to whichever ran second); the median of the `repeats` ratios is quoted.
    `ceiling` (e.g. floor.gemm_fp32_gmacs) is measured right after each latency window, so the batch-1 rate can be
    set against what the CPU could do at that moment."""
    with open_runner(xml, "openvino", options=RunnerOptions(hint="latency", max_batch=8)) as lat, \
            open_runner(xml, "openvino", options=RunnerOptions(hint="throughput", max_batch=8)) as thr:
        cases = {"latency_b1": (lat, _input(lat, 1)), "throughput_b8": (thr, _input(thr, 8))}
        info = {"latency": lat.describe(), "throughput": thr.describe()}
        calls = {}
        for key, (runner, x) in cases.items():  # warm up, and size each window to about `seconds`
            n = runner.parallel_requests      # in whole rounds of the parallel requests (an odd count idles one)
            per_call = float(time_calls(lambda: runner.infer_many(x, 2 * n), warmup=1, runs=1)[0]) / (2 * n)
            calls[key] = n * max(2, round(seconds * 1e3 / per_call / n))

        def window(key: str) -> Callable[[], float]:
            runner, x = cases[key]
            return lambda: len(x) * calls[key] * 1e3 / float(
                time_calls(lambda: runner.infer_many(x, calls[key]), warmup=0, runs=1)[0])

        latency = window("latency_b1")
        ceilings: list[float] = []

        def latency_then_ceiling() -> float:
            ips = latency()
            if ceiling is not None:
                ceilings.append(ceiling())
            return ips

        lat_ips, thr_ips = alternate(latency_then_ceiling, window("throughput_b8"), repeats=repeats,
                                     label="OpenVINO hint windows", say=say)
    ratios = [t / m for t, m in zip(thr_ips, neighbour_means(lat_ips))]
    out: dict = {"latency_b1": spread(lat_ips), "throughput_b8": spread(thr_ips)}
    if ceilings:
        out["ceiling_gmacs"] = spread(ceilings)   # one per latency window, in the same order
    out["ratios"] = spread(ratios)
    out["ratio"] = out["ratios"]["median"]
    out["runtime"] = info
    return out


def benchmark_app(xml: Path, *, seconds: int, batch: int = 1, hint: str = "latency",
                  infer_precision: str | None = "f32") -> dict:
    """OpenVINO's own `benchmark_app` on the IR with a performance hint and the inference precision rtk's runner
    compiled it with (f32 for an FP32 IR; OpenVINO's default where None)."""
    exe = Path(sys.executable).with_name("benchmark_app")
    if not exe.is_file():
        found = shutil.which("benchmark_app")
        if not found:
            return {"error": "not available: benchmark_app is not installed next to python (it ships with openvino)"}
        exe = Path(found)
    from toolkit.backends import read_meta

    side = read_meta(xml).preprocess.crop
    with tempfile.TemporaryDirectory(prefix="rtk-bench-app-") as tmp:
        cmd = [str(exe), "-m", str(xml), "-d", "CPU", "-hint", hint, "-t", str(seconds), "-json_stats",
               "-report_type", "no_counters", "-report_folder", tmp, "-shape", f"[{batch},3,{side},{side}]",
               *(["-infer_precision", infer_precision] if infer_precision else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 6 + 120)
        report = Path(tmp) / "benchmark_report.json"
        if proc.returncode != 0 or not report.is_file():
            tail = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            return {"error": f"benchmark_app failed: {tail[-1][:200] if tail else proc.returncode}",
                    "command": " ".join(cmd)}
        res = json.loads(report.read_text())["execution_results"]
    num = lambda v: float(re.sub(r"[^0-9.]", "", str(v)))  # noqa: E731
    return {"median_ms": num(res["latency (ms)"]), "avg_ms": num(res["avg latency"]), "min_ms": num(res["min latency"]),
            "images_per_s": num(res["throughput"]), "iterations": int(num(res["total number of iterations"])),
            "command": " ".join(cmd).replace(tmp, "TMP")}


def benchmark_app_hints(xml: Path, *, seconds: int, repeats: int, infer_precision: str | None = "f32",
                        say: Say = print) -> dict:
    """What OpenVINO's own tool reaches for THROUGHPUT at batch 8 vs LATENCY at batch 1 on the same IR: the
    hardware's headroom, next to rtk's `openvino_hints` ratio. Runs alternate latency, throughput, ..., latency
    and each throughput run is divided by the mean of the latency runs either side, as in `openvino_hints`."""
    def run(hint: str, batch: int) -> Callable[[], float]:
        return lambda: _ok(benchmark_app(xml, seconds=seconds, batch=batch, hint=hint,
                                         infer_precision=infer_precision))["images_per_s"]

    try:
        lat, thr = alternate(run("latency", 1), run("throughput", 8), repeats=repeats, label="benchmark_app hints",
                             say=say)
    except CommandFailed as exc:
        return exc.record
    out: dict = {"latency_b1": spread(lat), "throughput_b8": spread(thr),
                 "ratios": spread([t / m for t, m in zip(thr, neighbour_means(lat))]), "infer_precision": infer_precision}
    out["ratio"] = out["ratios"]["median"]
    return out


def rtk_bench_cli(xml: Path, *, seconds: int, warmup: int) -> dict:
    """`rtk bench` on the IR as a user runs it: its own process, LATENCY hint, batch 1, timed for `seconds`."""
    with tempfile.TemporaryDirectory(prefix="rtk-bench-cli-") as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "toolkit.cli", "bench", str(xml), "--target", "openvino", "--hint", "latency",
               "--batch", "1", "--warmup", str(warmup), "--seconds", str(seconds), "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 6 + 120)
        if proc.returncode != 0 or not out.is_file():
            tail = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            return {"error": f"rtk bench failed: {tail[-1][:200] if tail else proc.returncode}"}
        point = json.loads(out.read_text())["results"][0]
    return {"median_ms": point["latency_ms"]["p50"], "command": " ".join(cmd[1:]).replace(tmp, "TMP")}


def rtk_vs_benchmark_app(xml: Path, *, seconds: int, repeats: int, warmup: int, say: Say = print) -> dict:
    """`rtk bench` and `benchmark_app` on the same IR and hint, each as its own command, alternating.

    The sequence is rtk, app, rtk, app, ..., rtk: each benchmark_app run is compared with the mean of the rtk runs
    on either side of it, which cancels a drift of this VM's speed across the three (a plain back-to-back pair
    charges it to whichever ran second). The median of the `repeats` ratios is quoted.
    """
    last: dict[str, dict] = {}

    def run(name: str, command: Callable[[], dict]) -> Callable[[], float]:
        def once() -> float:
            last[name] = _ok(command())
            return last[name]["median_ms"]
        return once

    try:
        rtk, app = alternate(run("rtk", lambda: rtk_bench_cli(xml, seconds=seconds, warmup=warmup)),
                             run("app", lambda: benchmark_app(xml, seconds=seconds)), repeats=repeats,
                             label="rtk bench vs benchmark_app", say=say)
    except CommandFailed as exc:
        return exc.record
    ratios = [m / a for m, a in zip(neighbour_means(rtk), app)]
    out = {"benchmark_app_ms": spread(app), "rtk_ms": spread(rtk), "ratios": spread(ratios),
           "command": last["app"]["command"], "rtk_command": last["rtk"]["command"]}
    out["ratio"] = out["ratios"]["median"]
    return out
