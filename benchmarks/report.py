"""The benchmark's one result: JSON, a Markdown table that ends with the goals (met / not met) and a PNG."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from benchmarks.floor import CpuPeak, fraction_of_peak
from benchmarks.goals import goals
from benchmarks.rows import BY_KEY, REFERENCE, ROWS
from benchmarks.settings import Settings
from toolkit.doctor import cpu_name
from toolkit.io import write_json, write_text_atomic


def _ratio(table: dict, key: str, batch: int) -> float | None:
    """Speed-up vs ONNX Runtime FP32: median over repeats of the paired per-repeat ratios."""
    if key not in table or REFERENCE not in table or batch not in table[key]:
        return None
    ref, got = table[REFERENCE][batch]["repeats"], table[key][batch]["repeats"]
    pairs = sorted(r / g for r, g in zip(ref, got))
    n = len(pairs)
    return pairs[n // 2] if n % 2 else (pairs[n // 2 - 1] + pairs[n // 2]) / 2


def assemble(*, settings: Settings, builder, table: dict, scaling: list, hints: dict, app: dict, accuracy: dict,
             macs: dict, peak: CpuPeak, command: str, seconds: float, trained,
             e2e: dict | None = None) -> dict[str, Any]:
    from toolkit.doctor import doctor

    rows = []
    for r in ROWS:
        row: dict[str, Any] = {"key": r.key, "label": r.label, "target": r.target, "precision": r.precision}
        lat_missing = builder.missing.get(("L", r.key))
        if r.key in table:
            row["latency_ms"] = {str(b): v for b, v in table[r.key].items()}
            row["speedup_vs_ort_fp32"] = {str(b): _ratio(table, r.key, b) for b in table[r.key]}
            m = macs.get(r.network)
            if m:
                gmacs = {"fp32": peak.fp32_gmacs, "bf16": peak.bf16_gmacs or peak.fp32_gmacs}.get(
                    r.precision, peak.int8_amx_gmacs or peak.int8_gmacs)
                row["macs"] = m
                row["fraction_of_peak"] = {str(b): fraction_of_peak(macs=m, batch=b, ms=v["median"], peak_gmacs=gmacs)
                                           for b, v in table[r.key].items()}
        else:
            row["latency_error"] = lat_missing or "not available: not measured"
        if isinstance(accuracy, dict) and r.key in accuracy:
            row["accuracy"] = accuracy[r.key]
        else:
            row["accuracy_error"] = builder.missing.get(("A", r.key)) or accuracy.get("error") or "not available"
        rows.append(row)
    stages = [{k: v for k, v in st.items() if k not in ("facts",)} | {"facts": _small(st.get("facts") or {})}
              for st in builder.stages]
    result = {
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": command, "settings": settings.to_dict(), "seconds": seconds,
        "machine": doctor().model_dump(mode="json"), "cpu_peak": peak.model_dump(), "macs": macs,
        "rows": rows, "scaling": scaling, "openvino_hints": hints, "benchmark_app": app, "stages": stages,
        "accuracy_images": accuracy.get("_images") if isinstance(accuracy, dict) else None,
        "end_to_end": e2e or {"error": "not measured"},
    }
    result["goals"] = goals(result)
    return result


def _small(facts: dict) -> dict:
    return {k: v for k, v in facts.items() if k != "history" or len(str(v)) < 4000}


def _fmt_lat(v: dict | None) -> str:
    return f"{v['median']:.1f} ({v['min']:.1f}-{v['max']:.1f})" if v else "—"


def _x(v: float | None) -> str:
    return f"{v:.2f}x" if v is not None else "—"


def _ratio_spread(hp: dict) -> str:
    """The hint line's "median of N window ratios, min-max" part (older results files have no ratios)."""
    r = hp.get("ratios")
    return f", median of {len(r['repeats'])} window ratios {r['min']:.2f}-{r['max']:.2f}" if r else ""


