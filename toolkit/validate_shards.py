"""Sharded validation: the image list split into shards that Ray workers validate apart, merged exactly.

A shard is a list of (image file, class index) pairs plus the artifacts, so it works whatever decodes the images.
Shard boundaries fall on multiples of the batch size: every batch holds the images one pass would put in it, the
runtimes compute the same logits for it, and the per-image scores (validate.ImageScores) of the shards,
concatenated in order, are those of one pass. Top-1, top-5, agreement, cosine and per-class accuracy are then
reduced from them by the same code as in one process: identical, not close.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from toolkit.backends import RunnerOptions, read_meta
from toolkit.images import ImageSet
from toolkit.progress import Progress, silent
from toolkit.settings import ValidateSettings
from toolkit.validate import ImageScores, runner_facts, open_runners, score_images

SHARD_MEMORY_GB = 1.5


@dataclass(frozen=True)
class ShardJob:
    root: str
    classes: list[str]
    samples: list[tuple[str, int]]
    artifacts: list[str]
    targets: list[str | None]
    batch_size: int
    threads: int
    decode: str = "exact"


@dataclass(frozen=True)
class ShardResult:
    scores: ImageScores
    facts: list[dict]
    started: float      # time.time() when the worker began
    open_s: float       # reading the artifacts and opening their runtimes (the fixed cost of a shard)
    seconds: float      # the whole task


def shard_ranges(images: int, shards: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) of each shard: whole batches, as even as they go (never an empty shard)."""
    batches = -(-images // batch_size)
    shards = max(1, min(shards, batches))
    ranges, start = [], 0
    for i in range(shards):
        count = batches // shards + (1 if i < batches % shards else 0)
        stop = min(images, start + count * batch_size)
        ranges.append((start, stop))
        start = stop
    return ranges


def score_shard(job: ShardJob) -> ShardResult:
    """Validate one shard (on a Ray worker)."""
    started, t0 = time.time(), time.perf_counter()
    paths = [Path(p) for p in job.artifacts]
    metas = [read_meta(p) for p in paths]
    data = ImageSet(root=Path(job.root), classes=job.classes, samples=job.samples)
    options = RunnerOptions(threads=job.threads, max_batch=job.batch_size)
    with open_runners(paths, metas, job.targets, options) as runners:
        open_s = time.perf_counter() - t0
        scores = score_images(runners, data, pre=metas[0].preprocess, batch_size=job.batch_size,
                              decode=job.decode)
        facts = runner_facts(runners, measure_latency=False)
    return ShardResult(scores=scores, facts=facts, started=started, open_s=open_s, seconds=time.perf_counter() - t0)


def score_sharded(paths: Sequence[Path], targets: Sequence[str | None], images: ImageSet, *,
                  settings: ValidateSettings,
                  progress: Progress = silent) -> tuple[ImageScores, list[dict], list[ShardResult]]:
    """The per-image scores of every artifact over `images`, validated in `settings.shards` Ray tasks of
    `settings.threads` (default 1) threads each; also the runner facts and each shard's result."""
    from toolkit.distributed import map_tasks

    threads = settings.threads or 1
    samples = images.samples
    jobs = [ShardJob(root=str(images.root), classes=images.classes, samples=list(samples[a:b]),
                     artifacts=[str(p) for p in paths], targets=list(targets), batch_size=settings.batch_size,
                     threads=threads, decode="fast" if settings.fast_decode else "exact")
            for a, b in shard_ranges(len(samples), settings.shards, settings.batch_size)]
    done = [0]

    def finished(result: ShardResult) -> None:
        done[0] += len(result.scores.labels)
        progress("validating (sharded)", done[0], len(samples))

    results = map_tasks(score_shard, jobs, cpus=threads, memory_gb=SHARD_MEMORY_GB, on_done=finished,
                        what="sharded validation (validate.shards, --ray)")
    return ImageScores.concat([r.scores for r in results]), results[0].facts, results
