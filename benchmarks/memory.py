"""Flat memory under load: `rtk validate` over many small images and a long `rtk bench`, RSS sampled over time.

Each command runs as a real `rtk` subprocess; its resident memory (VmRSS from /proc/<pid>/status, the
process plus its children such as the DataLoader worker) is sampled every `--interval` seconds. The
report gives start (the first sample after the model is loaded, i.e. after `--settle` of the run), peak,
end and the least-squares slope of RSS over the rest of the run in MiB per minute: a leak shows as a
slope well above zero, a flat run as about zero.

    python -m benchmarks.memory                       # 10,000 images at 32x32, bench for 600 s
    python -m benchmarks.memory --images 500 --bench-seconds 20   # a quick look

Results: benchmarks/results/memory-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = 4


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` plus every descendant, in KiB (0 when the process is gone)."""
    total = 0
    for p in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
    return total


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(c) for c in children]
        todo += [int(c) for c in children]
    return found


def sample(cmd: list[str], *, interval: float, settle: float, tmp: str = "") -> dict:
    """Run `cmd`, sample its RSS until it exits; summarise start/peak/end and the slope after `settle`."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    times, rss = [], []
    while proc.poll() is None:
        kib = rss_kib(proc.pid)
        if kib:
            times.append(time.perf_counter() - started)
            rss.append(kib / 1024)
        time.sleep(interval)
    stderr = proc.stderr.read() if proc.stderr else ""
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr.strip()[-500:]}")
    t, m = np.asarray(times), np.asarray(rss)
    steady = t >= settle * seconds
    if steady.sum() < 3:
        steady = np.ones_like(t, dtype=bool)
    ts, ms = t[steady], m[steady]
    slope = float(np.polyfit(ts / 60.0, ms, 1)[0]) if len(ts) > 2 else 0.0
    half = len(ms) // 2
    return {
        "command": ("rtk " + " ".join(cmd[3:]).replace(tmp, "$TMP")) if tmp else " ".join(cmd),
        "seconds": round(seconds, 1), "samples": len(m),
        "start_mib": round(float(ms[0]), 1), "peak_mib": round(float(m.max()), 1), "end_mib": round(float(ms[-1]), 1),
        "steady_first_half_mean_mib": round(float(ms[:half].mean()), 1),
        "steady_second_half_mean_mib": round(float(ms[half:].mean()), 1),
        "slope_mib_per_min": round(slope, 3),
        "series": [[round(float(a), 1), round(float(b), 1)] for a, b in zip(t[:: max(1, len(t) // 200)],
                                                                            m[:: max(1, len(m) // 200)])],
    }


def prepare(folder: Path, *, images: int, size: int) -> tuple[Path, Path]:
    """`images` synthetic labeled images (CLASSES classes, `size` px) and a random ResNet50 ONNX at that size."""
    from toolkit.export import export_onnx
    from toolkit.models import load_model
    from toolkit.synth import synth

    data = folder / "data"
    synth(data, classes=CLASSES, per_class=1, val_per_class=images // CLASSES, size=size, seed=0)
    names = sorted(p.name for p in (data / "val").iterdir() if p.is_dir())
    model, meta = load_model("random", class_names=names, num_classes=len(names), input_size=size)
    onnx_path = folder / "model.onnx"
    export_onnx(model, meta, onnx_path)
    return data / "val", onnx_path


def markdown(result: dict) -> str:
    lines = [f"# Memory under load ({result['date']})", "", result["machine"], "",
             "| run | what ran | wall s | samples | start MiB | peak MiB | end MiB | mean 1st / 2nd half MiB "
             "| slope MiB/min |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["runs"].items():
        lines.append(f"| {name} | `{r['command']}` | {r['seconds']} | {r['samples']} | {r['start_mib']} | "
                     f"{r['peak_mib']} | {r['end_mib']} | {r['steady_first_half_mean_mib']} / "
                     f"{r['steady_second_half_mean_mib']} | {r['slope_mib_per_min']} |")
    lines += ["", "RSS is VmRSS of the `rtk` process plus its children (the DataLoader worker), sampled every "
              f"{result['interval_s']} s. start, end, the half means and the slope (least squares) cover the run "
              f"after its first {int(result['settle'] * 100)}% (model load and warm-up); peak covers all of it. "
              "The worker is forked, so pages it shares with the parent are counted twice: the sum overstates "
              "physical memory, but a leak in either process still shows as a slope.", "",
              f"Inputs: {result['images']} synthetic {result['size']}x{result['size']} PNGs made in "
              f"{result['prepare_seconds']} s (with the ONNX export).", "", result["note"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--bench-seconds", type=float, default=600.0)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--settle", type=float, default=0.1, help="Fraction of each run left out of start/slope.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--markdown-only", type=Path, help="Only rewrite the .md of this results .json.")
    args = parser.parse_args()
    if args.markdown_only:
        result = json.loads(args.markdown_only.read_text())
        args.markdown_only.with_suffix(".md").write_text(markdown(result))
        return
    rtk = [sys.executable, "-m", "toolkit.cli"]
    with tempfile.TemporaryDirectory(prefix="rtk-memory-") as tmp:
        t0 = time.perf_counter()
        val, onnx_path = prepare(Path(tmp), images=args.images, size=args.size)
        prep = time.perf_counter() - t0
        count = sum(1 for p in val.rglob("*") if p.is_file())
        runs = {
            "validate": sample(rtk + ["validate", str(onnx_path), "--data", str(val), "--batch-size", "64"],
                               interval=args.interval, settle=args.settle, tmp=tmp),
            "bench": sample(rtk + ["bench", str(onnx_path), "--batch", "1", "--warmup", "10",
                                   "--seconds", str(args.bench_seconds)], interval=args.interval, settle=args.settle,
                            tmp=tmp),
        }
    from toolkit.doctor import doctor

    cpu = doctor().cpu
    result = {
        "date": dt.date.today().isoformat(), "images": count, "size": args.size, "bench_seconds": args.bench_seconds,
        "interval_s": args.interval, "settle": args.settle, "prepare_seconds": round(prep, 1),
        "machine": f"{cpu.name}, {os.cpu_count()} cores; random-weight ResNet50 at {args.size}x{args.size}, "
                   f"{CLASSES} classes, ONNX Runtime CPU",
        "note": ("`rtk bench --seconds S` times calls for S seconds, then makes as many calls again for the "
                 "throughput figure, so the process lives about 2 x S; every timed call is kept (`samples_ms`), "
                 "a few bytes per call."),
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"memory-{result['date']}"
    Path(f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
