"""Terminal rendering with rich: progress, one-line errors, and a table per result type.

Everything goes to stderr except result tables, so `rtk ... > file` keeps only results.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as Bars
from rich.table import Table

from toolkit.progress import Progress

_WIDTH = None if sys.stdout.isatty() else 120
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def _one_line(message: str) -> str:
    """Line breaks shown as \\n: a path or name holding one cannot forge a second `error:` line."""
    return escape(message.replace("\r", "\\r").replace("\n", "\\n"))


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {_one_line(message)}", highlight=False, soft_wrap=True, emoji=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {_one_line(message)}", highlight=False, soft_wrap=True, emoji=False)


def ok(message: str) -> None:
    err.print(f"[green]✓[/] {message}", highlight=False, soft_wrap=True)


def _progress(transient: bool = True) -> Bars:
    # auto_refresh=False everywhere: rich's refresh thread wakes 12.5 times a second and competes with the
    # runtime's threads for the cores and for the GIL, which shows in latencies timed under a live display.
    # Displays refresh when their state changes instead (at most 10 times a second).
    return Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=transient, auto_refresh=False)


def _throttled(refresh: Callable[[], None], interval: float = 0.1) -> Callable[[bool], None]:
    last = [0.0]

    def maybe(force: bool = False) -> None:
        now = time.monotonic()
        if force or now - last[0] >= interval:
            last[0] = now
            refresh()

    return maybe


@contextlib.contextmanager
def progress(title: str, *, keep: bool = False) -> Iterator[Progress]:
    """Render the progress protocol (toolkit.progress): a status line shows `title` and then each
    `progress(stage)`; `progress(stage, done, total, **facts)` drives one bar per stage. `keep` leaves the bars
    on screen afterwards (training epochs). Off a terminal, stage lines and finished epochs are printed, each
    stage once it is done (the next one started, or the block ended without an error): a command refused
    mid-stage leaves only its one `error:` line on stderr."""
    bar = _progress(transient=not keep)
    tasks: dict[str, int] = {}
    refresh = _throttled(bar.refresh)
    held: list[str] = []                     # off a terminal: the running stage's line, printed once it is done

    def start() -> None:
        if err.is_terminal and not bar.live.is_started:
            bar.start()

    def say(line: str) -> None:
        for done_line in held:
            err.print(done_line, highlight=False)
        held[:] = [line]

    def update(stage: str, done: int | None = None, total: int | None = None, **facts: float | str) -> None:
        start()
        info = " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in facts.items())
        if total is None:
            if "" not in tasks:
                tasks[""] = bar.add_task(title, total=None, info="")
            bar.update(tasks[""], description=f"{title}: {stage}", info=info)
            refresh(True)
            if not err.is_terminal:
                say(f"{title}: {stage}")
            return
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total, info="")
        bar.update(tasks[stage], completed=done, total=total, info=info)
        refresh(done == total)
        if "val_acc" in facts and not err.is_terminal:
            say(f"{stage}: {info}")

    if not keep and err.is_terminal:  # a status line with the title from the start, gone at the end
        tasks[""] = bar.add_task(title, total=None, info="")
        start()
        bar.refresh()
    try:
        yield update
        say("")
    finally:
        if bar.live.is_started:
            bar.stop()


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    return table


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "—" if value is None else format(value, fmt)


def _on(device) -> str:
    """' on NAME (host, CPU, cores)' for a result from an SSH device (its DeviceInfo, or that as a dict), else ''."""
    if device is None:
        return ""
    d = device if isinstance(device, dict) else device.model_dump()
    return f" on {d['name']} ({d['hostname']}, {d['cpu']}, {d['cores']} cores)"


def show_doctor(report) -> None:
    table = _table(f"rtk doctor{escape(_on(report.device))}", "item", "value")
    table.add_row("host", f"{report.hostname} ({report.os})")
    table.add_row("python", report.python)
    table.add_row("cpu", f"{report.cpu.name}, {report.cpu.cores} cores, {report.cpu.machine}")
    table.add_row("isa", " ".join(k for k, v in report.cpu.isa.items() if v) or "none detected")
    table.add_row("int8 tier", report.cpu.int8_class)
    table.add_row("bf16", "yes (AVX512_BF16 or AMX: rtk compile --precision bf16)" if report.bf16
                  else f"no: {report.bf16_reason}")
    tiers = report.isa_tiers
    if tiers:
        table.add_row("isa tiers (--isa)", " ".join(tiers["runnable"]) or "none")
        if tiers["cap"]:
            table.add_row("openvino tier", f"{tiers['openvino']} (ONEDNN_MAX_CPU_ISA={tiers['cap']})")
    table.add_row("usable cpus", str(report.threads))
    table.add_row("gpu", report.gpu or "none")
    for name, ok_ in report.runtimes.items():
        table.add_row(f"runtime {name}", "[green]available[/]" if ok_ else "[dim]not installed[/]")
    for name, version in report.packages.items():
        table.add_row(name, version or "[dim]not installed[/]")
    if report.tensorrt is not None:
        t = report.tensorrt
        found = lambda version, how: f"{version} ({how})" if version else "[dim]not installed[/]"  # noqa: E731
        table.add_row("tensorrt", found(t.tensorrt, t.tensorrt_found))
        table.add_row("cuda-python", found(t.cuda_python, t.cuda_python_found))
        table.add_row("cuda driver / runtime", f"{t.cuda_driver or '?'} / {t.cuda_runtime or '?'}")
        table.add_row("tensorrt status", f"[green]ready on {escape(t.gpu)}[/]" if t.problem is None
                      else f"[yellow]{escape(t.problem)}[/]")
    out.print(table)


def show_export(result) -> None:
    p = result.parity
    table = _table(f"exported {result.output}", "check", "value")
    table.add_row("opset / batch", f"{result.opset} / {'dynamic' if result.dynamic_batch else 'static'}")
    table.add_row("input", f"3x{result.input_size}x{result.input_size}")
    table.add_row("size", f"{result.size_mb:.1f} MB")
    table.add_row("parity images", f"{p.images} ({p.source})")
    table.add_row("max |ONNX - PyTorch|", f"{p.max_abs_diff:.2e} (atol {p.atol:g})")
    table.add_row("logits cosine", f"{p.cosine:.6f}")
    table.add_row("top-1 agreement", f"{p.top1_agreement:.1f}%")
    table.add_row("parity", "[green]passed[/]" if p.passed else "[red]FAILED[/]")
    out.print(table)


def show_validation(report) -> None:
    table = _table(f"validation on {report.data} ({report.images} images){escape(_on(report.device))}", "artifact",
                   "target", "precision", "top-1 %", "top-5 %", "drop pt", "agree %", "cosine", "p50 ms")
    rows = ([report.reference] if report.reference else []) + list(report.artifacts)
    for i, s in enumerate(rows):
        name = s.artifact + (" (reference)" if report.reference and i == 0 else "")
        table.add_row(name, s.target, s.precision, _f(s.top1), _f(s.top5), _f(s.drop_pt), _f(s.agreement),
                      _f(s.cosine, ".5f"), _f(s.p50_ms))
    out.print(table)
    bare: dict[str, list[str]] = {}     # one warning per distinct advice, naming its artifacts
    for s in rows:
        if s.executed_precision and not _same_precision(s.precision, s.executed_precision):
            out.print(f"[dim]{escape(s.artifact)}: {s.precision} artifact, computed in {s.executed_precision}[/]",
                      highlight=False)
        for advice in (s.bare_compile_differs, s.saturation_risk):
            if advice:
                bare.setdefault(advice, []).append(s.artifact)
    for advice, artifacts in bare.items():
        warn(f"{', '.join(artifacts)}: {advice}")
    from toolkit.console_photos import show_decode

    show_decode(rows)
    tiers = {s.target: s.isa for s in rows if s.isa}
    if tiers:
        capped = len(set(tiers.values())) > 1
        out.print("[dim]ISA tier (oneDNN): " + ", ".join(
            f"{t} {i}" + (" (native: MLAS ignores the cap)" if capped and t == "onnxruntime" else "")
            for t, i in tiers.items()) + "[/]", highlight=False)
    if report.skipped:
        n = report.skipped
        warn(f"{n} file{'s' * (n != 1)} in {report.data} skipped (no image extension, or not a readable image)"
             + (f", e.g. {report.skipped_files[0]}" if report.skipped_files else ""))
    for gate in (g for g in report.gates if g.passed):   # a failed one is the command's error line (GateFailed)
        ok(str(gate))


def _same_precision(precision: str, executed: str) -> bool:
    """An INT8 artifact runs its convolutions with u8 or i8 activations (and any leftover float layers in the
    runtime's float type): that is INT8. Float artifacts must run in their own type."""
    if precision == "int8":
        return executed.split()[0] in ("u8", "i8")
    return executed == {"fp32": "f32", "fp16": "f16"}.get(precision, precision)


def show_bench(result) -> None:
    table = _table(f"{result.artifact} on {result.target} ({result.precision}, {result.input_size}px)"
                   f"{escape(_on(result.device))}", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms",
                   "images/s")
    for p in result.results:
        lat = p.latency_ms
        table.add_row(str(p.batch), _f(lat.p50), _f(lat.p90), _f(lat.p99), _f(lat.mean), _f(lat.std),
                      _f(p.throughput_ips, ".1f"))
        for phase, plat in p.phases_ms.items():
            per = " (per image)" if result.photos and phase in ("decode", "preprocess") else ""
            table.add_row(f"  {phase}{per}", _f(plat.p50), _f(plat.p90), _f(plat.p99), _f(plat.mean), _f(plat.std), "")
    out.print(table)
    if result.cpu and not result.device:
        out.print(f"[dim]timed on {escape(result.cpu)}[/]")
    if result.executed_precision:
        out.print(f"computed in {result.executed_precision} (read back from {result.target})", highlight=False)
    for advice in (result.runtime.get("bare_compile_differs"), result.saturation_risk):
        if advice:
            warn(str(advice))
    if result.photos:
        p = result.photos
        why = {"flag": "as asked", "artifact": "the artifact's default: it records that the fast decode passed "
               "validation", "default": "the default", "refused": "its decode record is not trusted: damaged, "
               "edited, or failing rtk's rule"}.get(p.get("decode_by"), "")
        out.print(f"end to end over {p['images']} photos, {p['decode']} decode{f' ({why})' if why else ''}, "
                  f"{p['scaled']} JPEGs DCT-scaled: latency is a batch's decode + preprocess + inference timed one "
                  "after another (what a photo in it waits); images/s is the overlapped run's", highlight=False,
                  soft_wrap=True)
        for pt in (pt for pt in result.results if pt.pipeline):
            q = pt.pipeline
            out.print(f"[dim]batch {pt.batch}: {q['workers']} thread{'s' * (q['workers'] != 1)} decoding"
                      f"{' and inferring' if q['threads_infer'] else ''}, at most {q['peak_in_flight']} of "
                      f"{q['depth']} images in flight[/]", highlight=False)
        if p.get("skipped"):
            warn(f"{len(p['skipped'])} files skipped (no image extension, or not a readable image), "
                 f"e.g. {p['skipped'][0]}")


def show_finetune(result) -> None:
    table = _table(f"finetuned {result.output}", "epoch", "train loss", "train acc %", "val loss", "val acc %")
    for h in result.history:
        mark = " *" if h.epoch == result.best_epoch else ""
        table.add_row(f"{h.epoch + 1}{mark}", _f(h.train_loss, ".4f"), _f(h.train_acc), _f(h.val_loss, ".4f"),
                      _f(h.val_acc))
    out.print(table)
    ok(f"best val top-1 {result.best_val_acc:.2f}% (epoch {result.best_epoch + 1}) saved to {result.output}")


def show_compile(result, *, max_findings: int = 15) -> None:
    """The compiled files (or the TensorRT check's findings), errors first."""
    if not result.check_only:
        table = _table(f"compiled {result.source} for {result.target} ({result.precision}, batch {result.batch})",
                       "file", "MB", "sha256")
        for f in result.files:
            table.add_row(f.path, f"{f.bytes / 1e6:.1f}", f.sha256[:12])
        out.print(table)
        out.print(f"input: {result.input}")
    if result.findings:
        groups: dict[tuple[str, str], list[str]] = {}
        for f in result.findings:
            groups.setdefault((f.severity, f.message), []).append(f.node)
        table = _table(f"TensorRT check of {result.source}", "severity", "nodes", "message")
        for column in table.columns:
            column.justify = "left"
        for (severity, message), nodes in list(groups.items())[:max_findings]:
            colour = "red" if severity == "error" else "yellow"
            where = nodes[0] if len(nodes) == 1 else f"{nodes[0]} and {len(nodes) - 1} more"
            table.add_row(f"[{colour}]{severity}[/]", escape(where), escape(message))
        if len(groups) > max_findings:
            table.add_row("", f"... {len(groups) - max_findings} more kinds", "(every finding is in --json)")
        out.print(table)
    errors = sum(f.severity == "error" for f in result.findings)
    warnings = len(result.findings) - errors
    if result.check_only:
        if not errors:
            ok(f"TensorRT check passed: 0 errors, {warnings} warnings (batch {result.batch})")
    else:
        ok(f"wrote {result.output} ({result.size_mb:.1f} MB) in {result.seconds:.1f} s")


def show_prune(result) -> None:
    r = result
    what = (f"{r.mode}, ratio {r.ratio:g}, {r.importance}, round to {r.round_to}" if r.mode == "structured"
            else f"{r.mode}, sparsity {r.sparsity:g}, magnitude")
    scope = "global" if r.global_pruning else ("uniform" if r.mode == "structured" else "per-layer")
    table = _table(f"pruned {r.source} ({what}, {scope}, {r.input_size}px)", "fact", "before", "after", "ratio")
    table.add_row("GMACs", f"{r.macs_before / 1e9:.3f}", f"{r.macs_after / 1e9:.3f}",
                  f"{r.macs_before / max(r.macs_after, 1):.2f}x fewer")
    table.add_row("params (M)", f"{r.params_before / 1e6:.2f}", f"{r.params_after / 1e6:.2f}",
                  f"{r.params_before / max(r.params_after, 1):.2f}x fewer")
    if r.mode == "unstructured":
        table.add_row("weight sparsity", "", f"{100 * (r.sparsity_reached or 0):.1f}%",
                      f"nonzero params {r.nonzero_params_after / 1e6:.2f}M")
    for lat in r.latency:
        table.add_row(f"{lat.target} FP32 p50 ms (batch 1)", _f(lat.before_ms), _f(lat.after_ms),
                      f"{lat.speedup:.2f}x speed-up")
    if r.top1_before is not None:
        table.add_row("val top-1 %", _f(r.top1_before), _f(r.top1_after),
                      "—" if r.top1_after is None else f"{r.top1_after - r.top1_before:+.2f} pt")
        table.add_row("  after pruning" + (" + BN adapt" if r.bn_adapted_batches else ""), "",
                      _f(r.top1_pruned), "")
    for h in r.recovery:
        table.add_row(f"  recovery epoch {h['epoch'] + 1}", f"loss {h['train_loss']:.3f}", _f(h["val_acc"]), "")
    out.print(table)
    if r.search:
        search = _table(f"latency search on {r.target} (target {r.target_latency_ms:g} ms)", "ratio", "p50 ms", "meets")
        for s in r.search:
            search.add_row(f"{s.ratio:.3f}", _f(s.latency_ms), "yes" if s.meets else "no")
        out.print(search)
    if r.mode == "unstructured":
        warn("unstructured zeros keep every MAC on dense runtimes; the latency above is the honest effect")
    if r.passed and r.output:
        ok(f"wrote {r.output} in {r.seconds:.1f} s")


def show_report(report) -> None:
    h = report.headline
    table = _table(f"rtk run: {report.recipe}", "device", "artifact", "target", "precision", "size MB", "top-1 %",
                   "drop pt", "agree %", "p50 ms", "p99 ms", "speed-up")
    for r in report.rows:
        lat = r.latency_ms
        table.add_row(escape(r.device or "here"), r.name, r.target, r.precision, _f(r.size_mb, ".1f"), _f(r.top1),
                      _f(r.drop_pt), _f(r.agreement),
                      _f(lat.p50 if lat else None), _f(lat.p99 if lat else None), _f(r.speedup, ".2f"))
    out.print(table)
    out.print(f"[bold]{h.artifact}[/] vs FP32: accuracy drop {_f(h.accuracy_drop_pt)} pt · "
              f"size {_f(h.size_ratio)}x smaller · speed-up {_f(h.speedup)}x", highlight=False)
    for note in report.notes:
        warn(note)
    if report.deploy:
        check = report.deploy["check"]
        out.print(f"deploy: [bold]{escape(report.deploy['artifact'])}[/] ({h.artifact} with the fast JPEG decode on by "
                  f"default: it passed on the {check['scaled']} of {check['images']} validation images it changes)",
                  highlight=False, soft_wrap=True)
    for gate in (g for g in report.gates if g.passed):   # a failed one is the command's error line (GateFailed)
        ok(str(gate))


def show_comparison(result) -> None:
    table = _table(f"{result.a} → {result.b} (noise tolerance {result.tolerance:.0%})", "device", "artifact",
                   "target", "p50 A", "p50 B", "B/A", "interval", "latency", "top-1 Δ pt", "accuracy")
    for c in result.rows:
        interval = f"{c.interval[0]:.2f}–{c.interval[1]:.2f}" if c.interval else "—"
        style = "red" if c.regressed else ("green" if c.latency == "faster" else "")
        table.add_row(escape(c.device or "here"), c.name, c.target, _f(c.p50_a), _f(c.p50_b), _f(c.ratio), interval,
                      f"[{style}]{c.latency}[/]" if style else c.latency, _f(c.top1_change_pt), c.accuracy)
    out.print(table)
    for note in result.notes:
        warn(note)


def show_quantize(r) -> None:
    """INT8 result: the three ratios against FP32 first (size, top-1 drop, speed-up), then the calibration set."""
    table = _table(f"INT8 for {r.target}: {r.output}", "fact", "FP32", "INT8", "ratio")
    table.add_row("size MB", _f(r.size_fp32_mb, ".1f"), _f(r.size_int8_mb, ".1f"), f"{r.size_ratio:.2f}x smaller")
    if r.top1_fp32 is not None:
        where = " ".join(filter(None, (r.measured_on, r.measured_isa)))
        table.add_row(f"top-1 % ({r.val_images} images, {where})", _f(r.top1_fp32), _f(r.top1_int8),
                      f"drop {_f(r.drop_pt)} pt, agree {_f(r.agreement, '.1f')}%")
    if r.speedup is not None:
        table.add_row(f"p50 ms batch 1 ({r.measured_on})", _f(r.latency_fp32_ms), _f(r.latency_int8_ms),
                      f"{r.speedup:.2f}x faster")
    else:
        table.add_row("speed-up", "", "", r.speed_note or "not measured")
    out.print(table)
    c = r.calibration
    coverage = f", {sum(1 for n in c.per_class.values() if n)}/{len(c.per_class)} classes" if c.per_class else ""
    out.print(f"calibration: {c.images} images from {c.source} (seed {c.seed}{coverage}) in "
              f"{r.calibration_seconds:.1f} s + {c.preprocess_seconds:.1f} s preprocessing · {r.method}", highlight=False)
    if r.accuracy_control is not None:
        ac = r.accuracy_control
        layers = ", ".join(ac.reverted_layers) if ac.reverted_layers else "none needed"
        out.print(f"accuracy control (max drop {ac.max_drop_pt} pt): reverted to float: {layers}", highlight=False)
    for w in r.warnings:
        warn(w)
    ok(f"wrote {', '.join(r.files)} in {r.seconds:.1f} s")
