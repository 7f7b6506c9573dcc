"""One command that measures rtk against the alternatives on the same ResNet50, in one run.

    python -m benchmarks.run [--quick] [--out benchmarks/results]

Latency rows run a random-weight 1000-class ResNet50 at 224x224 (speed does not depend on weights); accuracy
rows run a small ResNet50 trained by rtk on the built-in synthetic set, with the same quantize/prune paths
applied. Every ratio is against ONNX Runtime FP32 measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

from benchmarks.build import Builder
from benchmarks.rows import BY_KEY, REFERENCE, ROWS
from benchmarks.settings import PRESETS

HERE = Path(__file__).resolve().parent


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_all(b: Builder, work: Path) -> dict:
    """Every artifact for both models; returns {model: {row key: path or None}} and training facts."""
    s = b.s
    lat = work / "latency"
    lat.mkdir(parents=True, exist_ok=True)
    trained = b.trained()
    calib = trained[0] if trained else None
    acc = work / "accuracy"
    acc.mkdir(exist_ok=True)
    if not s.shared_model:
        out = b.step("export", "L", "latency_model", dict(ckpt=str(lat / "model.pt"), onnx=str(lat / "model.onnx"),
                                                           size=s.latency_size, classes=s.latency_classes, seed=s.seed))
        if not out["ok"]:
            raise SystemExit(f"cannot export the latency model: {out['reason']}")
    if trained:
        data, ckpt, _ = trained
        (acc / "model.pt").write_bytes(ckpt.read_bytes())
        e = b.step("export", "A", "export", dict(ckpt=str(acc / "model.pt"), onnx=str(acc / "model.onnx"),
                                                  data=str(data / "val")))
        if not e["ok"]:
            for r in ROWS:
                b.missing[("A", r.key)] = e["reason"]
    else:
        for r in ROWS:
            b.missing[("A", r.key)] = "not available: the accuracy model could not be trained"
    if s.shared_model:
        lat = acc
    if calib is not None:
        if not s.shared_model:
            b.variants("L", lat, calib, val=None)
            b.pruned("L", lat, calib, data=None)
            b.pruned_to_target("L", lat, calib, data=None)
        if ("A", "ort_fp32") not in b.missing:
            b.variants("A", acc, calib, val=data / "val")
            b.pruned("A", acc, calib, data=data)
            b.pruned_to_target("A", acc, calib, data=data)
        b.calibration_sweep(lat, calib)
    else:
        for r in ROWS:
            if r.made_by not in ("", "export", "compile_openvino"):
                b.missing[("L", r.key)] = "not available: no calibration images (training data failed)"
        b.variants("L", lat, Path("/nonexistent"), val=None)
    paths = {m: {r.key: b.artifact(m, folder, r.key) for r in ROWS} for m, folder in (("A", acc), ("L", lat))}
    if s.shared_model:
        b.missing.update({("L", k): why for (m, k), why in list(b.missing.items()) if m == "A"})
        paths["L"] = dict(paths["A"])
    return {"paths": paths, "data": calib, "test": b.test_split(calib) if calib is not None else None}


E2E_ROWS = ("ort_fp32", "ov_fp32", "ov_bf16", "rtk_int8_ov", "pruned_int8_ov")


def end_to_end_rows(settings, work: Path, lat: dict, acc: dict, data: Path | None) -> dict:
    """Photo to label (benchmarks/e2e.py) for the rows a device would deploy, and the fast decode's accuracy
    rule judged on the trained model's val images re-encoded at 12 MP."""
    from benchmarks import e2e as E

    if not settings.e2e_12mp:
        return {"error": f"not measured in {settings.mode} mode"}
    photos = work / "photos"
    big = E.make_photos(photos / "12mp", count=settings.e2e_12mp, size=E.SIZES["12mp"], seed=settings.seed)
    small = E.make_photos(photos / "500x375", count=settings.e2e_folder, size=E.SIZES["500x375"], seed=settings.seed)
    rows = {}
    for key in E2E_ROWS:
        if key not in lat:
            rows[key] = {"error": "not available: no artifact"}
            continue
        folder = small if key == "rtk_int8_ov" else small[:settings.e2e_folder_others]
        rows |= E.end_to_end({key: (lat[key], BY_KEY[key].target)}, photos={"12mp": big, "500x375": folder},
                             repeats=settings.e2e_repeats, batched=settings.e2e_batch if key == "rtk_int8_ov" else None,
                             say=_say)
    out = {"rows": rows}
    if "rtk_int8_ov" in acc and data is not None:
        _say("fast decode vs exact decode on 12 MP val photos")
        try:
            out["decode_accuracy"] = E.decode_accuracy(acc["rtk_int8_ov"], "openvino", data / "val", work,
                                                       per_class=settings.e2e_accuracy_per_class)
        except Exception as exc:
            out["decode_accuracy"] = {"error": f"failed: {str(exc).splitlines()[0][:200]}"}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats and rows, a smaller trained model, no calibration sweep or benchmark_app (about 3 minutes)")
    p.add_argument("--mode", choices=sorted(PRESETS), help="preset: full (default), quick, smoke (tests only)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for JSON, Markdown and PNG results")
    p.add_argument("--cache", type=Path, default=HERE / ".cache", help="folder for the trained model and artifacts")
    p.add_argument("--scale", action="store_true", help="instead of the table: the goals of rtk sweep on Ray and "
                   "sharded validation (benchmarks/scale.py); with --quick a smaller sweep that checks it runs")
    args = p.parse_args(argv)
    if args.scale:
        from benchmarks.scale import main as scale

        return scale(["--out", str(args.out), *(["--quick"] if args.quick or args.mode == "quick" else [])])
    mode = args.mode or ("quick" if args.quick else "full")
    settings = PRESETS[mode]
    started = time.perf_counter()
    from benchmarks.floor import count_macs, cpu_peak, gemm_fp32_gmacs
    from benchmarks.report import assemble, write_results
    from benchmarks import measure as M

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = args.cache / f"work-{mode}"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    b = Builder(settings=settings, work=work, cache=args.cache, say=_say)
    built = build_all(b, work)
    paths = built["paths"]
    lat = {k: v for k, v in paths["L"].items() if v is not None}
    items = [M.Timed(k, v, BY_KEY[k].target) for k, v in lat.items()]
    _say(f"timing {len(items)} rows at batch {', '.join(map(str, settings.batches))} ({settings.table_repeats} interleaved repeats)")
    table, failed = M.interleaved(items, batches=settings.batches, repeats=settings.table_repeats,
                                  runs_for=settings.runs_for, warmup=settings.warmup, say=_say)
    for k, why in failed.items():
        b.missing[("L", k)] = why
    best_int8 = max((k for k in ("rtk_int8_ov", "rtk_int8_ort") if k in table),
                    key=lambda k: -table[k][1]["median"], default=None)
    scale_keys = [k for k in (REFERENCE, best_int8) if k and k in table]
    _say(f"scaling: {', '.join(scale_keys)} over batch {settings.scaling_batches} and threads {settings.scaling_threads}")
    scaling = [] if not settings.scaling_batches else M.scaling([M.Timed(k, lat[k], BY_KEY[k].target) for k in scale_keys], batches=settings.scaling_batches,
                        threads=settings.scaling_threads, repeats=max(1, settings.repeats - 1),
                        runs_for=lambda bs: max(3, settings.runs_b1 // bs), warmup=1, say=_say)
    app = {"error": "not available: no OpenVINO FP32 IR"}
    hints = {"fp32": app, "int8": app}
    if "ov_fp32" in lat:
        hints = {}
        for precision, key in (("fp32", "ov_fp32"), ("int8", "rtk_int8_ov")):
            if precision not in settings.hint_precisions:
                hints[precision] = {"error": f"not measured in {mode} mode"}
                continue
            if key not in lat:
                hints[precision] = {"error": f"not available: no {BY_KEY[key].label} artifact"}
                continue
            try:
                ceiling = (lambda: gemm_fp32_gmacs(repeats=3)) if precision == "fp32" else None
                hints[precision] = M.openvino_hints(lat[key], repeats=settings.hint_repeats,
                                                    seconds=settings.hint_seconds, ceiling=ceiling, say=_say)
            except Exception as exc:
                hints[precision] = {"error": f"failed: {str(exc).splitlines()[0][:200]}"}
        for precision, key in (("fp32", "ov_fp32"), ("int8", "rtk_int8_ov")):   # OpenVINO's own tool, same IR
            if settings.benchmark_app_seconds and "ratio" in hints.get(precision, {}):
                hints[precision]["benchmark_app"] = M.benchmark_app_hints(
                    lat[key], seconds=settings.benchmark_app_hint_seconds, repeats=settings.hint_repeats,
                    infer_precision=hints[precision]["runtime"]["latency"].get("inference_precision"), say=_say)
        app = {"error": f"not run in {mode} mode"} if not settings.benchmark_app_seconds else M.rtk_vs_benchmark_app(lat["ov_fp32"], seconds=settings.benchmark_app_seconds,
                                     repeats=settings.benchmark_app_repeats, warmup=settings.warmup, say=_say)
    accuracy = {"error": "not available: the accuracy model could not be trained or exported"}
    acc = {k: v for k, v in paths["A"].items() if v is not None}
    if REFERENCE in acc:
        from toolkit.validate import validate

        _say(f"accuracy of {len(acc)} artifacts on the held-out test split")
        keys = list(acc)
        try:
            rep = validate([acc[k] for k in keys], built["test"], reference=acc[REFERENCE],
                           targets=[BY_KEY[k].target for k in keys], measure_latency=False)
            accuracy = {k: {"top1": s.top1, "drop_pt": s.drop_pt, "agreement": s.agreement,
                            "executed_precision": s.executed_precision} for k, s in zip(keys, rep.artifacts)}
            hits = {k: s.hits for k, s in zip(keys, rep.artifacts)}
            from benchmarks.goals import mcnemar

            for alt in ("ort_qs_defaults", "nncf_defaults"):
                for mine in ("rtk_int8_ort", "rtk_int8_ov"):
                    if alt in hits and mine in hits:
                        accuracy[mine].setdefault("mcnemar", {})[alt] = mcnemar(hits[mine], hits[alt])
            accuracy["_images"] = rep.images
        except Exception as exc:
            accuracy = {"error": f"failed: {str(exc).splitlines()[0][:200]}"}
    e2e = end_to_end_rows(settings, work, lat, acc, built["data"])
    macs = {}     # per network a row runs (rows.Row.network), from its checkpoint in the latency model's folder
    for network, key, name in (("full", "torch_fp32", "model.pt"), ("pruned", "pruned_fp32", "pruned.pt"),
                               ("pruned_target", None, "pruned_target.pt")):
        ckpt = paths["L"].get(key) if key else None
        if ckpt is None or Path(ckpt).suffix != ".pt":
            ckpt = work / ("accuracy" if settings.shared_model else "latency") / name
        if Path(ckpt).is_file():
            macs[network] = count_macs(ckpt)[0]
    result = assemble(settings=settings, builder=b, table=table, scaling=scaling, hints=hints, app=app,
                      accuracy=accuracy, macs=macs, peak=cpu_peak(measure=True), e2e=e2e,
                      command=" ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", "benchmarks.run",
                                                                 *(argv if argv is not None else sys.argv[1:])]),
                      seconds=time.perf_counter() - started, trained=b)
    files = write_results(result, out=args.out, stamp=stamp)
    _say(f"done in {(time.perf_counter() - started) / 60:.1f} min: {', '.join(str(f) for f in files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