def e2e_markdown(res: dict) -> list[str]:
    """Photo to label: naive (Pillow full decode + torchvision transform + runtime, one at a time) vs rtk."""
    e2e = res.get("end_to_end") or {}
    if "rows" not in e2e:
        return ["", "## Photo to label", "", e2e.get("error", "not measured")]
    lines = ["", "## Photo to label (latency model, JPEGs made from the synthetic images)", "",
             "| path | 12 MP naive ms | 12 MP rtk ms | x | rtk decode / preprocess / infer ms | 500x375 naive img/s "
             "| rtk img/s | x | network-only img/s | rtk % of it |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, row in e2e["rows"].items():
        label = BY_KEY[key].label
        if "error" in row:
            lines.append(f"| {label} | {row['error']} |" + " — |" * 8)
            continue
        b, f = row["12mp"], row["500x375"]
        ph = b["rtk_phases_ms"]
        lines.append(f"| {label} | {b['naive_ms']:.1f} | {b['rtk_ms']:.1f} | {b['speedup']:.2f}x | "
                     f"{ph['decode']:.1f} / {ph['preprocess']:.1f} / {ph['infer']:.1f} | {f['naive_ips']:.1f} | "
                     f"{f['rtk_ips']:.1f} | {f['vs_naive']:.2f}x | {f['network_only_ips']:.1f} | "
                     f"{100 * f['of_network']:.0f}% |")
    some = next((r for r in e2e["rows"].values() if "12mp" in r), None)
    goal = (e2e["rows"].get("rtk_int8_ov") or {}).get("500x375") or {}
    others = next((r["500x375"]["photos"] for k, r in e2e["rows"].items() if k != "rtk_int8_ov" and "500x375" in r),
                  None)
    if some:
        lines += ["", f"12 MP: {some['12mp']['photos']} photos of 4000x3000 at batch 1 (LATENCY hint), ms per photo "
                      f"(median over repeats of the per-photo p50; rtk: decode + preprocess + inference, one photo at "
                      f"a time). 500x375: a folder of {goal.get('photos', '?')} photos for rtk INT8 on OpenVINO (the "
                      f"goal's folder), {others or '?'} for the other rows; rtk with the THROUGHPUT hint, "
                      + (f"{goal['threads']} threads each decoding a photo and inferring it on an OpenVINO request of "
                         "its own" if goal.get("threads_infer") else "through an AsyncInferQueue, decoding on 2 threads")
                      + "; network-only = the same compiled model's images/s on a preprocessed tensor."]
    dec = e2e.get("decode_accuracy") or {}
    if "passed" in dec:
        lines += ["", f"Fast decode (DCT scaling) vs exact decode on {dec['images']} val images re-encoded at 12 MP "
                      f"(trained model, rtk INT8 on OpenVINO): top-1 {dec['fast_top1']:.2f}% vs {dec['exact_top1']:.2f}%, "
                      f"agreement {dec['agreement']:.2f}%: the rule (drop <= 0.1 pt, agreement >= 99.5%) "
                      f"{'passes' if dec['passed'] else 'FAILS'}."]
    elif dec:
        lines += ["", f"Fast decode accuracy: {dec.get('error')}"]
    return lines


def cpu_slug(cpu: dict) -> str:
    """The CPU part of a results file's name: the model and its core ("amd-epyc-zen-4"), so runs on two CPUs the
    same day keep their own files."""
    text = cpu["model"] + (" " + cpu["core"] if cpu.get("core") else "")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48]


