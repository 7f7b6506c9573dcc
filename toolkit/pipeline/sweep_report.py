"""A sweep's results: one typed value -> sweep.json, sweep.md, pareto.png and the winner's best.yaml. Runs nothing.

Each candidate is scored on its deployed artifact (the last row of its run's report): top-1 and the latency of
its target. A candidate is eligible when its run finished and every gate of the recipe passed; the winner is
the eligible candidate best by the objective (ties: higher top-1, then lower p50, then the first id). With
`minimize: p50_ms`, the eligible candidates whose repeats' p50s overlap the winner's are named as `tied`: the
winner is not clearly faster than them on this machine (the test `rtk compare` calls "within noise"). The
Pareto front is drawn per target: the candidates that no other one beats on both top-1 and p50 latency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from toolkit import __version__
from toolkit.io import atomic_outputs, now_iso, write_json, write_text_atomic
from toolkit.recipe import Recipe, dump_recipe


class CandidateResult(BaseModel):
    """One candidate: its values, how its run ended, and the metrics of its deployed artifact."""

    id: str
    values: dict[str, Any]
    folder: str
    status: Literal["ok", "failed", "crashed"]
    error: str | None = None
    stage: str | None = None             # the stage that failed
    exit_code: int | None = None         # what `rtk run` of this candidate would exit with (1 gate, 2 input, 3 bug)
    notes: list[str] = Field(default_factory=list)
    fingerprint: str = ""                # sha256 of the candidate's recipe: what --resume compares
    seconds: float = 0.0
    engine: dict[str, Any] | None = None  # where it ran (a kept candidate ran in an earlier sweep; None: not recorded)
    ran: list[str] = Field(default_factory=list)       # stages it made in this session (`seconds` is this session's)
    reused: list[str] = Field(default_factory=list)    # from the shared stage cache: another candidate made them
    earlier: list[str] = Field(default_factory=list)   # kept in its folder from an interrupted earlier session
    artifact: str | None = None
    target: str | None = None
    precision: str | None = None
    top1: float | None = None
    top5: float | None = None
    drop_pt: float | None = None
    agreement: float | None = None
    p50_ms: float | None = None
    p50_repeats: list[float] = Field(default_factory=list)   # each bench repeat's p50: the noise around p50_ms
    p99_ms: float | None = None
    size_mb: float | None = None
    speedup: float | None = None
    passed: bool = False
    failed_gates: list[str] = Field(default_factory=list)
    pareto: bool = False

    @property
    def eligible(self) -> bool:
        return self.status == "ok" and self.passed

    @property
    def label(self) -> str:
        return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in self.values.items())


class SweepResult(BaseModel):
    recipe: str
    rtk: str
    created: str
    objective: dict[str, str]
    engine: dict[str, Any]
    seconds: float
    candidates: list[CandidateResult]
    winner: str | None
    tied: list[str] = Field(default_factory=list, description="With minimize p50_ms: the eligible candidates whose "
                            "repeats' p50s overlap the winner's (not clearly slower on this machine).")
    best_recipe: str | None
    resumed: list[str] = Field(default_factory=list)
    plots: list[str] = Field(default_factory=list)

    def __bool__(self) -> bool:
        return self.winner is not None


def from_report(report, **fields) -> CandidateResult:
    """A finished candidate from its run's Report."""
    row = report.rows[-1]
    lat = row.latency_ms
    return CandidateResult(status="ok", artifact=row.name, target=row.target, precision=row.precision,
                           top1=row.top1, top5=row.top5, drop_pt=row.drop_pt, agreement=row.agreement,
                           p50_ms=lat.p50 if lat else None, p50_repeats=row.p50_repeats,
                           p99_ms=lat.p99 if lat else None, size_mb=row.size_mb,
                           speedup=row.speedup, passed=report.passed,
                           failed_gates=[str(g) for g in report.gates if not g.passed], **fields)


