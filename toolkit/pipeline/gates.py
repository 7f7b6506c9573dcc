"""The one gate implementation, for `rtk validate` and `rtk run`: every gate on every row it applies to.

A gate is a typed result whose truth is "passed"; all of them are evaluated and collected, and the caller
exits once (1) if any failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pydantic import BaseModel

from toolkit.settings import Gates


class Gate(BaseModel):
    name: str
    artifact: str
    limit: float
    value: float
    passed: bool

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return f"gate {self.name} {verdict} for {self.artifact}: {self.value:.3f} (limit {self.limit})"


@dataclass(frozen=True, kw_only=True)
class Scored:
    """What the gates read of one artifact; rows are in order, the deployed artifact last."""

    name: str
    target: str
    role: str | None = None          # "reference" rows are what the others are compared to: never gated
    top1: float | None = None
    drop_pt: float | None = None     # top-1 points below the reference
    agreement: float | None = None   # % of images with the reference's top-1 class
    p50_ms: float | None = None
    p99_ms: float | None = None
    speedup: float | None = None     # p50 speed-up against FP32 ONNX Runtime


def evaluate(gates: Gates, rows: Sequence[Scored]) -> list[Gate]:
    """Accuracy gates on every row compared with a reference; the p50 and p99 gates on the last timed row of their
    target; the speed-up gate on the last row (the deployed artifact)."""
    out: list[Gate] = []
    for r in (r for r in rows if r.role != "reference"):
        if r.drop_pt is not None:
            if gates.max_drop_pt is not None:
                out.append(Gate(name="max_drop_pt", artifact=r.name, limit=gates.max_drop_pt, value=r.drop_pt,
                                passed=r.drop_pt <= gates.max_drop_pt))
            ref_top1 = r.top1 + r.drop_pt if r.top1 is not None else None
            if gates.max_drop_rel_pct is not None and ref_top1:
                rel = 100.0 * r.drop_pt / ref_top1
                out.append(Gate(name="max_drop_rel_pct", artifact=r.name, limit=gates.max_drop_rel_pct, value=rel,
                                passed=rel <= gates.max_drop_rel_pct))
        if gates.min_agreement_pct is not None and r.agreement is not None:
            out.append(Gate(name="min_agreement_pct", artifact=r.name, limit=gates.min_agreement_pct,
                            value=r.agreement, passed=r.agreement >= gates.min_agreement_pct))
    for name, limits in (("max_p50_ms", gates.max_p50_ms), ("max_p99_ms", gates.max_p99_ms)):
        field = name.removeprefix("max_")
        for target, limit in limits.items():
            timed = [r for r in rows if r.target == target and getattr(r, field) is not None]
            if timed:
                value = getattr(timed[-1], field)
                out.append(Gate(name=name, artifact=timed[-1].name, limit=limit, value=value, passed=value <= limit))
    if gates.min_speedup is not None and rows and rows[-1].speedup is not None:
        r = rows[-1]
        out.append(Gate(name="min_speedup", artifact=r.name, limit=gates.min_speedup, value=r.speedup,
                        passed=r.speedup >= gates.min_speedup))
    return out
