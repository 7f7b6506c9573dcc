"""Accuracy of artifacts on a labeled folder, their agreement with a reference, and the accuracy gate.

All artifacts (and the reference) see the same decoded batches in one pass over the data, so images are
decoded once however many artifacts are compared.
"""

from __future__ import annotations

import contextlib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field

from toolkit.artifact import Preprocess
from toolkit.backends import read_meta
from toolkit.backends import RunnerOptions, open_runner
from toolkit.backends.base import finite, pad_rows
from toolkit.bench import interleaved_p50
from toolkit.preprocess import random_input, to_input
from toolkit.images import ImageSet, check_classes, scan_folder
from toolkit.errors import RtkError
from toolkit.isa import capped, effective_tier, running_under, saturation_risk
from toolkit.photos import Decode, DecodeBy, FastDecodeCheck, choose_decode, decode_record, labeled_batches
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
    executed_precision: str | None = Field(None, description="The precision the runtime computed in, read back from "
                                           "it (OpenVINO: compute layers by runtimePrecision).")
    saturation_risk: str | None = Field(None, description="An INT8 artifact quantized for a VNNI tier (full 8-bit "
                                        "weights) run on a tier without VNNI, where its first convolution can "
                                        "saturate, and how to build one for this tier.")
    bare_compile_differs: str | None = Field(None, description="How a bare OpenVINO compile_model of this artifact "
                                             "would differ from what rtk ran, and the setting that closes the gap.")
    decode: Decode = Field("exact", description="How the images were decoded: exact or fast (the JPEG DCT-scaled "
                           "path), as predict decodes them for this artifact.")
    decode_by: DecodeBy = Field("flag", description="Why that decode: flag (--fast-decode/--exact-decode), artifact "
                                "(every artifact records that the fast decode passed), default (exact), mixed (exact: "
                                "only some of the artifacts record it) or refused (exact: a record rtk does not trust).")
    decode_record: Literal["trusted", "refused"] | None = Field(None, description="This artifact's fast-decode record "
                                                                "(a deploy copy's): trusted, refused (damaged, edited, "
                                                                "failing rtk's rule or on other content), or null.")
    hits: list[bool] | None = Field(None, exclude=True, description="Top-1 right or wrong per image, in file order "
                                    "(for paired tests such as McNemar's; not written to JSON).")
    fast_decode: FastDecodeCheck | None = Field(None, description="With the fast decode: it against the exact decode "
                                                "on the same images, and whether it may be deployed.")


class ValidationReport(BaseModel):
    """Top-level fields describe the first artifact; `artifacts` holds the whole parity matrix."""

    data: str
    images: int
    skipped: int
    skipped_files: list[str] = Field(default_factory=list, description="The files of the data folder skipped "
                                     "(no image extension, or not a readable image), sorted.")
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


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine similarity of each row of `a` with the same row of `b`."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(axis=1)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return num / np.maximum(den, 1e-12)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(_cosines(a, b)))


def infer_padded(runner, x: np.ndarray) -> np.ndarray:
    fixed = runner.fixed_batch
    if fixed is None or len(x) == fixed:
        return runner.infer(x)
    outs = []
    for start in range(0, len(x), fixed):
        chunk = x[start:start + fixed]
        outs.append(runner.infer(pad_rows(chunk, fixed))[:len(chunk)])
    return np.concatenate(outs)


def _open_data(paths: Sequence[Path], data_dir: Path) -> tuple[list, Preprocess, ImageSet]:
    """The artifacts' metadata, their one preprocessing (done on the host or embedded in the artifact alike), and
    the labeled images checked against their classes."""
    metas = [read_meta(p) for p in paths]
    pre = metas[0].preprocess.on_host()
    for path, meta in zip(paths, metas):
        if meta.preprocess.on_host() != pre:
            raise RtkError(f"{path}: its preprocessing differs from {paths[0]}; compare artifacts of one model")
    data = scan_folder(data_dir)
    for path, meta in zip(paths, metas):
        check_classes(meta.class_names, data, what=str(path))
    return metas, pre, data


def _passes(runners: list, data: ImageSet, pre: Preprocess, batch_size: int, progress: Progress,
            decode: Decode = "exact") -> Iterator[tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]]:
    """(labels, logits of each runner, the same from the exact decode, which rows the fast decode scaled) per
    batch, the images decoded and cropped once for all runners, then made each runner's input (`to_input`: its
    own where it embeds the preprocessing; made once per distinct preprocessing). Only the rows the fast decode
    DCT-scaled are run again from their exact decode; elsewhere the two are the same input."""
    done = 0
    pixels = pre.model_copy(update={"embedded": True})
    for x, y, alt in labeled_batches(data.samples, pixels, decode=decode, batch_size=batch_size):
        rows = sorted(alt)
        scaled_x = np.stack([alt[i] for i in rows]) if rows else None
        made: dict[Preprocess, tuple[np.ndarray, np.ndarray | None]] = {}
        outs, exact = [], []
        for r in runners:
            p = r.meta.preprocess
            if p not in made:
                made[p] = (to_input(x, p), to_input(scaled_x, p) if rows else None)
            given, again = made[p]
            out = finite(infer_padded(r, given), r.path)
            ex = out.copy()
            if again is not None:
                ex[rows] = finite(infer_padded(r, again), r.path)
            outs.append(out)
            exact.append(ex)
        scaled = np.zeros(len(y), bool)
        scaled[rows] = True
        yield y, outs, exact, scaled
        done += len(y)
        progress("validating", done, len(data))


