"""Photos in, top-K class names with probabilities out: decode, preprocess and infer as one overlapped pipeline.

Files and folders (every image file under a folder, in sorted path order) go through `toolkit.photos`: decoding
on a thread pool ahead of inference, output in input order, bounded memory. That run gives the labels and the
throughput (images/s over its wall time). Its phases contend for the same cores, so a phase timed inside it is
not what a photo costs: the latency (decode, preprocess, inference, total) is timed apart, one photo (one batch)
after another, as a sequential script would (`one_by_one`).
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from toolkit.backends import RunnerOptions, open_runner
from toolkit.backends.base import finite, pad_rows
from toolkit.bench import Latency
from toolkit.errors import RtkError
from toolkit.images import readable_image, symlink_loop
from toolkit.photos import (Decode, DecodeBy, InFlight, choose_decode, decode_one, decode_record, decoded_batches,
                            inferred_batches)
from toolkit.remote import DeviceInfo
from toolkit.settings import MAX_DEPTH, PredictSettings

LATENCY_IMAGES = 32   # `rtk predict` times this many photos again one after another for the latency (bench: all)


class Guess(BaseModel):
    label: str
    index: int
    probability: float


class Prediction(BaseModel):
    image: str
    top: list[Guess]
    device: DeviceInfo | None = Field(None, description="The SSH device it ran on (`remote`), from its rtk doctor.")


class PhaseReport(BaseModel):
    """Where a photo's time goes (timed one batch after another) and the overlapped run's throughput."""

    images: int
    decode: Decode
    decode_by: DecodeBy = Field("flag", description="Why that decode: flag (--fast-decode/--exact-decode), artifact "
                                "(its metadata records that the fast decode passed validation), default (exact) or "
                                "refused (exact: its record is damaged or fails rtk's rule).")
    scaled: int = Field(description="Images the fast decode decoded at a reduced DCT scale.")
    batch_size: int
    workers: int = Field(description="Threads of the overlapped run.")
    threads_infer: bool = Field(False, description="Each thread also ran its batch's inference, on an OpenVINO "
                                "request of its own (parallel requests); else decoding threads fed one that infers.")
    depth: int
    peak_in_flight: int = Field(description="Most images decoded ahead and not yet inferred at once.")
    latency_images: int = Field(description="Images whose phases were timed one after another (not overlapped), in "
                                            "whole batches.")
    decode_ms: Latency = Field(description="Per image, timed one after another.")
    preprocess_ms: Latency = Field(description="Per image, timed one after another.")
    infer_ms: Latency = Field(description="Per batch: one inference call on `batch_size` images.")
    total_ms: Latency = Field(description="Per batch, what a photo in it waits run one after another: decode + "
                                          "preprocess of the batch's images, then its inference (batch latency).")
    wall_s: float = Field(description="Wall time of the overlapped run over all the images.")
    images_per_s: float = Field(description="Throughput: images over the wall time of the overlapped run.")
    target: str
    runtime: dict[str, object] = Field(default_factory=dict)
    skipped: list[str] = Field(default_factory=list, description="Files in the given folders that are not readable "
                                                                 "images, left out.")


class PredictReport(BaseModel):
    """`rtk predict --json`: the guesses per photo, in input order, and where the time went (with the skipped files)."""

    predictions: list[Prediction]
    phases: PhaseReport | None = None       # None on a device (--remote): its rtk timed nothing here


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
               skippable: set[str] | None = None, latency_images: int | None = None
               ) -> tuple[np.ndarray, list[str], PhaseReport]:
    """Logits of every photo in input order through the overlapped pipeline, the photos they belong to, and the
    phase report: the overlapped run's throughput, and the latency of the first `latency_images` photos (default
    all) timed again one after another. Photos of `skippable` (found in folders) that fail to decode are left
    out, named in the report."""
    pre = runner.meta.preprocess
    decode, decode_by = choose_decode(settings.fast_decode, map(decode_record, [runner.meta], [runner.path]))
    counter = counter or InFlight()
    batch_size = photo_batch(runner, settings)
    done_paths: list[list[str]] = []
    logits: dict[int, np.ndarray] = {}
    scaled = 0

    def done(n: int, size: int, out: np.ndarray) -> None:
        logits[n] = out[:size]
        counter.release(size)

    start = time.perf_counter()
    failed: list[str] = []
    if not runner.fixed_batch:          # a dynamic batch never runs larger than the photos there are
        batch_size = min(batch_size, max(1, len(paths)))
    threads, in_threads = photo_threads(runner, settings, batch_size)
    pool = runner.request_pool(threads) if in_threads else None
    held = threads if pool is not None else runner.parallel_requests + 1    # batches held at once, by default
    depth = settings.depth or min(MAX_DEPTH, max(8, held * batch_size))
    if pool is not None:        # each thread decodes its batch and infers it on a request of its own
        def infer(x: np.ndarray) -> np.ndarray:
            return pool(pad_rows(x, runner.fixed_batch))[:len(x)]

        for names, out, count in inferred_batches(paths, pre, infer, decode=decode, batch_size=batch_size,
                                                  threads=threads, counter=counter, skippable=skippable,
                                                  skipped=failed):
            if names:
                logits[len(done_paths)] = out
                done_paths.append(names)
                scaled += count
    else:                       # decoding threads feed this one, which infers (asynchronously where it can)
        for batch in decoded_batches(paths, pre, decode=decode, batch_size=batch_size, workers=threads,
                                     depth=depth, counter=counter, skippable=skippable, skipped=failed):
            n, x = len(done_paths), np.stack([d.x for d in batch])
            done_paths.append([d.path for d in batch])
            scaled += sum(d.scaled for d in batch)
            runner.infer_async(pad_rows(x, runner.fixed_batch),    # a static batch's last, short one is padded
                               lambda out, ms, n=n, size=len(batch): done(n, size, out))
        runner.wait_async()
    wall = time.perf_counter() - start
    if not done_paths:
        raise RtkError(f"no image could be decoded{f' (e.g. {min(failed)})' if failed else ''}; remove or replace "
                       "the files, or give readable images")
    names = [p for batch in done_paths for p in batch]
    if not runner.fixed_batch:          # a dynamic batch never ran larger than the photos there are
        batch_size = min(batch_size, len(names))
    timed = one_by_one(latency_photos(names, latency_images, batch_size), runner, decode=decode,
                       batch_size=batch_size)
    report = PhaseReport(
        images=len(names), decode=decode, decode_by=decode_by, scaled=scaled, batch_size=batch_size,
        workers=threads, threads_infer=pool is not None, depth=depth, peak_in_flight=counter.peak,
        latency_images=len(timed["decode"]),
        **{f"{k}_ms": Latency.from_ms(v) for k, v in timed.items()}, wall_s=wall,
        images_per_s=len(names) / wall if wall > 0 else 0.0, target=runner.target, runtime=runner.describe(),
        skipped=sorted(failed))
    return finite(np.concatenate([logits[n] for n in range(len(done_paths))]), runner.path), names, report


def latency_photos(names: list[str], wanted: int | None, batch_size: int) -> list[str]:
    """The photos to time one after another: the first `wanted` (all for None), at least one batch, cut to whole
    batches (a short last batch is another batch size's latency), except the one padded batch of a static-batch
    artifact given fewer photos than its batch."""
    take = len(names) if wanted is None else min(len(names), max(wanted, batch_size))
    return names[:take // batch_size * batch_size or take]


def photo_threads(runner, settings: PredictSettings, batch_size: int) -> tuple[int, bool]:
    """The pipeline's threads and whether each runs its own batch's inference: so where the runtime has parallel
    requests (OpenVINO THROUGHPUT), --workers or by default one more than requests (one thread decodes while the
    others' requests run), as many as --depth holds batches for, and at least 2; else (and where --depth holds
    only one batch) --workers or 2 threads decoding ahead of the caller's inference. Without --depth, the depth
    is a batch for each batch held at once (run_photos), so `--batch-size 8` alone keeps every request busy."""
    if runner.parallel_requests > 1:
        threads = min(settings.workers or runner.parallel_requests + 1, (settings.depth or MAX_DEPTH) // batch_size)
        if threads > 1:
            return threads, True
    return settings.workers or 2, False


def photo_hint(settings: PredictSettings, photos: int, fixed_batch: int | None = None) -> str:
    """The OpenVINO hint for `photos`: --hint, or by default THROUGHPUT where there is more than one batch (a
    folder is a throughput job) and LATENCY for one batch (--batch-size, or a static-batch artifact's own)."""
    if settings.hint != "auto":
        return settings.hint
    return "throughput" if photos > (fixed_batch or settings.batch_size) else "latency"


def photo_batch(runner, settings: PredictSettings) -> int:
    """Images per inference call: the asked batch, or a static-batch artifact's own (the default 1 becomes it)."""
    size = runner.batch_for(settings.batch_size, "--batch-size")
    if settings.depth is not None and settings.depth < size:
        raise RtkError(f"--depth {settings.depth} holds less than the static batch of {runner.path} ({size}); give "
                       f"--depth {size} or more")
    return size


def one_by_one(paths: Sequence[str], runner, *, decode: Decode, batch_size: int) -> dict[str, list[float]]:
    """Milliseconds per phase with nothing overlapped: each photo of a batch decoded and preprocessed in turn,
    then the batch inferred. decode and preprocess are per image; infer and total (decode + preprocess of the
    batch's photos + its inference: what a photo in that batch waits) per batch."""
    from toolkit.validate import infer_padded

    out: dict[str, list[float]] = {"decode": [], "preprocess": [], "infer": [], "total": []}
    for start in range(0, len(paths), batch_size):
        got = [decode_one(i, p, runner.meta.preprocess, decode) for i, p in enumerate(paths[start:start + batch_size])]
        x = np.stack([d.x for d in got])
        t0 = time.perf_counter()
        infer_padded(runner, x)
        infer_ms = (time.perf_counter() - t0) * 1e3
        out["decode"] += [d.decode_ms for d in got]
        out["preprocess"] += [d.preprocess_ms for d in got]
        out["infer"].append(infer_ms)
        out["total"].append(sum(d.decode_ms + d.preprocess_ms for d in got) + infer_ms)
    return out


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
    with ExitStack() as stack:
        runner = stack.enter_context(open_runner(model, target, options=options or RunnerOptions(
            max_batch=s.batch_size, hint=photo_hint(s, len(paths)))))
        hint = photo_hint(s, len(paths), runner.fixed_batch)
        if options is None and hint != runner.options.hint:
            stack.close()           # a static batch holds every photo: one batch, a latency job after all
            runner = stack.enter_context(open_runner(model, target, options=replace(runner.options, hint=hint)))
        logits, names, report = run_photos(paths, runner, settings=s, skippable={str(p) for p in paths} - named,
                                           latency_images=LATENCY_IMAGES)
        meta = runner.meta
    report.skipped = sorted(skipped + report.skipped)
    probs = softmax(logits.astype(np.float64))
    k = min(s.top, probs.shape[1])
    results = []
    for name, p in zip(names, probs):
        order = np.argsort(-p)[:k]
        results.append(Prediction(
            image=name, top=[Guess(label=meta.class_names[i], index=int(i), probability=float(p[i])) for i in order]))
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
