"""Photos in, top-K class names with probabilities out: decode, preprocess and infer as one overlapped pipeline.

Files and folders (every image file under a folder, in sorted path order) go through `toolkit.photos`: decoding
on a thread pool ahead of inference, output in input order, bounded memory. Each phase is timed per image
(decode and preprocess in their worker, inference per batch shared by its images), so `rtk predict` and
`rtk bench --images` can say where a photo's time goes.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from toolkit.backends import RunnerOptions, open_runner
from toolkit.backends.base import finite
from toolkit.bench import Latency
from toolkit.errors import RtkError
from toolkit.images import readable_image, symlink_loop
from toolkit.photos import Decode, InFlight, decoded_batches
from toolkit.remote import DeviceInfo
from toolkit.settings import PredictSettings


class Guess(BaseModel):
    label: str
    index: int
    probability: float


class Prediction(BaseModel):
    image: str
    top: list[Guess]
    decode_ms: float | None = None
    preprocess_ms: float | None = None
    infer_ms: float | None = Field(None, description="The batch's inference time divided by its images.")
    device: DeviceInfo | None = Field(None, description="The SSH device it ran on (`remote`), from its rtk doctor.")


class PhaseReport(BaseModel):
    """Where the time of a run over photos went: per-image phases, and the run as a whole."""

    images: int
    decode: Decode
    scaled: int = Field(description="Images the fast decode decoded at a reduced DCT scale.")
    batch_size: int
    workers: int
    depth: int
    peak_in_flight: int = Field(description="Most images decoded ahead and not yet inferred at once.")
    decode_ms: Latency
    preprocess_ms: Latency
    infer_ms: Latency
    total_ms: Latency = Field(description="Per image, decode + preprocess + inference, each timed inside the "
                                          "overlapped run (so with the contention of the others on the same cores); "
                                          "with a batch, inference is the batch's time divided by its images.")
    wall_s: float
    images_per_s: float = Field(description="Images over the wall time of the whole overlapped run.")
    target: str
    runtime: dict[str, object] = Field(default_factory=dict)
    skipped: list[str] = Field(default_factory=list, description="Files in the given folders that are not readable "
                                                                 "images, left out.")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def image_paths(inputs: Sequence[str | Path], skipped: list[str] | None = None) -> list[Path]:
    """Files as given (a bad one is an error); a folder expands to the readable images under it, in sorted path
    order, and the files there that are not (FIFOs, broken or non-image files) are skipped into `skipped`."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            loop = symlink_loop(item)
            if loop:
                raise RtkError(f"{loop} is a symlink back to a folder that contains it (a loop); remove the link")
            found, bad = [], []
            for path in sorted(os.path.join(d, f) for d, _, files in os.walk(item, followlinks=True) for f in files
                               if not f.startswith(".")):
                (found if readable_image(path) else bad).append(path)
            if not found:
                raise RtkError(f"{item}: no readable image files in this folder; give image files or a folder of them")
            out.extend(map(Path, found))
            if skipped is not None:
                skipped.extend(bad)
        else:
            out.append(item)
    return out


