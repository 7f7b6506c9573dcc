"""The latency-targeted ratio search of `rtk prune --target-latency-ms`: bisect the channel ratio, timing each
candidate on the runtime it will be deployed to (through that runtime's runner), for the least pruning that meets
the target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel
from torch import nn

from toolkit.artifact import ModelMeta
from toolkit.channels import channel_config
from toolkit.errors import RtkError
from toolkit.models import save_checkpoint
from toolkit.progress import Progress
from toolkit.settings import ExportSettings, PruneSettings


class SearchStep(BaseModel):
    ratio: float
    latency_ms: float
    meets: bool


def latencies(models: list[tuple[nn.Module, ModelMeta]], target: str, tmp: Path, threads: int | None,
              rounds: int = 6, runs: int = 5) -> list[float]:
    """Median batch-1 latency (ms) of each model on `target`, through the runtime's runner.

    Calls alternate between the models in short rounds, so load from other processes hits them alike.
    """
    from contextlib import ExitStack

    from toolkit.backends import RunnerOptions, open_runner
    from toolkit.bench import interleaved_p50

    paths = [probe(model, meta, target, tmp / f"probe{i}") for i, (model, meta) in enumerate(models)]
    x = np.random.default_rng(0).standard_normal((1, *models[0][1].preprocess.input_shape)).astype(np.float32)
    with ExitStack() as stack:
        runners = [stack.enter_context(open_runner(path, target, meta=meta, options=RunnerOptions(
            threads=threads, max_batch=1))) for path, (_, meta) in zip(paths, models)]
        return interleaved_p50([lambda r=r: r.infer(x) for r in runners], rounds=rounds, runs=runs)


def probe(model: nn.Module, meta: ModelMeta, target: str, stem: Path) -> Path:
    """`model` as the artifact `target` runs: an rtk checkpoint for torch, else a batch-1 ONNX export.

    The ONNX graph is what `rtk export` writes (`export.torch_to_onnx`, batch 1) without its checks: the probe only
    exists to be timed.
    """
    model = model.eval()
    if target == "torch":
        channels = channel_config(model, meta.num_classes)
        return save_checkpoint(stem.with_suffix(".pt"), model, meta.model_copy(
            update={"arch_config": {**meta.arch_config, "channels": channels}}))
    from toolkit.export import torch_to_onnx

    return torch_to_onnx(model, stem.with_suffix(".onnx"), size=meta.preprocess.crop,
                         settings=ExportSettings(dynamic_batch=False))


def search(model, meta, cfg: PruneSettings, prune_at, tmp: Path, say: Progress):
    """Bisection over the channel ratio for the smallest pruning whose latency on `cfg.target` meets the target.

    Returns (ratio, pruned model, steps, message); the message is empty when the target was met.
    """
    goal, target = cfg.target_latency_ms, cfg.target
    total = cfg.search_steps + 1
    say("latency search", 0, total)
    (base,) = latencies([(model, meta)], target, tmp, cfg.threads)
    if base <= goal:
        raise RtkError(f"the unpruned model already runs at {base:.2f} ms <= {goal} ms on {target}; no pruning needed")
    steps: list[SearchStep] = []

    def trial(ratio: float):
        net = prune_at(ratio)
        (ms,) = latencies([(net, meta)], target, tmp, cfg.threads)
        steps.append(SearchStep(ratio=round(ratio, 4), latency_ms=ms, meets=ms <= goal))
        say("latency search", len(steps), total, ratio=ratio, ms=ms)
        return net, ms

    lo, hi = 0.0, cfg.max_ratio
    best, best_ms = trial(hi)
    if best_ms > goal:
        say("latency search", total, total)
        return hi, best, steps, (f"target {goal} ms on {target} not reached: the best was {best_ms:.2f} ms at ratio "
                                 f"{hi:.2f} (unpruned {base:.2f} ms)")
    for _ in range(cfg.search_steps - 1):
        mid = (lo + hi) / 2
        net, ms = trial(mid)
        if ms <= goal:
            hi, best = mid, net
        else:
            lo = mid
    say("latency search", total, total)
    return hi, best, steps, ""


__all__ = ["SearchStep", "latencies", "probe", "search"]