def runner_facts(runners: list, measure_latency: bool) -> list[dict]:
    facts = [{"target": r.target, "precision": r.meta.precision, "p50_ms": None, "classes": r.meta.class_names,
              "executed": r.executed_precision(), "bare": r.describe().get("bare_compile_differs"),
              "risk": saturation_risk(r.meta.extra, effective_tier(r.target))}
             for r in runners]
    if measure_latency:
        inputs = [random_input(r.meta.preprocess, r.fixed_batch or 1, np.random.default_rng(0)) for r in runners]
        p50s = interleaved_p50([lambda r=r, x=x: r.infer(x) for r, x in zip(runners, inputs)], rounds=4, runs=5,
                               warmup=3)
        for fact, p50 in zip(facts, p50s):
            fact["p50_ms"] = p50
    return facts


def collect_logits(paths: Sequence[Path], data_dir: Path, *, targets: Sequence[str | None], batch_size: int,
                   options: RunnerOptions | None = None, progress: Progress = silent,
                   measure_latency: bool = True) -> tuple[np.ndarray, list[np.ndarray], list[dict], int, int]:
    """Run every artifact over the data once (exact decode); returns labels, logits per artifact, runner facts,
    skipped, images."""
    metas, pre, data = _open_data(paths, data_dir)
    options = options or RunnerOptions(max_batch=batch_size)
    labels: list[np.ndarray] = []
    logits: list[list[np.ndarray]] = [[] for _ in paths]
    with open_runners(paths, metas, targets, options) as runners:
        for y, outs, _, _ in _passes(runners, data, pre, batch_size, progress):
            labels.append(y)
            for got, out in zip(logits, outs):
                got.append(out)
        facts = runner_facts(runners, measure_latency)
    return np.concatenate(labels), [np.concatenate(o) for o in logits], facts, len(data.skipped), len(data)


@dataclass(frozen=True)
class ImageScores:
    """What each artifact made of each image, in image order: every metric of the report is reduced from these,
    so shards validated apart and concatenated give exactly the numbers of one pass."""

    labels: np.ndarray      # (images,)
    top1: np.ndarray        # (artifacts, images) bool: the label is the top-1 class
    top5: np.ndarray        # (artifacts, images) bool: the label is among the top 5
    pred: np.ndarray        # (artifacts, images) the top-1 class
    cosine: np.ndarray      # (artifacts, images) cosine similarity with the first artifact's logits
    exact_top1: np.ndarray  # (artifacts, images) bool: top-1 hit from the exact decode
    exact_agree: np.ndarray  # (artifacts, images) bool: the decoded-as-deployed top-1 equals the exact decode's
    scaled: np.ndarray      # (images,) bool: the fast decode DCT-scaled this image

    FIELDS = ("top1", "top5", "pred", "cosine", "exact_top1", "exact_agree")

    @classmethod
    def of(cls, labels: np.ndarray, logits: Sequence[np.ndarray], exact: Sequence[np.ndarray],
           scaled: np.ndarray) -> "ImageScores":
        return cls(labels=labels, top1=np.stack([topk_correct(o, labels, 1) for o in logits]),
                   top5=np.stack([topk_correct(o, labels, 5) for o in logits]),
                   pred=np.stack([o.argmax(1) for o in logits]),
                   cosine=np.stack([_cosines(o, logits[0]) for o in logits]),
                   exact_top1=np.stack([topk_correct(e, labels, 1) for e in exact]),
                   exact_agree=np.stack([o.argmax(1) == e.argmax(1) for o, e in zip(logits, exact)]),
                   scaled=scaled)

    @classmethod
    def concat(cls, parts: Sequence["ImageScores"]) -> "ImageScores":
        return cls(labels=np.concatenate([p.labels for p in parts]),
                   scaled=np.concatenate([p.scaled for p in parts]),
                   **{f: np.concatenate([getattr(p, f) for p in parts], axis=1) for f in cls.FIELDS})


@contextlib.contextmanager
def open_runners(paths: Sequence[Path], metas: Sequence, targets: Sequence[str | None],
                 options: RunnerOptions) -> Iterator[list]:
    with ExitStack() as stack:
        yield [stack.enter_context(open_runner(p, t, meta=m, options=options))
               for p, t, m in zip(paths, targets, metas)]


