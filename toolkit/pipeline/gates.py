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
    value: float | None            # None: the gate applied to nothing that was measured, so it fails (`missing`)
    passed: bool
    device: str | None = None      # the device the value was measured on; None: here

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        where = f" on {self.device}" if self.device else ""
        if self.value is None:
            return f"gate {self.name} FAILED: {self.artifact} (limit {self.limit})"
        return f"gate {self.name} {verdict} for {self.artifact}{where}: {self.value:.3f} (limit {self.limit})"


def missing(name: str, limit: float, why: str) -> Gate:
    """A gate the settings ask for that no row could be judged by: a CI gate that measured nothing must not pass."""
    return Gate(name=name, artifact=f"nothing measured it ({why})", limit=limit, value=None, passed=False)


@dataclass(frozen=True, kw_only=True)
class Scored:
    """What the gates read of one artifact; rows are in order, the deployed artifact last."""

    name: str
    target: str
    role: str | None = None          # "reference" rows are what the others are compared to: never gated
    device: str | None = None        # where it was timed (a recipe device's name); None: here
    accuracy_on: str | None = None   # where its top-1 was measured ("here" or a device): gated once per place
    top1: float | None = None
    drop_pt: float | None = None     # top-1 points below the reference
    agreement: float | None = None   # % of images with the reference's top-1 class
    p50_ms: float | None = None
    p99_ms: float | None = None
    speedup: float | None = None     # p50 speed-up against FP32 ONNX Runtime


def evaluate(gates: Gates, rows: Sequence[Scored]) -> list[Gate]:
    """Accuracy gates on every row compared with a reference (once per artifact and place it was measured on);
    the p50 and p99 gates on the last timed row of their target on each device (`nuc/openvino` keys: on that
    device only); the speed-up gate on each device's last row (the deployed artifact)."""
    out: list[Gate] = []
    seen: set[tuple] = set()
    for r in (r for r in rows if r.role != "reference"):
        if (r.name, r.accuracy_on or r.device) in seen:
            continue
        seen.add((r.name, r.accuracy_on or r.device))
        on = None if r.accuracy_on in (None, "here") else r.accuracy_on
        if r.drop_pt is not None:
            if gates.max_drop_pt is not None:
                out.append(Gate(name="max_drop_pt", artifact=r.name, limit=gates.max_drop_pt, value=r.drop_pt,
                                passed=r.drop_pt <= gates.max_drop_pt, device=on))
            ref_top1 = r.top1 + r.drop_pt if r.top1 is not None else None
            if gates.max_drop_rel_pct is not None and ref_top1:
                rel = 100.0 * r.drop_pt / ref_top1
                out.append(Gate(name="max_drop_rel_pct", artifact=r.name, limit=gates.max_drop_rel_pct, value=rel,
                                passed=rel <= gates.max_drop_rel_pct, device=on))
        if gates.min_agreement_pct is not None and r.agreement is not None:
            out.append(Gate(name="min_agreement_pct", artifact=r.name, limit=gates.min_agreement_pct,
                            value=r.agreement, passed=r.agreement >= gates.min_agreement_pct, device=on))
    places = list(dict.fromkeys(r.device for r in rows if r.role != "reference"))
    for name, limits in (("max_p50_ms", gates.max_p50_ms), ("max_p99_ms", gates.max_p99_ms)):
        field = name.removeprefix("max_")      # a device's own key (nuc/openvino) replaces the generic one there
        for key, limit in limits.items():
            device, _, target = key.rpartition("/")
            before = len(out)
            for place in ([device] if device else [p for p in places if f"{p}/{target}" not in limits]):
                timed = [r for r in rows if r.target == target and r.device == place and getattr(r, field) is not None]
                if timed:
                    value = getattr(timed[-1], field)
                    out.append(Gate(name=name, artifact=timed[-1].name, limit=limit, value=value, passed=value <= limit,
                                    device=timed[-1].device))
            if len(out) == before:
                out.append(missing(name, limit, f"no {target} artifact was timed{' on ' + device if device else ''}"))
    for place in places if gates.min_speedup is not None else []:
        last = [r for r in rows if r.device == place][-1]
        if last.speedup is not None:
            out.append(Gate(name="min_speedup", artifact=last.name, limit=gates.min_speedup, value=last.speedup,
                            passed=last.speedup >= gates.min_speedup, device=last.device))
    judged = {g.name for g in out}
    accuracy = "no validation images, or no FP32 reference to compare with"
    for name, limit, why in (("max_drop_pt", gates.max_drop_pt, accuracy), ("max_drop_rel_pct", gates.max_drop_rel_pct,
                             accuracy), ("min_agreement_pct", gates.min_agreement_pct, accuracy),
                             ("min_speedup", gates.min_speedup, "the deployed artifact or the FP32 ONNX Runtime "
                                                                "baseline was not timed")):
        if limit is not None and name not in judged:
            out.append(missing(name, limit, why))
    return out
