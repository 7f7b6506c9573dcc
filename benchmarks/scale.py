"""The goals of issue #22, measured: a sweep on Ray against its candidates run alone, and sharded validation.

    python -m benchmarks.run --scale            # = python -m benchmarks.scale: both parts (the 12 stand-alone runs
                                                #   of the sweep's candidates dominate its time)
    python -m benchmarks.scale --quick          # a 4-candidate sweep of a smaller recipe, 160 images: checks the
                                                #   benchmark itself; its numbers are not the goals'
    python -m benchmarks.scale --part shards    # sharded validation only
    python -m benchmarks.scale --part sweep [--recipe recipes/sweep-demo.yaml]
    python -m benchmarks.scale --part timing --rounds 18   # the sweep, then only its timing path against
                                                #   stand-alone rtk bench, alternated 18 times per artifact

Sweep: `rtk sweep RECIPE` (a fresh local Ray instance, its start included) is timed against the sum of each
candidate's stand-alone `rtk run` (its recipe.yaml, a fresh folder, a fresh process) minus the cache savings: the
stand-alone seconds of the stages the sweep took from its stage cache. Goal: at most 1.2x. Then `rtk bench` times
each candidate's deployed artifact alone, as many times as the recipe's bench stage repeats it (round-robin over the
candidates), and the sweep's p50 is compared with it. Goal: within 5%.

Sharded validation: a random-weight 10-class ResNet50 at 224 px on synthetic 224 px images; `validate` with 2 shards
on a local Ray instance (1 thread each) against one process with 2 threads, alternated, warm workers. Goal: at least
90% of the images/s. The per-image cost, the per-shard fixed cost and the merge cost give the scaling on paper.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _rtk(*args, check: tuple[int, ...] = (0,)) -> float:
    """Seconds one `rtk` command takes in a fresh process (as a user would run it)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode not in check:
        raise SystemExit(f"rtk {' '.join(map(str, args))} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - started


def sweep_part(recipe: Path, work: Path, say: Callable[[str], None], *, rounds: int = 6) -> dict:
    out = work / "sweep"
    (work / "alone").mkdir(exist_ok=True)
    say(f"rtk sweep {recipe} (on Ray)")
    sweep_s = _rtk("sweep", recipe, "-o", out, check=(0, 1))
    sweep = json.loads((out / "sweep.json").read_text())
    rows = []
    for c in sweep["candidates"]:
        alone = work / "alone" / c["id"]
        say(f"{c['id']} alone: rtk run")
        seconds = _rtk("run", out / "candidates" / c["id"] / "recipe.yaml", "-o", alone, check=(0, 1))
        stages = {s["name"]: s["seconds"] for s in json.loads((alone / "report.json").read_text())["stages"]}
        rows.append({"id": c["id"], "label": " ".join(f"{k}={v}" for k, v in c["values"].items()),
                     "alone_s": seconds, "saved_s": sum(stages.get(n, 0.0) for n in c["reused"]),
                     "reused": c["reused"], "sweep_p50_ms": c["p50_ms"], "target": c["target"]})
    latency_repeats(out, rows, say)
    latency_paired(out, rows, say, rounds=rounds)
    alone_sum, saved = sum(r["alone_s"] for r in rows), sum(r["saved_s"] for r in rows)
    bound = alone_sum - saved
    dev = [abs(r["sweep_p50_ms"] / r["alone_p50_ms"] - 1) for r in rows]
    floor = [max(r["alone_p50_repeats"]) / min(r["alone_p50_repeats"]) - 1 for r in rows]
    return {"recipe": str(recipe), "candidates": len(rows), "sweep_s": sweep_s, "alone_sum_s": alone_sum,
            "saved_s": saved, "bound_s": bound, "ratio": sweep_s / bound, "engine": sweep["engine"], "rows": rows,
            "latency_dev_max": max(dev), "latency_dev_median": statistics.median(dev),
            "alone_spread_median": statistics.median(floor), "alone_spread_max": max(floor),
            "latency_within_5pct": sum(d <= 0.05 for d in dev), "paired": paired_summary(rows)}


def timing_part(recipe: Path, work: Path, say: Callable[[str], None], *, rounds: int) -> dict:
    """The sweep's timing path alone: `rtk sweep`, then `latency_paired` over its deployed artifacts (no
    stand-alone runs of the candidates, so there is time for more alternations)."""
    out = work / "sweep"
    say(f"rtk sweep {recipe} (on Ray)")
    _rtk("sweep", recipe, "-o", out, check=(0, 1))
    rows = [{"id": c["id"], "label": " ".join(f"{k}={v}" for k, v in c["values"].items()), "target": c["target"],
             "sweep_p50_ms": c["p50_ms"]} for c in json.loads((out / "sweep.json").read_text())["candidates"]]
    latency_paired(out, rows, say, rounds=rounds)
    return {"recipe": str(recipe), "candidates": len(rows), "rows": rows, "paired": paired_summary(rows)}


def _recipe_bench(out: Path, rows: list[dict]) -> dict:
    """The candidates' bench settings (the sweep's recipe.bench, the same for every candidate)."""
    import yaml

    return yaml.safe_load((out / "candidates" / rows[0]["id"] / "recipe.yaml").read_text()).get("bench", {})


def _deployed(out: Path, cid: str) -> str:
    """The artifact a candidate deployed: the last row of its run's report."""
    return json.loads((out / "candidates" / cid / "report.json").read_text())["rows"][-1]["path"]


def _bench_alone(path: str, target: str, *, runs: int, warmup: int, js: Path) -> list[float]:
    """The samples (ms, batch 1) of one stand-alone `rtk bench` process."""
    _rtk("bench", path, "--target", target, "--batch", "1", "--runs", runs, "--warmup", warmup, "--json", js)
    return json.loads(js.read_text())["results"][0]["samples_ms"]


def latency_repeats(out: Path, rows: list[dict], say: Callable[[str], None]) -> None:
    """Each deployed artifact timed alone by `rtk bench` with the recipe's bench settings, `repeats` times,
    round-robin over the candidates; the p50 of all its samples (as the run's report pools them)."""
    b = _recipe_bench(out, rows)
    repeats, runs, warmup = b.get("repeats", 3), b.get("runs", 50), b.get("warmup", 10)
    samples: dict[str, list[float]] = {r["id"]: [] for r in rows}
    per_repeat: dict[str, list[float]] = {r["id"]: [] for r in rows}
    for repeat in range(repeats):
        say(f"rtk bench of each deployed artifact alone, repeat {repeat + 1}/{repeats}")
        for r in rows:
            got = _bench_alone(_deployed(out, r["id"]), r["target"], runs=runs, warmup=warmup,
                               js=out.parent / "bench.json")
            samples[r["id"]] += got
            per_repeat[r["id"]].append(statistics.median(got))
    for r in rows:
        r["alone_p50_ms"] = statistics.median(samples[r["id"]])
        r["alone_p50_repeats"] = per_repeat[r["id"]]      # the noise floor: stand-alone against itself


def latency_paired(out: Path, rows: list[dict], say: Callable[[str], None], *, rounds: int = 6) -> None:
    """The sweep's timing path against stand-alone `rtk bench`, with the machine's drift taken out: each deployed
    artifact is timed the way a sweep times it (toolkit.bench.bench_process in a Ray task on this node holding all
    its CPUs: RayPool.run with timing="node") and by a fresh `rtk bench` process, alternated A B B A over `rounds`, with the
    recipe's bench settings. On this VM the level of one artifact moves by more than 5% within seconds, so the
    sweep's own numbers, taken minutes before the stand-alone ones, cannot show a 5% difference; alternation can
    show what the timing path itself adds. Per artifact: the ratio of the pooled p50s (Ray path / stand-alone)."""
    from toolkit.bench import bench_process
    from toolkit.distributed import RayPool, cluster
    from toolkit.settings import BenchSettings

    b = _recipe_bench(out, rows)
    settings = BenchSettings(batches=[1], runs=b.get("runs", 50), warmup=b.get("warmup", 10))
    with cluster() as ray:
        pool = RayPool(ray, train_cpus=1, retries=0)
        for r in rows:
            path = _deployed(out, r["id"])
            say(f"{r['id']}: the sweep's timing path and stand-alone rtk bench, alternated {rounds} times")
            ray_ms: list[float] = []
            alone_ms: list[float] = []
            for i in range(rounds):
                for side in ("ray", "alone") if i % 2 == 0 else ("alone", "ray"):
                    if side == "ray":
                        ray_ms += pool.run("bench", lambda: bench_process(path, target=r["target"], settings=settings)
                                           .results[0].samples_ms, "node", [])
                    else:
                        alone_ms += _bench_alone(path, r["target"], runs=settings.runs, warmup=settings.warmup,
                                                 js=out.parent / "bench-paired.json")
            r["paired"] = {"rounds": rounds, "ray_p50_ms": statistics.median(ray_ms),
                           "alone_p50_ms": statistics.median(alone_ms),
                           "ratio": statistics.median(ray_ms) / statistics.median(alone_ms)}


def paired_summary(rows: list[dict]) -> dict:
    """The timing path's bias over all artifacts: the geometric mean of their ratios with its Student-t 95%
    interval (toolkit.pipeline.report.geometric_ci95)."""
    from toolkit.pipeline.report import geometric_ci95

    ratios = [r["paired"]["ratio"] for r in rows]
    return {"ratio": statistics.geometric_mean(ratios), "ci95": list(geometric_ci95(ratios) or (ratios[0], ratios[0])),
            "within_5pct": sum(abs(r["paired"]["ratio"] - 1) <= 0.05 for r in rows), "artifacts": len(rows)}


def shards_part(work: Path, say: Callable[[str], None], *, images_per_class: int = 40, repeats: int = 3) -> dict:
    from toolkit.distributed import cluster
    from toolkit.export import export_onnx
    from toolkit.models import load_model
    from toolkit.settings import ValidateSettings
    from toolkit.synth import synth
    from toolkit.backends import read_meta
    from toolkit.data import image_folder
    from toolkit.validate import ImageScores, validate
    from toolkit.validate_shards import score_sharded

    data = work / "val224"
    if not (data / "val").is_dir():
        say(f"drawing {10 * images_per_class} validation images at 224 px")
        synth(data, classes=10, per_class=1, val_per_class=images_per_class, size=224, seed=0)
    names = sorted(p.name for p in (data / "val").iterdir())
    model_path = work / "r50-224.onnx"
    if not model_path.is_file():
        model, meta = load_model("random", num_classes=10, class_names=names, input_size=224, seed=0)
        export_onnx(model, meta, model_path)
    val = data / "val"
    one = ValidateSettings(threads=2)
    two = ValidateSettings(threads=1, shards=2)
    started = time.perf_counter()
    with cluster(cpus=2) as ray:
        ray_start = time.perf_counter() - started
        t0 = time.perf_counter()
        validate([model_path], val, settings=two, measure_latency=False)
        cold = time.perf_counter() - t0
        times: dict[str, list[float]] = {"one": [], "sharded": []}
        reports = {}
        for repeat in range(repeats):
            for name, settings in (("one", one), ("sharded", two)) if repeat % 2 == 0 else (("sharded", two), ("one", one)):
                say(f"validate {name}, repeat {repeat + 1}/{repeats}")
                t0 = time.perf_counter()
                reports[name] = validate([model_path], val, settings=settings, measure_latency=False)
                times[name].append(time.perf_counter() - t0)
        assert reports["one"].model_dump() == reports["sharded"].model_dump(), "the sharded merge differs"
        t0 = time.perf_counter()
        images = image_folder(val, read_meta(model_path).preprocess)
        scan_s = time.perf_counter() - t0
        submitted = time.time()
        _, _, shards = score_sharded([model_path], [None], images, settings=two)
        t0 = time.perf_counter()
        ImageScores.concat([s.scores for s in shards])
        merge_s = time.perf_counter() - t0
    n = len(images)
    per_image = statistics.mean((s.seconds - s.open_s) / len(s.scores.labels) for s in shards)
    fixed = statistics.mean(s.open_s + (s.started - submitted) for s in shards)
    one_s, sharded_s = statistics.median(times["one"]), statistics.median(times["sharded"])
    return {"images": n, "size": 224, "ray_start_s": ray_start, "cold_sharded_s": cold, "times_s": times,
            "one_ips": n / one_s, "sharded_ips": n / sharded_s, "ratio": one_s / sharded_s,
            "scan_s_per_image": scan_s / n, "per_image_s_1thread": per_image, "shard_fixed_s": fixed,
            "merge_s": merge_s, "shards": [{"images": len(s.scores.labels), "open_s": s.open_s,
                                            "seconds": s.seconds, "start_delay_s": s.started - submitted}
                                           for s in shards],
            "paper": paper_scaling(scan=scan_s / n, per_image=per_image, fixed=fixed, merge=merge_s / 2)}


def paper_scaling(*, scan: float, per_image: float, fixed: float, merge: float, images: int = 50_000,
                  workers_per_node: int = 2) -> list[dict]:
    """Time to validate `images` on N nodes of `workers_per_node` 1-thread workers: the driver's scan of the
    folder (serial), one shard's fixed cost, the shards' share of the images, and the merge (per shard)."""
    out = []
    for nodes in (1, 2, 4, 8, 16, 32):
        shards = nodes * workers_per_node
        seconds = scan * images + fixed + per_image * images / shards + merge * shards
        out.append({"nodes": nodes, "shards": shards, "seconds": seconds, "ips": images / seconds})
    base = out[0]["seconds"]
    for row in out:
        row["speedup"] = base / row["seconds"]
        row["efficiency"] = row["speedup"] / row["nodes"]
    return out


def markdown(res: dict) -> str:
    lines = [f"# rtk scale benchmark — {res['date']} — {res['cpu']} ({res['cores']} cores)", "",
             f"Command: `{res['command']}` ({res['seconds'] / 60:.1f} min). Machine shared with other work: "
             "compare the ratios, which come from one run.", ""]
    if res.get("quick"):
        lines += ["**Quick mode**: a smaller sweep and fewer images than the goals name; it checks the benchmark "
                  "runs, the goals are judged on a full run.", ""]
    lines += ["## Goals", ""]
    lines += [f"- **{g['verdict']}** — {g['goal']}: {g['measured']}" for g in res["goals"]]
    s = res.get("sweep")
    if s:
        lines += ["", f"## Sweep: {s['recipe']}, {s['candidates']} candidates", "",
                  f"`rtk sweep` on Ray ({s['engine'].get('cpus')} CPUs, start included): **{s['sweep_s']:.0f} s**. "
                  f"Stand-alone `rtk run` of every candidate: {s['alone_sum_s']:.0f} s; the stages the sweep took "
                  f"from its cache took {s['saved_s']:.0f} s of that; bound {s['bound_s']:.0f} s; "
                  f"ratio **{s['ratio']:.2f}x**.", "",
                  "| candidate | values | alone s | saved s | p50 ms in sweep | p50 ms alone (rtk bench) | diff | "
                  "alone repeats' p50 (min-max) | alternated: sweep's path / alone |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in s["rows"]:
            spread = r.get("alone_p50_repeats") or [float("nan")]
            pair = r.get("paired")
            lines.append(f"| {r['id']} | {r['label']} | {r['alone_s']:.1f} | {r['saved_s']:.1f} | "
                         f"{r['sweep_p50_ms']:.3f} | {r['alone_p50_ms']:.3f} | "
                         f"{100 * (r['sweep_p50_ms'] / r['alone_p50_ms'] - 1):+.1f}% | "
                         f"{min(spread):.3f}-{max(spread):.3f} | "
                         + (f"{pair['ray_p50_ms']:.3f} / {pair['alone_p50_ms']:.3f} ({100 * (pair['ratio'] - 1):+.1f}%)"
                            if pair else "") + " |")
        if s.get("paired"):
            lines += ["", "Last column: each artifact timed again by the sweep's own timing path (a Ray task holding "
                      "every CPU of the node) and by a fresh `rtk bench` process, alternated A B B A "
                      f"{s['rows'][0]['paired']['rounds']} times, so the machine's drift falls on both alike."]
    t = res.get("timing")
    if t:
        lines += ["", f"## The sweep's timing path: {t['recipe']}, {t['candidates']} deployed artifacts", "",
                  "Each artifact timed by the sweep's own timing path (a Ray task holding every CPU of the node) and "
                  "by a fresh `rtk bench` process, alternated A B B A "
                  f"{t['rows'][0]['paired']['rounds']} times, so the machine's drift falls on both alike.", "",
                  "| candidate | values | p50 ms in sweep | sweep's path p50 ms | alone p50 ms | path / alone |",
                  "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['id']} | {r['label']} | {r['sweep_p50_ms']:.3f} | {r['paired']['ray_p50_ms']:.3f} | "
                  f"{r['paired']['alone_p50_ms']:.3f} | {100 * (r['paired']['ratio'] - 1):+.1f}% |" for r in t["rows"]]
    h = res.get("shards")
    if h:
        lines += ["", f"## Sharded validation: {h['images']} images at {h['size']} px, random ResNet50 (ONNX Runtime)",
                  "", f"One process, 2 threads: **{h['one_ips']:.1f} images/s**; 2 shards on a local Ray instance, "
                  f"1 thread each: **{h['sharded_ips']:.1f} images/s** ({100 * h['ratio']:.0f}%), median of "
                  f"{len(h['times_s']['one'])} alternated repeats with warm workers. Cold (first call, worker "
                  f"imports): {h['cold_sharded_s']:.1f} s; Ray start {h['ray_start_s']:.1f} s.", "",
                  f"Measured costs: scanning the folder in the driver {1e3 * h['scan_s_per_image']:.2f} ms/image "
                  f"(serial); validating {1e3 * h['per_image_s_1thread']:.1f} ms/image on 1 thread (decode "
                  f"included); a shard's fixed cost (task start + reading the artifact + opening the runtime) "
                  f"{h['shard_fixed_s']:.2f} s; merging {1e3 * h['merge_s']:.2f} ms for 2 shards.", "",
                  "On paper, 50,000 images on N nodes of 2 one-thread workers (scan + fixed + images/shards x "
                  "per-image + merge):", "", "| nodes | shards | s | images/s | speed-up | efficiency |",
                  "|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {p['nodes']} | {p['shards']} | {p['seconds']:.0f} | {p['ips']:.0f} | {p['speedup']:.1f}x | "
                  f"{100 * p['efficiency']:.0f}% |" for p in h["paper"]]
        lines += ["", "The driver's scan (it opens every image once to skip unreadable files) is the serial part "
                  "that caps the speed-up; a file list made once would remove it."]
    return "\n".join(lines) + "\n"


def goals(res: dict) -> list[dict]:
    out = []
    s = res.get("sweep")
    if s:
        out.append({"goal": "sweep within 1.2x of the candidates' stand-alone time minus the cache savings",
                    "verdict": "met" if s["ratio"] <= 1.2 else "not met", "measured": f"{s['ratio']:.2f}x"})
        out.append({"goal": "sweep latencies within 5% of stand-alone rtk bench of the same artifacts",
                    "verdict": "met" if s["latency_dev_max"] <= 0.05 else "not met",
                    "measured": f"{s['latency_within_5pct']}/{s['candidates']} within 5%, largest "
                                f"{100 * s['latency_dev_max']:.1f}%, median {100 * s['latency_dev_median']:.1f}%"
                                + (f"; the noise floor: stand-alone rtk bench against itself (max/min of its "
                                   f"repeats' p50) varies by {100 * s['alone_spread_median']:.1f}% (median), up to "
                                   f"{100 * s['alone_spread_max']:.1f}%" if "alone_spread_median" in s else "")})
    for s in [x for x in (s, res.get("timing")) if x]:
        if "paired" in s:
            p = s["paired"]
            out.append({"goal": "the sweep's timing path adds under 5% to stand-alone rtk bench (alternated, same "
                                "artifacts: the sweep-latency goal with the drift between the two taken out)",
                        "verdict": "met" if 0.95 <= p["ci95"][0] and p["ci95"][1] <= 1.05 else "not met",
                        "measured": f"geometric mean {100 * (p['ratio'] - 1):+.1f}% (95% CI "
                                    f"{100 * (p['ci95'][0] - 1):+.1f}% to {100 * (p['ci95'][1] - 1):+.1f}%), "
                                    f"{p['within_5pct']}/{p['artifacts']} artifacts within 5%"})
    h = res.get("shards")
    if h:
        out.append({"goal": "2 workers x 1 thread >= 90% of the images/s of one process with 2 threads",
                    "verdict": "met" if h["ratio"] >= 0.9 else "not met", "measured": f"{100 * h['ratio']:.0f}%"})
    return out


def quick_recipe(recipe: Path, work: Path) -> Path:
    """`recipe` made small for --quick: less data and training, its first two prune ratios x its targets."""
    import yaml

    r = yaml.safe_load(recipe.read_text())
    r["name"] = f"{r.get('name', 'sweep')}-quick"
    r["data"]["synth"].update(per_class=40, val_per_class=16)
    if "finetune" in r:
        r["finetune"]["epochs"] = 1
    r.setdefault("quantize", {})["subset"] = 32
    r["bench"] = {**r.get("bench", {}), "runs": 20, "repeats": 2}
    values = r["sweep"]["values"]
    values.pop("precision", None)
    if "prune.ratio" in values:
        values["prune.ratio"] = values["prune.ratio"][:2]
    out = work / f"{recipe.stem}-quick.yaml"
    out.write_text(yaml.safe_dump(r, sort_keys=False))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("all", "sweep", "shards", "timing"), default="all",
                   help="timing: the sweep, then only its timing path against stand-alone rtk bench, alternated")
    p.add_argument("--rounds", type=int, default=6, help="A B B A alternations per artifact for the timing path")
    p.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "sweep-demo.yaml")
    p.add_argument("--quick", action="store_true", help="a smaller sweep (4 candidates) and 160 images: checks "
                                                        "the benchmark runs, not the goals")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--work", type=Path, default=HERE / ".cache" / "scale")
    args = p.parse_args(argv)
    from benchmarks.report import cpu_slug
    from toolkit.doctor import doctor

    started = time.perf_counter()
    stamp = dt.datetime.now()
    work = args.work / stamp.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    cpu = doctor().cpu
    res: dict = {"date": stamp.strftime("%Y-%m-%d"), "cpu": cpu.name, "cores": cpu.cores, "cpu_info": cpu.model_dump(),
                 "quick": args.quick,
                 "command": " ".join(["python -m benchmarks.scale", *(argv if argv is not None else sys.argv[1:])])}
    if args.part in ("all", "shards"):
        res["shards"] = shards_part(work, _say, images_per_class=16 if args.quick else 40,
                                    repeats=2 if args.quick else 3)
    if args.part in ("all", "sweep"):
        recipe = quick_recipe(args.recipe.resolve(), work) if args.quick else args.recipe.resolve()
        res["sweep"] = sweep_part(recipe, work, _say, rounds=args.rounds)
    if args.part == "timing":
        recipe = quick_recipe(args.recipe.resolve(), work) if args.quick else args.recipe.resolve()
        res["timing"] = timing_part(recipe, work, _say, rounds=args.rounds)
    res["goals"] = goals(res)
    res["seconds"] = time.perf_counter() - started
    from toolkit.io import write_json, write_text_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("" if args.part == "all" else "-" + args.part) + ("-quick" if args.quick else "")
    base = args.out / f"scale-{stamp.strftime('%Y%m%d')}-{cpu_slug(res['cpu_info'])}{suffix}"
    write_json(base.with_suffix(".json"), res)
    write_text_atomic(base.with_suffix(".md"), markdown(res))
    for g in res["goals"]:
        _say(f"{g['verdict']}: {g['goal']}: {g['measured']}")
    _say(f"done in {res['seconds'] / 60:.1f} min: {base.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
