"""The run report: one typed result -> report.json, report.md and PNG plots. It runs nothing: it is built from
what the stages returned.

It leads with the three ratios against FP32 that NNCF's PTQ examples end with (accuracy drop, size,
speed-up), then one pass/fail line per gate, then the parity matrix and the plots.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from pydantic import BaseModel, Field

from toolkit import __version__
from toolkit.bench import Latency
from toolkit.io import now_iso, write_json, write_text_atomic
from toolkit.pipeline.gates import Gate, Scored, evaluate
from toolkit.pipeline.stages import Outcome, fast_decode_check
from toolkit.recipe import Recipe

NO_ENGINE = ("No TensorRT engine was built: compile.check_only ran only the CPU-side check of what TensorRT would "
             "refuse (it passed); the rows below do not include TensorRT.")
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def t95(df: int) -> float:
    """Student-t 0.975 quantile: the table to 9 degrees of freedom, then the Cornish-Fisher expansion (within 0.003
    of it from 10 on; 1.96 alone would narrow the interval of 10 repeats by 12%)."""
    if df in T95:
        return T95[df]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


class Row(BaseModel):
    name: str
    path: str
    target: str
    precision: str
    role: str
    size_mb: float = Field(ge=0)
    top1: float | None = Field(None, ge=0, le=100)
    top5: float | None = Field(None, ge=0, le=100)
    drop_pt: float | None = Field(None, ge=-100, le=100)
    agreement: float | None = Field(None, ge=0, le=100)
    cosine: float | None = None
    per_class_top1: dict[str, float] = Field(default_factory=dict)
    batch: int | None = None
    latency_ms: Latency | None = None
    p50_repeats: list[float] = Field(default_factory=list)
    p50_ci95: tuple[float, float] | None = None
    throughput_ips: dict[int, float] = Field(default_factory=dict)
    speedup: float | None = None
    size_ratio: float | None = None
    # oneDNN ISA tier the runtime's CPU kernels ran on (toolkit.isa), per measurement: validate may run capped
    # (validate.isa) while bench runs uncapped, so each number names the tier it came from
    accuracy_isa: str | None = None
    latency_isa: str | None = None
    executed_precision: str | None = None   # read back from the runtime (OpenVINO: layers by runtimePrecision)
    bare_compile_differs: str | None = None   # what a bare OpenVINO compile_model would run instead, and the fix
    saturation_risk: str | None = None   # INT8 for a VNNI tier measured on one without (toolkit.isa)
    device: str | None = None   # the device (recipe devices: name) it was timed on; None: here
    machine: str | None = None  # a device's host, CPU and cores from its rtk doctor; here: the CPU bench names
    accuracy_on: str | None = None   # where top-1 was measured: "here", or the device's name (validate.on_devices)


class Headline(BaseModel):
    """The deployed artifact against the FP32 ONNX Runtime baseline."""

    artifact: str
    accuracy_drop_pt: float | None
    size_ratio: float | None
    speedup: float | None
    device: str | None = None      # the device the speed-up was measured on; None: here


class StageTime(BaseModel):
    name: str
    seconds: float
    skipped: bool
    reused: bool = False


class Report(BaseModel):
    recipe: str
    rtk: str
    created: str
    passed: bool
    headline: Headline
    gates: list[Gate]
    rows: list[Row]
    validation_images: int | None = Field(..., ge=1)
    stages: list[StageTime]
    plots: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="What the rows do not show, e.g. no engine built.")
    deploy: dict | None = Field(None, description="validate.fast_decode passed: the deployed artifact written again "
                                "under deploy/ with the fast JPEG decode as its default, and the check.")

    def __bool__(self) -> bool:
        return self.passed


def ci95(values: list[float]) -> tuple[float, float] | None:
    """Student-t 95% interval of the mean of repeated medians (None with one repeat)."""
    if len(values) < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = t95(len(values) - 1) * sd / math.sqrt(len(values))
    return (mean - half, mean + half)


def geometric_ci95(values: list[float]) -> tuple[float, float] | None:
    """`ci95` of positive values taken on the log scale: the interval of their geometric mean, positive by
    construction (latencies and ratios vary by factors; None with one value)."""
    logs = ci95([math.log(v) for v in values])
    return (math.exp(logs[0]), math.exp(logs[1])) if logs else None


def artifact_size_mb(path: Path) -> float:
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def _scores(validation: dict | None) -> dict[str, dict]:
    return {s["artifact"]: s for s in ([validation["reference"]] if validation and validation["reference"] else [])
            + (validation["artifacts"] if validation else [])}


def _row(a, *, device: str, runs: list[dict], scores: dict[str, dict], accuracy_on: str | None) -> Row:
    """One (device, artifact) row: its accuracy from `scores`, its latency from its bench `runs` (one a repeat)."""
    s = scores.get(a.path, {})
    row = Row(name=a.name, path=a.path, target=a.target, precision=a.precision, role=a.role,
              size_mb=artifact_size_mb(Path(a.path)), top1=s.get("top1"), top5=s.get("top5"), drop_pt=s.get("drop_pt"),
              agreement=s.get("agreement"), cosine=s.get("cosine"), per_class_top1=s.get("per_class_top1", {}),
              accuracy_isa=s.get("isa"), latency_isa=runs[0].get("isa") if runs else None, device=device or None,
              accuracy_on=accuracy_on if s else None, bare_compile_differs=s.get("bare_compile_differs"),
              saturation_risk=s.get("saturation_risk") or (runs[0].get("saturation_risk") if runs else None),
              executed_precision=s.get("executed_precision") or (runs[0].get("executed_precision") if runs else None))
    info = runs[0].get("device") if runs else None
    if info:
        row.machine = f"{info['hostname']}, {info['cpu']}, {info['cores']} cores"
    elif runs and runs[0].get("cpu"):
        row.machine = runs[0]["cpu"]
    if runs:
        first = [r["results"][0] for r in runs]
        row.batch = first[0]["batch"]
        row.latency_ms = Latency.from_ms([v for r in first for v in r["samples_ms"]])
        row.p50_repeats = [r["latency_ms"]["p50"] for r in first]
        row.p50_ci95 = geometric_ci95(row.p50_repeats)
        for r in runs[0]["results"]:
            row.throughput_ips[r["batch"]] = statistics.median(
                x["throughput_ips"] for run in runs for x in run["results"] if x["batch"] == r["batch"])
    return row


def build_report(recipe: Recipe, outcome: Outcome, records: list) -> Report:
    """The report of a run from what its stages returned (`records`: the stage records, for their times): a row per
    device and artifact (the PyTorch reference once, here), each compared with the FP32 ONNX on its device."""
    arts, validation = outcome.artifacts, outcome.validation
    here = _scores(validation)
    places = list(outcome.benches) or [""]
    rows = [_row(a, device="", runs=[], scores=here, accuracy_on="here")
            for a in arts if a.role == "reference" and places != [""]]
    for place in places:
        runs = outcome.benches.get(place, {})
        on_device = place in outcome.device_validation
        scores = _scores(outcome.device_validation[place]) if on_device else here
        rows += [_row(a, device=place, runs=runs.get(a.name, []), scores=scores,
                      accuracy_on=place if on_device else "here")
                 for a in arts if not (a.role == "reference" and place)]
    for row in rows:
        base = next((r for r in rows if r.role == "fp32" and r.device == row.device), None)
        if base and row.latency_ms and base.latency_ms:
            row.speedup = base.latency_ms.p50 / row.latency_ms.p50
        row.size_ratio = base.size_mb / row.size_mb if base and row.size_mb else None
    deployed = rows[-1]
    headline = Headline(artifact=deployed.name, accuracy_drop_pt=deployed.drop_pt, size_ratio=deployed.size_ratio,
                        speedup=deployed.speedup, device=deployed.device)
    gates = evaluate(recipe.gates, [Scored(name=r.name, target=r.target, role=r.role, device=r.device,
                                           accuracy_on=r.accuracy_on, top1=r.top1, drop_pt=r.drop_pt,
                                           agreement=r.agreement, p50_ms=r.latency_ms.p50 if r.latency_ms else None,
                                           p99_ms=r.latency_ms.p99 if r.latency_ms else None,
                                           speedup=r.speedup) for r in rows])
    gates += [Gate.model_validate(g) for g in (validation or {}).get("gates", [])   # the decode path's own rule
              if g["name"].startswith("fast_decode")]
    notes = [NO_ENGINE] if any(r.name == "check:tensorrt" for r in records) else []
    notes += _kept_exact(recipe, validation, outcome)
    if recipe.compile.embed_preprocess and any(r.role == "compiled" and r.target == "openvino" for r in rows):
        notes.append("The openvino IR takes the resized, center-cropped image as 8-bit RGB pixels, N x H x W x 3 "
                     "(compile.embed_preprocess): the float conversion, channel order and mean/std are in its graph.")
    if recipe.validate_.fast_decode and validation:
        notes.append("Top-1 here was measured with the fast JPEG decode (validate.fast_decode: exact wherever it "
                     "changes nothing); its check against the exact decode is the fast_decode gates.")
    return Report(recipe=recipe.name, rtk=__version__, created=now_iso(), passed=all(gates), headline=headline,
                  gates=gates, rows=rows, validation_images=validation["images"] if validation else None,
                  stages=[StageTime(name=r.name, seconds=r.seconds, skipped=r.skipped, reused=r.reused)
                          for r in records], notes=notes, deploy=outcome.deploy)


def _kept_exact(recipe: Recipe, validation: dict | None, outcome: Outcome) -> list[str]:
    """Why validate.fast_decode deployed nothing: the fast decode changed no validation image, or failed."""
    if not recipe.validate_.fast_decode or outcome.deploy:
        return []
    if validation is None:
        return ["validate.fast_decode: no validation images (data.validation, or a val/ split under data.root), so "
                "the fast decode was not checked and the deployed artifact keeps the exact decode."]
    check = fast_decode_check(validation)
    if check is None:
        return []
    why = (f"it failed its check ({check})" if check.scaled else "no validation image is a JPEG at least twice the "
           "resize target, so the fast decode changed none and was not tested")
    return [f"validate.fast_decode: the deployed artifact keeps the exact decode: {why}."]


def _fmt(v: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    return "—" if v is None else f"{format(v, fmt)}{suffix}"


def markdown(report: Report) -> str:
    h = report.headline
    lines = [f"# rtk report: {report.recipe}", "",
             f"{'**PASSED**' if report.passed else '**FAILED**'} · rtk {report.rtk} · {report.created}", "",
             f"Deployed artifact **{h.artifact}** against FP32 (ONNX Runtime)"
             f"{f' on {h.device}' if h.device else ''}:", "",
             f"- accuracy drop: **{_fmt(h.accuracy_drop_pt, '.2f', ' pt')}** top-1",
             f"- size: **{_fmt(h.size_ratio, '.2f', 'x')}** smaller",
             f"- speed-up: **{_fmt(h.speedup, '.2f', 'x')}** (p50, batch {report.rows[-1].batch})", ""]
    if report.deploy:
        check = report.deploy["check"]
        lines += [f"Deploy **{Path(report.deploy['artifact']).parent.name}/{Path(report.deploy['artifact']).name}**: "
                  f"{h.artifact} with the fast JPEG decode on by default (it passed on {check['scaled']} of "
                  f"{check['images']} validation images: top-1 {check['fast_top1']:.2f}% vs {check['exact_top1']:.2f}% "
                  f"exact, agreement {check['agreement']:.2f}%).", ""]
    lines += [f"**{note}**" for note in report.notes] + ([""] if report.notes else []) + ["## Gates", ""]
    lines += [f"- {'✅' if g.passed else '❌'} `{g.name}` on {g.artifact}: "
              f"{'not measured' if g.value is None else format(g.value, '.3f')} (limit {g.limit})"
              for g in report.gates] or ["- no gates set"]
    lines += ["", "## Artifacts", "",
              "| device | artifact | target | precision | size MB | top-1 % | drop pt | agree % | p50 ms (95% CI) | p99 ms "
              "| speed-up |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report.rows:
        lat = r.latency_ms
        ci = f" ({r.p50_ci95[0]:.2f}–{r.p50_ci95[1]:.2f})" if r.p50_ci95 else ""
        lines.append(f"| {r.device or 'here'} | {r.name} | {r.target} | {r.precision} | {r.size_mb:.1f} | "
                     f"{_fmt(r.top1)} | {_fmt(r.drop_pt)} | "
                     f"{_fmt(r.agreement)} | {_fmt(lat.p50 if lat else None)}{ci} | {_fmt(lat.p99 if lat else None)} | "
                     f"{_fmt(r.speedup, '.2f', 'x')} |")
    if report.validation_images:
        lines += ["", f"Accuracy on {report.validation_images} validation images; latency over "
                      f"{len(report.rows[-1].p50_repeats)} interleaved repeats (p50: of all their calls; "
                      "the interval: Student-t 95% of the geometric mean of the repeats' p50s)."]
    devices = sorted({f"{r.device} ({r.machine})" if r.device else f"here, on {r.machine}" for r in report.rows
                      if r.machine})
    if devices:
        lines += ["", "Latency measured " + "; ".join(d if d.startswith("here") else "on " + d for d in devices) + "."]
    ran = [f"{r.name}{' on ' + r.device if r.device else ''} {r.executed_precision}" for r in report.rows
           if r.executed_precision]
    if ran:
        lines += ["", "Executed precision (read back from the runtime): " + ", ".join(ran) + "."]
    lines += [f"- ⚠ {r.name}{' on ' + r.device if r.device else ''}: {advice}" for r in report.rows
              for advice in (r.bare_compile_differs, r.saturation_risk) if advice]
    if any(r.device and r.accuracy_on == "here" for r in report.rows):
        lines += ["", "Top-1 of device rows measured here, on the same artifacts (set validate.on_devices to measure "
                      "it on the devices, against the FP32 ONNX there)."]
    for kind in ("accuracy", "latency"):
        tiers = isa_tiers(report, kind)
        if tiers:
            lines += ["", f"ISA tier (oneDNN) per runtime for {kind}: " +
                      ", ".join(f"{t} {i}" for t, i in tiers.items()) + "."]
    lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in report.plots]
    lines += ["", "## Stages", "", "| stage | seconds | |", "|---|---:|---|"]
    lines += [f"| {s.name} | {s.seconds:.1f} | {_stage_note(s)} |" for s in report.stages]
    return "\n".join(lines) + "\n"


def _stage_note(s: StageTime) -> str:
    return "reused (another run of the sweep made it)" if s.reused else ("skipped (unchanged)" if s.skipped else "")


def isa_tiers(report: Report, kind: str) -> dict[str, str]:
    """{target: oneDNN tier} the `kind` ("accuracy" or "latency") numbers of the report were measured on."""
    return {r.target: getattr(r, f"{kind}_isa") for r in report.rows if getattr(r, f"{kind}_isa")}


def plots(report: Report, folder: Path) -> list[str]:
    """latency.png (distribution per artifact), pareto.png (accuracy vs latency), per_class.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.io import atomic_outputs

    made: list[str] = []

    def save(fig, name: str) -> None:
        with atomic_outputs(folder / name) as (tmp,):
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        made.append(name)

    timed = [r for r in report.rows if r.latency_ms]
    if timed:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = [f"{r.device}/{r.name}" if r.device else r.name for r in timed]
        ax.bar(names, [r.latency_ms.p50 for r in timed], color="#4c72b0", label="p50")
        ax.scatter(names, [r.latency_ms.p99 for r in timed], color="#c44e52", zorder=3, label="p99")
        for i, r in enumerate(timed):
            ax.scatter([i] * len(r.p50_repeats), r.p50_repeats, color="black", s=8, zorder=4)
        ax.set(ylabel=f"ms (batch {timed[0].batch})", title="latency per artifact (dots: p50 of each repeat)")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        save(fig, "latency.png")
    both = [r for r in timed if r.top1 is not None]
    if both:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in both:
            style = {"marker": "*", "s": 160} if r.role == "fp32" else {"marker": "o", "s": 50}
            ax.scatter(r.latency_ms.p50, r.top1, **style)
            ax.annotate(f"{r.device}/{r.name}" if r.device else r.name, (r.latency_ms.p50, r.top1),
                        textcoords="offset points", xytext=(5, 5))
        ax.set(xlabel="p50 latency, ms", ylabel="top-1 %", title="accuracy vs latency (★ FP32 reference)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save(fig, "pareto.png")
    base = next((r for r in report.rows if r.role in ("reference", "fp32") and r.per_class_top1), None)
    deployed = report.rows[-1]
    if base and deployed.per_class_top1 and deployed is not base:
        names = list(base.per_class_top1)
        change = [deployed.per_class_top1.get(n, 0.0) - base.per_class_top1[n] for n in names]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar(names, change, color=["#c44e52" if c < 0 else "#55a868" for c in change])
        ax.axhline(0, color="black", lw=0.8)
        ax.set(ylabel="top-1 change, pt", title=f"per-class accuracy: {deployed.name} vs {base.name}")
        ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        save(fig, "per_class.png")
    return made


def write_report(report: Report, folder: Path) -> None:
    report.plots = plots(report, folder)
    write_json(folder / "report.json", report)
    write_text_atomic(folder / "report.md", markdown(report))