def score_images(runners: list, data: ImageSet, *, pre: Preprocess, batch_size: int,
                 progress: Progress = silent, decode: Decode = "exact") -> ImageScores:
    """One pass of every runner over `data` (decoded the `decode` way, transformed by `pre`): per-image scores."""
    passes = _passes(runners, data, pre, batch_size, progress, decode)
    return ImageScores.concat([ImageScores.of(y, outs, exact, scaled) for y, outs, exact, scaled in passes])


def check_sharding(settings: ValidateSettings, *, sharded: bool = False) -> None:
    """Refuse --isa (the cap holds for this process and its children, not Ray workers) and --remote with sharded
    validation."""
    if settings.remote is not None and (sharded or settings.shards):
        raise RtkError("--remote validates on that device in one process; validate on a device or in shards on Ray "
                       "(--ray, --shards), not both")
    if settings.isa is not None and (sharded or settings.shards):
        raise RtkError("--isa caps the ISA of this process and its children, not of Ray workers; validate with "
                       "--isa or in shards (--ray, --shards), not both")


def fast_decode_gates(score: ArtifactScore) -> list[Gate]:
    """The rule that allows the fast decode, as gates: a failure makes `rtk validate` exit 1 and says to deploy
    with --exact-decode (checked only where the fast decode changed an image; elsewhere it is the exact one)."""
    c = score.fast_decode
    name = f"{score.artifact} (fast decode; if it fails, deploy with --exact-decode)"
    drop = c.exact_top1 - c.fast_top1
    return [Gate(name="fast_decode_drop_pt", artifact=name, limit=c.max_drop_pt, value=drop,
                 passed=drop <= c.max_drop_pt + 1e-9),
            Gate(name="fast_decode_agreement_pct", artifact=name, limit=c.min_agreement_pct, value=c.agreement,
                 passed=c.agreement >= c.min_agreement_pct)]


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
    check_sharding(settings)
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
    metas, _, images = _open_data(all_paths, Path(data))
    records = [decode_record(meta, path) for meta, path in zip(metas, all_paths)]   # each artifact read once
    decode, decode_by = choose_decode(settings.fast_decode, records[1 if reference else 0:])
    settings = settings.model_copy(update={"fast_decode": decode == "fast"})
    if settings.shards:
        from toolkit.validate_shards import score_sharded

        per_image, facts, _ = score_sharded(all_paths, all_targets, images, settings=settings, progress=progress)
    else:
        options = RunnerOptions(threads=settings.threads, max_batch=settings.batch_size)
        with open_runners(all_paths, metas, all_targets, options) as runners:
            per_image = score_images(runners, images, pre=metas[0].preprocess, batch_size=settings.batch_size,
                                     progress=progress, decode=decode)
            facts = runner_facts(runners, measure_latency)
    names, labels = facts[0]["classes"], per_image.labels

    def score(i: int) -> ArtifactScore:
        hit = per_image.top1[i]
        per_class = {names[c]: 100.0 * float(hit[labels == c].mean()) for c in np.unique(labels)}
        check = None
        if decode == "fast":        # judged where the fast decode changed the image (all of them if it changed none)
            on = per_image.scaled if per_image.scaled.any() else np.ones_like(per_image.scaled)
            check = FastDecodeCheck(images=len(labels), scaled=int(per_image.scaled.sum()),
                                    fast_top1=100.0 * hit[on].mean(), exact_top1=100.0 * per_image.exact_top1[i][on].mean(),
                                    agreement=100.0 * per_image.exact_agree[i][on].mean())
        return ArtifactScore(artifact=str(all_paths[i]), target=facts[i]["target"], precision=facts[i]["precision"],
                             top1=100.0 * hit.mean(), top5=100.0 * per_image.top5[i].mean(),
                             p50_ms=facts[i]["p50_ms"], per_class_top1=per_class,
                             isa=effective_tier(facts[i]["target"]), decode=decode, decode_by=decode_by,
                             decode_record=records[i], fast_decode=check,
                             executed_precision=facts[i]["executed"], hits=hit.tolist(),
                             bare_compile_differs=facts[i]["bare"], saturation_risk=facts[i]["risk"])

    ref = score(0) if reference else None
    scores = []
    for i in range(1 if reference else 0, len(all_paths)):
        s = score(i)
        if ref is not None:
            s.drop_pt = ref.top1 - s.top1
            s.agreement = 100.0 * float(np.mean(per_image.pred[i] == per_image.pred[0]))
            s.cosine = float(np.mean(per_image.cosine[i]))
        scores.append(s)
    results = evaluate(gates, [Scored(name=s.artifact, target=s.target, top1=s.top1, drop_pt=s.drop_pt,
                                      agreement=s.agreement) for s in scores])
    results += [gate for s in scores if s.fast_decode and s.fast_decode.scaled for gate in fast_decode_gates(s)]
    first = scores[0]
    return ValidationReport(data=str(data), images=len(images), skipped=len(images.skipped),
                            skipped_files=list(images.skipped), top1=first.top1,
                            top5=first.top5, drop_pt=first.drop_pt, agreement=first.agreement, cosine=first.cosine,
                            reference=ref, artifacts=scores, gates=results, passed=all(results))