def run_photos(paths: Sequence[Path], runner, *, settings: PredictSettings, counter: InFlight | None = None,
               skippable: set[str] | None = None) -> tuple[np.ndarray, list, PhaseReport]:
    """Logits of every photo in input order through the overlapped pipeline, the per-image records and the
    phase report; photos of `skippable` (found in folders) that fail to decode are left out, named in the report."""
    from toolkit.validate import infer_padded

    pre = runner.meta.preprocess
    decode: Decode = "exact" if settings.exact_decode else "fast"
    counter = counter or InFlight()
    batches: list[list] = []
    logits: dict[int, np.ndarray] = {}
    infer_ms: dict[int, float] = {}
    overlapped = runner.fixed_batch is None or runner.fixed_batch == settings.batch_size

    def done(n: int, size: int, out: np.ndarray, ms: float) -> None:
        logits[n], infer_ms[n] = out[:size], ms / size
        counter.release(size)

    start = time.perf_counter()
    failed: list[str] = []
    for batch in decoded_batches(paths, pre, decode=decode, batch_size=settings.batch_size, workers=settings.workers,
                                 depth=settings.depth, counter=counter, skippable=skippable, skipped=failed):
        n, x = len(batches), np.stack([d.x for d in batch])
        batches.append([replace(d, x=None) for d in batch])   # keep the timings, let the pixels go
        if overlapped:
            if runner.fixed_batch and len(x) < runner.fixed_batch:        # the last, short batch of a static one
                x = np.concatenate([x, np.zeros((runner.fixed_batch - len(x), *x.shape[1:]), x.dtype)])
            runner.infer_async(x, lambda out, ms, n=n, size=len(batch): done(n, size, out, ms))
        else:
            t0 = time.perf_counter()
            done(n, len(batch), infer_padded(runner, x), (time.perf_counter() - t0) * 1e3)
    runner.wait_async()
    wall = time.perf_counter() - start
    if not batches:
        raise RtkError(f"none of the {len(paths)} images could be decoded; remove or replace them")
    records = [d for batch in batches for d in batch]
    per_image = [infer_ms[n] for n, batch in enumerate(batches) for _ in batch]
    dec = [r.decode_ms for r in records]
    prep = [r.preprocess_ms for r in records]
    report = PhaseReport(
        images=len(records), decode=decode, scaled=sum(r.scaled for r in records), batch_size=settings.batch_size,
        workers=settings.workers, depth=settings.depth, peak_in_flight=counter.peak,
        decode_ms=Latency.from_ms(dec), preprocess_ms=Latency.from_ms(prep), infer_ms=Latency.from_ms(per_image),
        total_ms=Latency.from_ms(np.add(np.add(dec, prep), per_image)), wall_s=wall,
        images_per_s=len(records) / wall if wall > 0 else 0.0, target=runner.target, runtime=runner.describe(),
        skipped=failed)
    return (finite(np.concatenate([logits[n] for n in range(len(batches))]), runner.path),
            list(zip(records, per_image)), report)


def classify(inputs: Sequence[str | Path], model: str | Path, *, target: str | None = None,
             settings: PredictSettings | None = None,
             options: RunnerOptions | None = None) -> tuple[list[Prediction], PhaseReport]:
    """The top-K guesses for every image of `inputs` (files and folders), and where the time went."""
    s = settings or PredictSettings()
    if not inputs:
        raise RtkError("give at least one image")
    skipped: list[str] = []
    paths = image_paths(inputs, skipped)
    named = {str(Path(p)) for p in inputs if not Path(p).is_dir()}
    options = options or RunnerOptions(max_batch=s.batch_size)
    with open_runner(model, target, options=options) as runner:
        logits, records, report = run_photos(paths, runner, settings=s,
                                             skippable={str(p) for p in paths} - named)
        meta = runner.meta
    report.skipped = sorted(skipped + report.skipped)
    probs = softmax(logits.astype(np.float64))
    k = min(s.top, probs.shape[1])
    results = []
    for (rec, infer_ms), p in zip(records, probs):
        order = np.argsort(-p)[:k]
        results.append(Prediction(
            image=rec.path, top=[Guess(label=meta.class_names[i], index=int(i), probability=float(p[i])) for i in order],
            decode_ms=round(rec.decode_ms, 3), preprocess_ms=round(rec.preprocess_ms, 3), infer_ms=round(infer_ms, 3)))
    return results, report


def predict(images: Sequence[str | Path], model: str | Path, *, target: str | None = None,
            settings: PredictSettings | None = None, options: RunnerOptions | None = None,
            say: Callable[[str], None] | None = None) -> list[Prediction]:
    """The top classes of each image (`classify` also gives the times); on the SSH device `settings.remote` names
    when it is set."""
    settings = settings or PredictSettings()
    if not images:
        raise RtkError("give at least one image")
    if settings.remote:
        from toolkit.remote.commands import predict_on_device

        return predict_on_device(images, model, target=target, settings=settings, say=say)
    return classify(images, model, target=target, settings=settings, options=options)[0]