def markdown(res: dict) -> str:
    m, s, peak = res["machine"], res["settings"], res["cpu_peak"]
    bs = [str(b) for b in s["batches"]]
    lines = [f"# rtk benchmark — {res['date'][:10]} — {cpu_name(m['cpu'])} ({m['cpu']['cores']} cores)", "",
             f"Command: `{res['command']}` ({s['mode']} mode, {res['seconds'] / 60:.1f} min). "
             + ("Latency: the trained model itself (smoke mode), " if s.get("shared_model") else
                f"Latency: random-weight {s['latency_classes']}-class ResNet50 at {s['latency_size']}x{s['latency_size']}, ")
             + 
             f"median of {s.get('table_repeats', s['repeats'])} interleaved repeats (min-max), each the p50 of "
             f"{s['runs_b1']} calls at batch 1. Accuracy: ResNet50 trained by rtk on the synthetic set "
             f"({s['synth_classes']} classes drawn at {s['synth_size']}px, trained at {s.get('train_size', s['synth_size'])}px, "
             f"{s['train_epochs']} epochs), top-1 on "
             f"{res.get('accuracy_images') or '?'} held-out test images (a split of their own: training kept its best "
             "epoch by the val split's top-1); drop vs ONNX Runtime FP32 (pruned rows: vs unpruned).",
             "", "| path | " + " | ".join(f"b{b} ms | x ORT FP32 b{b}" for b in bs) + " | % of peak b1 | top-1 % | drop pt |",
             "|---|" + "---|---|" * len(bs) + "---|---|---|"]
    for row in res["rows"]:
        cells = [row["label"]]
        if "latency_ms" in row:
            for b in bs:
                cells += [_fmt_lat(row["latency_ms"].get(b)), _x(row["speedup_vs_ort_fp32"].get(b))]
            f = row.get("fraction_of_peak", {}).get("1")
            cells.append(f"{100 * f:.1f}%" if f is not None else "—")
        else:
            cells += [row["latency_error"]] + ["—"] * (2 * len(bs))
        if "accuracy" in row:
            a = row["accuracy"]
            cells += [f"{a['top1']:.1f}", f"{a['drop_pt']:+.1f}" if a.get("drop_pt") is not None else "—"]
        else:
            cells += [row["accuracy_error"], "—"]
        lines.append("| " + " | ".join(cells) + " |")
    int8_peak = (f"{peak['int8_amx_gmacs']:.0f} GMAC/s with AMX (VNNI alone: {peak['int8_gmacs']:.0f})"
                 if peak.get("int8_amx_gmacs") else f"{peak['int8_gmacs']:.0f} GMAC/s")
    lines += ["", f"Peak assumed: {peak['assumption']}. FP32 peak {peak['fp32_gmacs']:.0f} GMAC/s, INT8 peak "
              f"{int8_peak}. MACs counted by torch-pruning: "
              + ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in res["macs"].items()) + "."
              + (f" Measured ceiling: a 2048x2048 f32 GEMM on all cores (torch, best of 5) ran at "
                 f"{peak['gemm_fp32_gmacs']:.0f} GMAC/s, {100 * peak['gemm_fp32_gmacs'] / peak['fp32_gmacs']:.0f}% of "
                 "the assumed FP32 peak." if peak.get("gemm_fp32_gmacs") else "")]
    lines += e2e_markdown(res)
    lines += ["", "## Scaling (latency model)", "", "| row | threads | batch | ms (min-max) | images/s |", "|---|---|---|---|---|"]
    for sc in res["scaling"]:
        if "error" in sc:
            lines.append(f"| {sc['row']} | {sc['threads']} | — | {sc['error']} | — |")
        else:
            lines.append(f"| {BY_KEY[sc['row']].label} | {sc['threads']} | {sc['batch']} | {_fmt_lat(sc['latency_ms'])} "
                         f"| {sc['throughput_ips']:.1f} |")
    lines += ["", "## Cost of each stage", "", "| stage | model | wall s (in stage) | process s | peak RSS MB | result |",
              "|---|---|---|---|---|---|"]
    for st in res["stages"]:
        facts = st.get("facts") or {}
        inner = next((facts[k] for k in ("quantize_seconds", "export_seconds", "compile_seconds", "prune_seconds",
                                         "train_seconds") if k in facts), st.get("seconds"))
        what = "cached" if st.get("cached") else ("ok" if st["ok"] else st["reason"])
        lines.append(f"| {st['stage']} | {'latency' if st['model'] == 'L' else 'trained'} | "
                     f"{inner:.1f} | {st.get('process_seconds', 0):.1f} | {st.get('peak_mb', 0):.0f}"
                     f"{' (whole run so far)' if st.get('peak_scope') else ''} | {what} |"
                     if inner is not None else f"| {st['stage']} | {st['model']} | — | — | — | {what} |")
    h, app = res["openvino_hints"], res["benchmark_app"]
    lines += ["", "## OpenVINO", ""]
    for precision, hp in h.items():
        if "error" in hp:
            lines.append(f"- {precision.upper()} IR hints: {hp['error']}")
        else:
            lines.append(f"- {precision.upper()} IR: LATENCY hint batch 1 {hp['latency_b1']['median']:.1f} images/s; "
                         f"THROUGHPUT hint batch 8 {hp['throughput_b8']['median']:.1f} images/s ({hp['ratio']:.2f}x"
                         f"{_ratio_spread(hp)}; {hp['runtime']['throughput'].get('streams')} streams, "
                         f"{hp['runtime']['throughput'].get('infer_requests')} requests)")
            app_h = hp.get("benchmark_app") or {}
            if "ratio" in app_h:
                lines.append(f"  - benchmark_app on the same IR ({app_h.get('infer_precision') or 'its default precision'}): LATENCY batch 1 {app_h['latency_b1']['median']:.1f} "
                             f"images/s, THROUGHPUT batch 8 {app_h['throughput_b8']['median']:.1f} images/s "
                             f"({app_h['ratio']:.2f}x{_ratio_spread(app_h)})")
            elif "error" in app_h:
                lines.append(f"  - benchmark_app on the same IR: {app_h['error']}")
    if "error" in app:
        lines.append(f"- benchmark_app: {app['error']}")
    else:
        lines.append(f"- same FP32 IR, LATENCY hint, f32: benchmark_app median {_fmt_lat(app['benchmark_app_ms'])} ms, "
                     f"`rtk bench` {_fmt_lat(app['rtk_ms'])} ms (rtk / benchmark_app = {app['ratio']:.3f}, median of the "
                     f"ratios to the rtk runs either side {', '.join(f'{v:.3f}' for v in app.get('ratios', {}).get('repeats', []))}); "
                     f"`{app['command']}`")
    lines += ["", "## Goals", ""]
    for g in res["goals"]:
        lines.append(f"- **{g['verdict']}** — {g['goal']}: {g['measured']}")
    pk = m["packages"]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in pk.items() if v) + f"; Python {m['python']}; "
              f"{m['platform']}.", ""]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> Path | None:
    """Latency at batch 1 (latency model) vs top-1 (trained model) of every row that has both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["label"], r["latency_ms"]["1"]["median"], r["accuracy"]["top1"]) for r in res["rows"]
           if "latency_ms" in r and "1" in r["latency_ms"] and "accuracy" in r]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, ms, top1 in pts:
        ax.scatter(ms, top1, s=40)
        ax.annotate(label, (ms, top1), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="batch-1 latency, ms (ResNet50 224x224, log scale)", ylabel="top-1 % (synthetic test split, rtk-trained)",
           title="latency vs accuracy")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    from toolkit.io import atomic_outputs

    with atomic_outputs(path) as (tmp,):
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_results(res: dict, *, out: Path, stamp: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    cpu = cpu_slug(res["machine"]["cpu"])
    base = out / f"{stamp[:8]}-{cpu}" if res["settings"]["mode"] == "full" else out / f"{stamp[:8]}-{cpu}-{res['settings']['mode']}"
    png = plot(res, base.with_suffix(".png"))
    text = markdown(res) + (f"\n![latency vs accuracy]({png.name})\n" if png else "")
    write_json(base.with_suffix(".json"), res)
    write_text_atomic(base.with_suffix(".md"), text)
    files = [base.with_suffix(".json"), base.with_suffix(".md")] + ([png] if png else [])
    if res["settings"]["mode"] == "full":
        write_text_atomic(out / "LATEST.md", f"<!-- copy of {base.with_suffix('.md').name} -->\n" + text)
        files.append(out / "LATEST.md")
    return files
