"""Accuracy of artifacts on a labeled folder, their agreement with a reference, and the accuracy gate.

All artifacts (and the reference) see the same decoded batches in one pass over the data, so images are
decoded once however many artifacts are compared.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from toolkit.artifact import read_meta
from toolkit.backends import RunnerOptions, open_runner
from toolkit.bench import Latency, time_calls
from toolkit.images import check_classes, scan_folder
from toolkit.preprocess import batches
from toolkit.errors import RtkError


class ArtifactScore(BaseModel):
    artifact: str
    target: str
    precision: str
    top1: float
    top5: float
    drop_pt: float | None = None
    agreement: float | None = None
    cosine: float | None = None
    p50_ms: float | None = None
    per_class_top1: dict[str, float] = Field(default_factory=dict)


class Gate(BaseModel):
    name: str
    artifact: str
    limit: float
    value: float
    passed: bool

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return f"gate {self.name} {verdict} for {self.artifact}: {self.value:.3f} (limit {self.limit})"


class ValidationReport(BaseModel):
    """Top-level fields describe the first artifact; `artifacts` holds the whole parity matrix."""

    data: str
    images: int
    skipped: int
    top1: float
    top5: float
    drop_pt: float | None
    agreement: float | None
    cosine: float | None
    reference: ArtifactScore | None
    artifacts: list[ArtifactScore]
    gates: list[Gate] = Field(default_factory=list)
    passed: bool = True

    def __bool__(self) -> bool:
        return self.passed


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(axis=1)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def _infer_padded(runner, x: np.ndarray) -> np.ndarray:
    fixed = runner.fixed_batch
    if fixed is None or len(x) == fixed:
        return runner.infer(x)
    outs = []
    for start in range(0, len(x), fixed):
        chunk = x[start:start + fixed]
        pad = fixed - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        outs.append(runner.infer(chunk)[:fixed - pad])
    return np.concatenate(outs)


def collect_logits(paths: Sequence[Path], data_dir: Path, *, targets: Sequence[str | None], batch_size: int,
                   options: RunnerOptions | None = None, progress: Callable[[int, int], None] | None = None,
                   measure_latency: bool = True) -> tuple[np.ndarray, list[np.ndarray], list[dict], int, int]:
    """Run every artifact over the data once; returns labels, logits per artifact, runner facts, skipped, p50s."""
    metas = [read_meta(p) for p in paths]
    pre = metas[0].preprocess
    for path, meta in zip(paths, metas):
        if meta.preprocess != pre:
            raise RtkError(f"{path}: its preprocessing differs from {paths[0]}; compare artifacts of one model")
    data = scan_folder(data_dir)
    for path, meta in zip(paths, metas):
        check_classes(meta.class_names, data, what=str(path))
    options = options or RunnerOptions(max_batch=batch_size)
    labels: list[np.ndarray] = []
    logits: list[list[np.ndarray]] = [[] for _ in paths]
    with ExitStack() as stack:
        runners = [stack.enter_context(open_runner(p, t, meta=m, options=options))
                   for p, t, m in zip(paths, targets, metas)]
        done = 0
        for x, y in batches(data, pre, batch_size):
            labels.append(y)
            for out, runner in zip(logits, runners):
                out.append(_infer_padded(runner, x))
            done += len(y)
            if progress:
                progress(done, len(data))
        facts = [{"target": r.target, "precision": r.meta.precision, "p50_ms": None, "classes": r.meta.class_names}
                 for r in runners]
        if measure_latency:
            for fact, runner in zip(facts, runners):
                x1 = np.zeros((runner.fixed_batch or 1, *pre.input_shape), np.float32)
                fact["p50_ms"] = Latency.from_ms(time_calls(lambda: runner.infer(x1), warmup=3, runs=20)).p50
    return np.concatenate(labels), [np.concatenate(o) for o in logits], facts, len(data.skipped), len(data)


def validate(artifacts: Sequence[str | Path], data: str | Path, *, reference: str | Path | None = None,
             targets: Sequence[str | None] | None = None, max_drop: float | None = None,
             min_agreement: float | None = None, batch_size: int = 32, options: RunnerOptions | None = None,
             progress: Callable[[int, int], None] | None = None, measure_latency: bool = True) -> ValidationReport:
    """Top-1/top-5 of each artifact, and drop, agreement and cosine against `reference` when given.

    `max_drop` (points of top-1) and `min_agreement` (percent) are gates: the report's `passed` is False
    when any artifact is outside them. `targets` runs an artifact on a runtime other than its default.
    """
    if not artifacts:
        raise RtkError("give at least one artifact to validate")
    if (max_drop is not None or min_agreement is not None) and reference is None:
        raise RtkError("--max-drop and --min-agreement compare against a reference; add --reference MODEL")
    paths = [Path(a) for a in artifacts]
    targets = list(targets) if targets else [None] * len(paths)
    if len(targets) != len(paths):
        raise RtkError(f"{len(targets)} targets for {len(paths)} artifacts; give one --target or one per artifact")
    all_paths = ([Path(reference)] if reference else []) + paths
    all_targets = ([None] if reference else []) + targets
    labels, logits, facts, skipped, images = collect_logits(
        all_paths, Path(data), targets=all_targets, batch_size=batch_size, options=options, progress=progress,
        measure_latency=measure_latency)

    names = facts[0]["classes"]

    def score(path: Path, out: np.ndarray, fact: dict) -> ArtifactScore:
        hit = topk_correct(out, labels, 1)
        per_class = {names[c]: 100.0 * float(hit[labels == c].mean()) for c in np.unique(labels)}
        return ArtifactScore(artifact=str(path), target=fact["target"], precision=fact["precision"],
                             top1=100.0 * hit.mean(), top5=100.0 * topk_correct(out, labels, 5).mean(),
                             p50_ms=fact["p50_ms"], per_class_top1=per_class)

    ref = score(all_paths[0], logits[0], facts[0]) if reference else None
    scores = []
    gates: list[Gate] = []
    offset = 1 if reference else 0
    for i, path in enumerate(paths):
        s = score(path, logits[i + offset], facts[i + offset])
        if ref is not None:
            s.drop_pt = ref.top1 - s.top1
            s.agreement = 100.0 * float(np.mean(logits[i + offset].argmax(1) == logits[0].argmax(1)))
            s.cosine = mean_cosine(logits[i + offset], logits[0])
            if max_drop is not None:
                gates.append(Gate(name="max_drop_pt", artifact=str(path), limit=max_drop, value=s.drop_pt,
                                  passed=s.drop_pt <= max_drop))
            if min_agreement is not None:
                gates.append(Gate(name="min_agreement_pct", artifact=str(path), limit=min_agreement,
                                  value=s.agreement, passed=s.agreement >= min_agreement))
        scores.append(s)
    first = scores[0]
    return ValidationReport(data=str(data), images=images, skipped=skipped, top1=first.top1, top5=first.top5,
                            drop_pt=first.drop_pt, agreement=first.agreement, cosine=first.cosine, reference=ref,
                            artifacts=scores, gates=gates, passed=all(g.passed for g in gates))