def mark_pareto(candidates: list[CandidateResult]) -> None:
    """Per target, flag the finished candidates no other one beats on top-1 and p50 at once."""
    done = [c for c in candidates if c.status == "ok" and c.top1 is not None and c.p50_ms is not None]
    for c in done:
        c.pareto = not any(o.target == c.target and o.top1 >= c.top1 and o.p50_ms <= c.p50_ms
                           and (o.top1 > c.top1 or o.p50_ms < c.p50_ms) for o in done)


def pick_winner(candidates: list[CandidateResult], objective: tuple[str, str]) -> CandidateResult | None:
    way, metric = objective
    sign = -1.0 if way == "maximize" else 1.0
    scored = [c for c in candidates if c.eligible and getattr(c, metric) is not None]
    if not scored:
        return None
    return min(scored, key=lambda c: (sign * getattr(c, metric), -(c.top1 or 0.0), c.p50_ms or float("inf"), c.id))


def tied_with(winner: CandidateResult | None, candidates: list[CandidateResult],
              objective: tuple[str, str]) -> list[str]:
    """With `minimize: p50_ms`: the other eligible candidates not clearly slower than the winner, whose ratio's
    interval from the repeats (`rtk compare`'s: [min theirs / max its, max theirs / min its]) reaches 1."""
    from toolkit.compare import latency_verdict

    if winner is None or objective != ("minimize", "p50_ms") or len(winner.p50_repeats) < 2:
        return []
    return [c.id for c in candidates if c.id != winner.id and c.eligible and len(c.p50_repeats) >= 2
            and latency_verdict(winner.p50_repeats, c.p50_repeats, 0.0)[1][0] <= 1]


def tied_line(result: "SweepResult") -> str | None:
    """The sentence that says the winner's latency lead is within the noise, or None."""
    if not result.tied:
        return None
    by_id = {c.id: c for c in result.candidates}
    win = by_id[result.winner]
    others = ", ".join(f"{i} ({_range(by_id[i].p50_repeats)} ms)" for i in result.tied)
    return (f"{win.id} is not clearly faster than {others}: their repeats' p50s overlap its own "
            f"({_range(win.p50_repeats)} ms), so their order is within this machine's noise; choose among them by "
            "top-1 or size, or bench with more repeats")


def _range(values: list[float]) -> str:
    return f"{min(values):.3g}-{max(values):.3g}"


def best_recipe_text(candidate: CandidateResult, recipe: Recipe, sweep_recipe: str) -> str:
    """best.yaml: the winner's recipe, ready for `rtk run`."""
    head = (f"# The winner of `rtk sweep {sweep_recipe}`: candidate {candidate.id} ({candidate.label}),\n"
            f"# top-1 {_f(candidate.top1)} %, p50 {_f(candidate.p50_ms)} ms on {candidate.target}.\n"
            f"# Run it: rtk run best.yaml -o runs/{recipe.name}\n")
    return head + dump_recipe(recipe)


def _f(v: float | None, fmt: str = ".2f") -> str:
    return "—" if v is None else format(v, fmt)


