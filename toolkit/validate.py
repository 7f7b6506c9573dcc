"""Accuracy of artifacts on a labeled folder, their agreement with a reference, and the accuracy gate.

All artifacts (and the reference) see the same decoded batches in one pass over the data, so images are
decoded once however many artifacts are compared.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import numpy as np
from pydantic import BaseModel, Field

from toolkit.backends import read_meta
from toolkit.backends import RunnerOptions, open_runner
from toolkit.bench import interleaved_p50
from toolkit.images import check_classes, scan_folder
from toolkit.preprocess import batches
from toolkit.errors import RtkError
from toolkit.isa import capped, effective_tier, running_under
from toolkit.pipeline.gates import Gate, Scored, evaluate
from toolkit.progress import Progress, silent
from toolkit.remote import DeviceInfo
from toolkit.settings import Gates, ValidateSettings


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
    isa: str | None = Field(None, description="oneDNN ISA tier the runtime's CPU kernels ran on (toolkit.isa).")


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
    device: DeviceInfo | None = Field(None, description="The SSH device it ran on (`remote`), from its rtk doctor.")

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
                   options: RunnerOptions | None = None, progress: Progress = silent,
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
            progress("validating", done, len(data))
        facts = [{"target": r.target, "precision": r.meta.precision, "p50_ms": None, "classes": r.meta.class_names}
                 for r in runners]
        if measure_latency:
            inputs = [np.zeros((r.fixed_batch or 1, *pre.input_shape), np.float32) for r in runners]
            p50s = interleaved_p50([lambda r=r, x=x: r.infer(x) for r, x in zip(runners, inputs)], rounds=4, runs=5,
                                   warmup=3)
            for fact, p50 in zip(facts, p50s):
                fact["p50_ms"] = p50
    return np.concatenate(labels), [np.concatenate(o) for o in logits], facts, len(data.skipped), len(data)


def validate(artifacts: Sequence[str | Path], data: str | Path | None, *, reference: str | Path | None = None,
             targets: Sequence[str | None] | None = None, settings: ValidateSettings | None = None,
             gates: Gates | None = None, progress: Progress = silent,
             measure_latency: bool = True) -> ValidationReport:
    """Top-1/top-5 of each artifact, and drop, agreement and cosine against `reference` when given.

    `gates` (max_drop_pt, min_agreement_pct) make it a check: the report's `passed` is False when any artifact
    is outside them. `targets` runs an artifact on a runtime other than its default. `settings.isa` runs the
    whole check in a fresh process with oneDNN capped at that tier (`toolkit.isa.capped`). `settings.remote` runs
    it on that SSH device, on a copy of `data` or on `settings.remote_data` (toolkit.remote.commands).
    """
    settings = settings or ValidateSettings()
    gates = gates or Gates()
    if settings.remote:
        from toolkit.remote.commands import validate_on_device

        return validate_on_device(artifacts, data, reference=reference, targets=targets, settings=settings,
                                  gates=gates, say=progress)
    if data is None:
        raise RtkError("give the labeled images with --data FOLDER (class folders)")
    if settings.isa is not None and not running_under(settings.isa):
        return capped(settings.isa, validate)(artifacts, data, reference=reference, targets=targets,
                                              settings=settings, gates=gates, progress=progress,
                                              measure_latency=measure_latency)
    max_drop, min_agreement = gates.max_drop_pt, gates.min_agreement_pct
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
        all_paths, Path(data), targets=all_targets, batch_size=settings.batch_size,
        options=RunnerOptions(threads=settings.threads, max_batch=settings.batch_size), progress=progress,
        measure_latency=measure_latency)

    names = facts[0]["classes"]

    def score(path: Path, out: np.ndarray, fact: dict) -> ArtifactScore:
        hit = topk_correct(out, labels, 1)
        per_class = {names[c]: 100.0 * float(hit[labels == c].mean()) for c in np.unique(labels)}
        return ArtifactScore(artifact=str(path), target=fact["target"], precision=fact["precision"],
                             top1=100.0 * hit.mean(), top5=100.0 * topk_correct(out, labels, 5).mean(),
                             p50_ms=fact["p50_ms"], per_class_top1=per_class, isa=effective_tier(fact["target"]))

    ref = score(all_paths[0], logits[0], facts[0]) if reference else None
    scores = []
    offset = 1 if reference else 0
    for i, path in enumerate(paths):
        s = score(path, logits[i + offset], facts[i + offset])
        if ref is not None:
            s.drop_pt = ref.top1 - s.top1
            s.agreement = 100.0 * float(np.mean(logits[i + offset].argmax(1) == logits[0].argmax(1)))
            s.cosine = mean_cosine(logits[i + offset], logits[0])
        scores.append(s)
    results = evaluate(gates, [Scored(name=s.artifact, target=s.target, top1=s.top1, drop_pt=s.drop_pt,
                                      agreement=s.agreement) for s in scores])
    first = scores[0]
    return ValidationReport(data=str(data), images=images, skipped=skipped, top1=first.top1, top5=first.top5,
                            drop_pt=first.drop_pt, agreement=first.agreement, cosine=first.cosine, reference=ref,
                            artifacts=scores, gates=results, passed=all(results))
