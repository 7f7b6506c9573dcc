"""`rtk compare A/report.json B/report.json`: is the change beyond the noise?

Latency: the ratio of p50s (B / A) with an interval from the repeats' p50s ([min B / max A, max B / min A]).
A row is "slower" only when the ratio exceeds 1 + tolerance AND the whole interval lies above 1; "faster"
likewise; otherwise it is "no change (within noise)". The default tolerance, 20%, is the run-to-run drift
measured on shared 2-core machines. Accuracy: top-1 differences beyond `max_drop` points are flagged.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from toolkit.errors import RtkError
from toolkit.io import read_small_text


class RowChange(BaseModel):
    device: str | None = None      # the device both were timed on (a recipe devices: name); None: here
    name: str
    target: str
    p50_a: float | None
    p50_b: float | None
    ratio: float | None
    interval: tuple[float, float] | None
    latency: str
    top1_a: float | None
    top1_b: float | None
    top1_change_pt: float | None
    accuracy: str

    @property
    def regressed(self) -> bool:
        return self.latency == "slower" or self.accuracy == "lower"


class Comparison(BaseModel):
    a: str
    b: str
    tolerance: float
    max_drop: float
    rows: list[RowChange]
    regressions: list[str]
    passed: bool
    notes: list[str] = []

    def __bool__(self) -> bool:
        return self.passed


def _strict_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice is not None:
        raise ValueError(f"key {twice!r} given twice")
    return dict(pairs)


MIN_LATENCY_MS = 1e-3      # 1 microsecond: no image classifier runs faster; a smaller number is an edit


def _row_problem(row) -> str | None:
    """What makes a row impossible for a report rtk wrote (None when nothing does)."""
    lat = row.latency_ms
    timings = [*row.p50_repeats, *([lat.p50, lat.p90, lat.p99, lat.min, lat.max] if lat else [])]
    if any(not (MIN_LATENCY_MS <= t < float("inf")) for t in timings):
        return f"holds a latency that is not a positive number of at least {MIN_LATENCY_MS} ms"
    if lat and not lat.min <= lat.p50 <= lat.p90 <= lat.p99 <= lat.max:
        return "holds latency percentiles out of order (min <= p50 <= p90 <= p99 <= max)"
    if lat and (lat.runs < 1 or lat.std < 0):
        return "holds a latency summary of no runs or a negative std"
    if bool(lat) != bool(row.p50_repeats):
        return "holds a latency without its repeats (rtk writes latency_ms and p50_repeats together)"
    if row.p50_ci95 and row.p50_ci95[0] > row.p50_ci95[1]:
        return "holds a 95% interval whose ends are reversed"
    if row.top1 is not None and row.top5 is not None and row.top5 < row.top1:
        return "holds a top-5 below its top-1"
    if row.cosine is not None and not abs(row.cosine) <= 1 + 1e-6:
        return "holds a cosine similarity outside -1..1"
    if any(not 0 <= v <= 100 for v in row.per_class_top1.values()):
        return "holds a per-class top-1 outside 0..100"
    if any(not 0 < v < float("inf") for v in row.throughput_ips.values()):
        return "holds a throughput that is not a positive number"
    return None


def _load(path: Path) -> dict:
    """A report.json, checked against the report's schema (`toolkit.pipeline.report.Report`) before use: a
    hand-edited or damaged report is refused with one line, never compared."""
    from pydantic import ValidationError

    from toolkit.pipeline.report import Report

    text = read_small_text(Path(path), str(path), "give the report.json of an `rtk run`", limit=64 << 20)
    try:
        data = json.loads(text, parse_constant=_strict_constant,
                          object_pairs_hook=_unique_keys)
    except (ValueError, OSError, RecursionError) as exc:
        raise RtkError(f"{path}: not an rtk report.json ({type(exc).__name__}: {str(exc)[:80]}); give the "
                       "report.json of an `rtk run`") from None
    try:
        # strict: `"top1": true` or `"top1": "25"` is an edit, not a number (lax mode read true as 1.0)
        report = Report.model_validate_json(text, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "report"
        raise RtkError(f"{path}: not a valid rtk report.json ({where}: {first['msg']}); give the report.json of an "
                       "`rtk run`, unedited") from None
    seen = set()
    for row in report.rows:
        key = (row.device, row.name, row.target)      # a row per device and artifact
        problem = _row_problem(row) or ("is listed twice" if key in seen else None)
        if problem:
            where = f" on {row.device}" if row.device else ""
            raise RtkError(f"{path}: row {row.name} ({row.target}{where}) {problem}; give the report.json of an "
                           "`rtk run`, unedited")
        seen.add(key)
    return report.model_dump(mode="json")


def latency_verdict(a: list[float], b: list[float], tolerance: float) -> tuple[float, tuple[float, float], str]:
    import statistics

    ratio = statistics.median(b) / statistics.median(a)
    lo, hi = min(b) / max(a), max(b) / min(a)
    if ratio > 1 + tolerance and lo > 1:
        return ratio, (lo, hi), "slower"
    if ratio < 1 / (1 + tolerance) and hi < 1:
        return ratio, (lo, hi), "faster"
    return ratio, (lo, hi), "no change"


def _key(row: dict) -> tuple:
    """Like with like: the same artifact (name, target) timed on the same device (None: the machine of the run)."""
    return row.get("device"), row["name"], row["target"]


def compare(a: Path, b: Path, *, tolerance: float = 0.2, max_drop: float = 0.5) -> Comparison:
    for flag, value in (("--tolerance", tolerance), ("--max-drop", max_drop)):
        if not 0 <= value <= 100:
            raise RtkError(f"{flag} {value}: give a number from 0 to 100")
    ra, rb = _load(a), _load(b)
    rows_a = {_key(r): r for r in ra["rows"]}
    changes = []
    for r in rb["rows"]:
        old = rows_a.get(_key(r))
        if old is None:
            continue
        ratio = interval = None
        latency = "not timed"
        if old.get("p50_repeats") and r.get("p50_repeats"):
            ratio, interval, latency = latency_verdict(old["p50_repeats"], r["p50_repeats"], tolerance)
        t_a, t_b = old.get("top1"), r.get("top1")
        change = None if t_a is None or t_b is None else t_b - t_a
        accuracy = "not measured" if change is None else ("lower" if change < -max_drop else "no change")
        changes.append(RowChange(device=r.get("device"), name=r["name"], target=r["target"],
                                 p50_a=(old.get("latency_ms") or {}).get("p50"),
                                 p50_b=(r.get("latency_ms") or {}).get("p50"), ratio=ratio, interval=interval,
                                 latency=latency, top1_a=t_a, top1_b=t_b, top1_change_pt=change, accuracy=accuracy))
    if not changes:
        raise RtkError(f"{a} and {b} share no artifact (device, name and target); compare runs of the same recipe "
                       "on the same devices")
    regressions = [f"{c.name} ({c.target}{f' on {c.device}' if c.device else ''})" for c in changes if c.regressed]
    notes = []
    if ra["validation_images"] != rb["validation_images"]:
        notes.append(f"top-1 was measured on {ra['validation_images']} images in {a} and {rb['validation_images']} "
                     f"in {b}: the accuracy changes compare different image sets")
    return Comparison(a=str(a), b=str(b), tolerance=tolerance, max_drop=max_drop, rows=changes,
                      regressions=regressions, passed=not regressions, notes=notes)