def markdown(result: SweepResult) -> str:
    way, metric = next(iter(result.objective.items()))
    by_id = {c.id: c for c in result.candidates}
    win = by_id.get(result.winner) if result.winner else None
    reused = sum(len(c.reused) for c in result.candidates)
    ran = sum(len(c.ran) for c in result.candidates)
    earlier = sum(len(c.earlier) for c in result.candidates)
    now = len(result.candidates) - len(result.resumed)
    session = " (this session)" if earlier or result.resumed else ""
    lines = [f"# rtk sweep: {result.recipe}", "", f"rtk {result.rtk} · {result.created} · {_n(now, 'candidate')} "
             f"in {result.seconds:.0f} s{session} · {_engine(result.engine)}"
             + "".join(_kept(result)), "",
             f"Objective: {way} **{metric}** of the deployed artifact, among candidates that pass every gate.", ""]
    if win:
        lines += [f"**Winner: {win.id}** ({win.label}): top-1 **{_f(win.top1)} %**, p50 **{_f(win.p50_ms)} ms** "
                  f"on {win.target} ({win.precision}, {_f(win.size_mb, '.1f')} MB). Its recipe: "
                  f"[best.yaml](best.yaml) (`rtk run best.yaml -o runs/best`).", ""]
        lines += [f"Note: {tied_line(result)}.", ""] if result.tied else []
    elif all(c.status != "ok" for c in result.candidates):
        lines += [f"**Every candidate failed** ({len(result.candidates)}): nothing was measured; no winner, no "
                  "best.yaml, no plot.", ""]
    else:
        lines += ["**No candidate passed every gate**: no winner, no best.yaml.", ""]
    lines += [f"Stages: {ran} ran, {reused} reused from the shared stage cache (made once by another candidate)"
              + (f", {earlier} kept from an interrupted earlier session" if earlier else "") + ".", ""]
    if result.resumed:
        lines += [f"Resumed: {_n(len(result.resumed), 'candidate')} finished before were kept "
                  f"({', '.join(result.resumed)}).",
                  ""]
    lines += ["front: ★ on the Pareto front of top-1 against p50 among the candidates of the same target.", ""]
    lines += ["| candidate | values | target | precision | top-1 % | drop pt | p50 ms | p99 ms | MB | gates | front |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---|:---:|"]
    for c in result.candidates:
        if c.status != "ok":
            lines.append(f"| {c.id} | {c.label} | | | | | | | | **{c.status}** at {c.stage}: {c.error} | |")
            continue
        gates = "pass" if c.passed else "fail: " + "; ".join(g.split(":")[0] for g in c.failed_gates)
        lines.append(f"| {'**' + c.id + '**' if c is win else c.id} | {c.label} | {c.target} | {c.precision} | "
                     f"{_f(c.top1)} | {_f(c.drop_pt)} | {_f(c.p50_ms)} | {_f(c.p99_ms)} | {_f(c.size_mb, '.1f')} | "
                     f"{gates} | {'★' if c.pareto else ''} |")
    notes = [f"- {c.id}: {n}" for c in result.candidates for n in c.notes]
    if notes:
        lines += ["", "## Notes", ""] + notes
    if result.plots:
        lines += ["", "## Top-1 vs latency per target", ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" for p in result.plots]
    lines += ["", "Each candidate's own report: `candidates/<id>/report.md`."]
    return "\n".join(lines) + "\n"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _kept(result: SweepResult) -> list[str]:
    """The candidates kept from earlier sweeps, by the engine they ran on (their numbers come from there)."""
    groups: dict[str, list[CandidateResult]] = {}
    for c in (c for c in result.candidates if c.id in result.resumed):
        groups.setdefault(_engine(c.engine) if c.engine else "engine not recorded", []).append(c)
    return [f"; {len(cs)} kept from an earlier sweep ({how}; their runs took {sum(c.seconds for c in cs):.0f} s)"
            for how, cs in groups.items()]


def _engine(engine: dict[str, Any]) -> str:
    if not engine.get("ray"):
        return "one after another in one process"
    where = engine.get("address") or "a local instance"
    return f"Ray {engine['ray']} on {where} ({engine['cpus']} CPUs, {engine['nodes']} node(s))"


def pareto_plot(result: SweepResult, recipe: Recipe, folder: Path) -> list[str]:
    """pareto.png: top-1 vs p50 per target (a line through each point spans its repeats' p50s); the front joined,
    the winner starred, the gates drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [c for c in result.candidates if c.status == "ok" and c.top1 is not None and c.p50_ms is not None]
    targets = sorted({c.target for c in done})
    if not targets:
        return []
    fig, axes = plt.subplots(1, len(targets), figsize=(5.5 * len(targets), 4.2), squeeze=False, sharey=True)
    gates = recipe.gates
    for ax, target in zip(axes[0], targets):
        mine = [c for c in done if c.target == target]
        for c in mine:
            style = dict(color="#4c72b0", marker="o", s=45) if c.eligible else dict(color="#999999", marker="x", s=40)
            ax.scatter(c.p50_ms, c.top1, zorder=3, **style)
            if len(c.p50_repeats) > 1:              # the repeats' p50s: how far this machine moves the point
                ax.hlines(c.top1, min(c.p50_repeats), max(c.p50_repeats), color=style["color"], lw=1, zorder=2)
            ax.annotate(c.id, (c.p50_ms, c.top1), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = sorted((c for c in mine if c.pareto), key=lambda c: c.p50_ms)
        ax.step([c.p50_ms for c in front], [c.top1 for c in front], where="post", color="#dd8452", lw=2, zorder=2)
        ax.scatter([c.p50_ms for c in front], [c.top1 for c in front], s=140, facecolors="none",
                   edgecolors="#dd8452", lw=2, zorder=2, label="Pareto front")
        win = next((c for c in mine if c.id == result.winner), None)
        if win:
            ax.scatter(win.p50_ms, win.top1, marker="*", s=260, color="#c44e52", zorder=4, label=f"winner {win.id}")
        right = 1.15 * max(max([c.p50_ms, *c.p50_repeats]) for c in mine)
        limit = gates.max_p50_ms.get(target)
        if limit is not None and limit <= 2 * right:
            ax.axvline(limit, color="#c44e52", ls="--", lw=1, label=f"max_p50_ms gate ({limit:g} ms)")
            right = max(right, 1.1 * limit)
        elif limit is not None:
            ax.plot([], [], " ", label=f"max_p50_ms gate: {limit:g} ms (off the scale)")
        refs = sorted(c.top1 + c.drop_pt for c in mine if c.drop_pt is not None)
        if gates.max_drop_pt is not None and refs:
            ax.axhline(refs[len(refs) // 2] - gates.max_drop_pt, color="#c44e52", ls=":", lw=1,
                       label=f"max_drop_pt gate (FP32 top-1 - {gates.max_drop_pt:g})")
        ax.set_xlim(0, right)
        ax.set(title=target, xlabel="p50 latency, ms (batch 1)", ylabel="top-1 %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("top-1 vs latency (x: fails a gate; lines: the bench repeats' p50 range)")
    fig.tight_layout()
    with atomic_outputs(folder / "pareto.png") as (tmp,):
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return ["pareto.png"]


def write_results(result: SweepResult, recipe: Recipe, folder: Path, best: Recipe | None, source: str) -> None:
    """pareto.png, best.yaml (when there is a winner), sweep.json and sweep.md; sweep.md last (it links the rest)."""
    result.plots = pareto_plot(result, recipe, folder)
    win = next((c for c in result.candidates if c.id == result.winner), None)
    if win is not None and best is not None:
        write_text_atomic(folder / "best.yaml", best_recipe_text(win, best, source))
        result.best_recipe = "best.yaml"
    else:
        (folder / "best.yaml").unlink(missing_ok=True)
    if not result.plots:
        (folder / "pareto.png").unlink(missing_ok=True)     # an earlier sweep's plot is not this one's
    write_json(folder / "sweep.json", result)
    write_text_atomic(folder / "sweep.md", markdown(result))


def new_result(recipe: Recipe, **fields) -> SweepResult:
    way, metric = recipe.sweep.objective
    return SweepResult(recipe=recipe.name, rtk=__version__, created=now_iso(), objective={way: metric},
                       best_recipe=None, **fields)


def show_sweep(result) -> None:
    """The candidates table, each failure's line and the winner, on the console."""
    from rich.markup import escape

    from toolkit.console import _f, _table, ok, out, warn

    table = _table(f"rtk sweep: {result.recipe}", "candidate", "values", "target", "precision", "top-1 %", "p50 ms",
                   "gates", "front")
    for c in result.candidates:
        gates = ("pass" if c.passed else "fail") if c.status == "ok" else f"{c.status} at {c.stage}"
        name = f"[bold]{c.id} ★[/]" if c.id == result.winner else c.id
        table.add_row(name, escape(c.label), c.target or "", c.precision or "", _f(c.top1), _f(c.p50_ms), gates,
                      "•" if c.pareto else "")
    out.print(table)
    for c in result.candidates:
        if c.status != "ok":
            warn(f"{c.id} {c.status} at {c.stage}: {c.error}")
    if result.winner:
        ok(f"winner: {result.winner} ({escape(next(c.label for c in result.candidates if c.id == result.winner))})")
        if result.tied:
            warn(tied_line(result))
