"""Pruning that turns into real speed: whole channels (torch-pruning), a latency-targeted ratio search,
unstructured sparsity (nncf.prune), batch-norm adaptation and recovery fine-tuning with distillation.

Structured pruning removes channels, so every dense runtime runs fewer MACs. The pruned network is stored as
plain tensors plus its per-conv output widths in `meta.arch_config["channels"]`; `channels.apply_channels`
rebuilds that shape from a torchvision ResNet50, so pruned checkpoints load with `torch.load(weights_only=True)`.
Unstructured sparsity only zeroes weights: the checkpoint is dense, no faster on ORT/OpenVINO/TensorRT,
and the result says so with measured latencies.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from toolkit.artifact import ModelMeta, check_output, sha256_file
from toolkit.channels import channel_config
from toolkit.data import AUGMENT, ImageSet, check_classes, image_folder, loader, split_dir
from toolkit.errors import RtkError
from toolkit.models import build_model, read_checkpoint, save_checkpoint
from toolkit.prune_search import Progress, SearchStep, latencies, search

IMPORTANCE = ("l1", "l2", "bn", "taylor")
SEARCH_TARGETS = ("torch", "onnxruntime", "openvino")


class PruneConfig(BaseModel):
    """Everything `rtk prune` can be asked; `None` ratio/sparsity means 0.5."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["structured", "unstructured"] = "structured"
    ratio: float | None = None
    sparsity: float | None = None
    importance: str = "l2"
    global_pruning: bool | None = None    # default: uniform for structured, global for unstructured
    round_to: int = 8
    target_latency_ms: float | None = None
    target: str | None = None
    max_ratio: float = 0.9
    search_steps: int = 5
    keep_best: bool = False
    data: Path | None = None              # ImageFolder (train/ val/) for BN adaptation, Taylor, recovery, top-1
    epochs: int = 0
    lr: float = 5e-4
    batch_size: int = 32
    distill: bool = False
    augment: str = "none"                 # recovery augmentation (data.AUGMENT); see PruneStage
    temperature: float = 4.0
    distill_alpha: float = 0.7
    bn_batches: int = 20
    measure: list[str] | None = None      # runtimes timed before/after; None = onnxruntime (+ openvino if unstructured)
    seed: int = 0
    threads: int | None = None


class LatencyFact(BaseModel):
    target: str
    before_ms: float
    after_ms: float
    speedup: float


class PruneResult(BaseModel):
    """What pruning did and what it bought; falsy when a latency target was not reached."""

    source: str
    output: str | None = None
    sha256: str | None = None
    mode: str
    ratio: float | None = None
    sparsity: float | None = None
    sparsity_reached: float | None = None
    importance: str | None = None
    global_pruning: bool = False
    round_to: int | None = None
    input_size: int
    macs_before: float
    macs_after: float
    params_before: int
    params_after: int
    nonzero_params_after: int
    changed_layers: int
    latency: list[LatencyFact] = Field(default_factory=list)
    target_latency_ms: float | None = None
    target: str | None = None
    search: list[SearchStep] = Field(default_factory=list)
    bn_adapted_batches: int = 0
    recovery: list[dict] = Field(default_factory=list)
    top1_before: float | None = None
    top1_pruned: float | None = None
    top1_after: float | None = None
    passed: bool = True
    message: str = ""
    seconds: float

    def __bool__(self) -> bool:
        return self.passed


def check_config(cfg: PruneConfig) -> None:
    """Refuse impossible requests before any work is done."""
    for flag, value in (("--ratio", cfg.ratio), ("--sparsity", cfg.sparsity)):
        if value is not None and not 0.0 < value < 1.0:
            raise RtkError(f"{flag} {value}: give a fraction strictly between 0 and 1, e.g. 0.5")
    if cfg.mode == "structured" and cfg.sparsity is not None:
        raise RtkError("--sparsity is for --unstructured; use --ratio with --structured")
    if cfg.mode == "unstructured":
        if cfg.ratio is not None:
            raise RtkError("--ratio is for --structured; use --sparsity with --unstructured")
        if cfg.target_latency_ms is not None:
            raise RtkError("a latency target needs --structured: unstructured zeros do not speed up dense runtimes")
    if cfg.target_latency_ms is not None:
        if cfg.target is None:
            raise RtkError("--target-latency-ms needs --target RUNTIME to measure on, e.g. --target onnxruntime")
        if cfg.target_latency_ms <= 0:
            raise RtkError(f"--target-latency-ms {cfg.target_latency_ms}: give a positive number of milliseconds")
        if cfg.ratio is not None:
            raise RtkError("give --ratio or --target-latency-ms, not both")
        if cfg.target not in SEARCH_TARGETS:
            raise RtkError(f"--target {cfg.target}: the latency search measures on {', '.join(SEARCH_TARGETS)}")
    if cfg.importance not in IMPORTANCE:
        raise RtkError(f"--importance {cfg.importance}: choose one of {', '.join(IMPORTANCE)}")
    if cfg.augment not in AUGMENT:
        raise RtkError(f"--augment {cfg.augment}: choose one of {', '.join(AUGMENT)}")
    if cfg.round_to < 1:
        raise RtkError(f"--round-to {cfg.round_to}: give a positive channel multiple, e.g. 8")
    if cfg.epochs < 0 or (cfg.epochs and cfg.data is None):
        raise RtkError("--epochs needs --finetune DATA (and a count of 0 or more)")
    if cfg.distill and not cfg.epochs:
        raise RtkError("--distill needs recovery training: add --finetune DATA --epochs N")
    if cfg.importance == "taylor" and cfg.mode == "structured" and cfg.data is None:
        raise RtkError("--importance taylor needs images for gradients: add --finetune DATA")
    for name in cfg.measure or []:
        if name not in SEARCH_TARGETS:
            raise RtkError(f"--measure {name}: choose from {', '.join(SEARCH_TARGETS)} or none")


def prune_model(source: Path, *, output: Path, config: PruneConfig, progress: Progress | None = None) -> PruneResult:
    """Prune the checkpoint at `source`, optionally recover accuracy, and write a plain rtk checkpoint.

    Nothing is written when a latency target is missed (unless `keep_best`); the result is then falsy.
    """
    cfg = config
    check_config(cfg)
    started = time.perf_counter()
    source, output = Path(source), check_output(Path(output))
    say = progress or (lambda *a, **k: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model, meta = read_checkpoint(source)
    calib_set, train_set, val_set = _data(cfg, meta)
    size = meta.preprocess.crop
    example = torch.zeros(1, 3, size, size)
    glob = cfg.global_pruning if cfg.global_pruning is not None else cfg.mode == "unstructured"
    measure = _measure_targets(cfg)
    macs0, params0 = _count(model, example)
    top1_before = _top1(model, val_set)
    result = dict(source=str(source), mode=cfg.mode, input_size=size, macs_before=macs0, params_before=params0,
                  global_pruning=glob, top1_before=top1_before, target_latency_ms=cfg.target_latency_ms,
                  target=cfg.target)
    with tempfile.TemporaryDirectory(prefix="rtk-prune-") as tmp:
        if cfg.mode == "structured":
            calib = _calibration(calib_set, cfg) if cfg.importance == "taylor" else None
            prune_at = lambda r: _prune_channels(copy.deepcopy(model), ratio=r, cfg=cfg, glob=glob,  # noqa: E731
                                                 example=example, calib=calib)
            if cfg.target_latency_ms is not None:
                ratio, pruned, steps, msg = search(model, meta, cfg, prune_at, Path(tmp), say)
                result.update(search=steps, passed=msg == "", message=msg)
            else:
                ratio = cfg.ratio or 0.5
                say("pruning channels", 0, 1)
                pruned = prune_at(ratio)
                say("pruning channels", 1, 1)
            result.update(ratio=ratio, importance=cfg.importance, round_to=cfg.round_to)
        else:
            result.update(sparsity=cfg.sparsity or 0.5, importance="magnitude")
            pruned = _sparsify(copy.deepcopy(model), sparsity=cfg.sparsity or 0.5, glob=glob, example=example)
        written = result.get("passed", True) or cfg.keep_best
        if calib_set is not None and written:
            result["bn_adapted_batches"] = adapt_batchnorm(pruned, calib_set, batches=cfg.bn_batches,
                                                          batch_size=cfg.batch_size)
            result["top1_pruned"] = _top1(pruned, val_set)
            if cfg.epochs:
                pruned, history = _recover(pruned, model if cfg.distill else None, train_set, val_set, cfg, say)
                result["recovery"] = [h.model_dump() for h in history]
        out_meta, final = _finalize(pruned, meta, source, cfg, result)
        if written:
            result["top1_after"] = _top1(final, val_set)
        macs1, params1 = _count(final, example) if cfg.mode == "structured" else (macs0, params0)  # same shapes
        result.update(macs_after=macs1, params_after=params1,
                      nonzero_params_after=sum(int(torch.count_nonzero(p)) for p in final.parameters()),
                      changed_layers=len(out_meta.arch_config.get("channels", {})) if cfg.mode == "structured" else 0,
                      sparsity_reached=weight_sparsity(final.state_dict()))
        for i, t in enumerate(measure if written else []):
            say("timing before/after", i, len(measure), target=t)
            before, after = latencies([(model, meta), (final, out_meta)], t, Path(tmp), cfg.threads)
            result.setdefault("latency", []).append(
                LatencyFact(target=t, before_ms=before, after_ms=after, speedup=before / after))
        if measure and written:
            say("timing before/after", len(measure), len(measure))
    if not result.get("passed", True):
        result["message"] += (f"; the best was kept at {output}" if written
                              else "; nothing written (add --keep-best to keep the best)")
    if written:
        save_checkpoint(output, final, out_meta)
    return PruneResult(**result, output=str(output) if written else None,
                       sha256=sha256_file(output) if written else None, seconds=time.perf_counter() - started)


def weight_sparsity(state: dict[str, torch.Tensor]) -> float:
    """Fraction of zeros over conv and linear weights (the tensors pruning touches)."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() > 1]
    return float(sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights))


def _data(cfg: PruneConfig, meta: ModelMeta) -> tuple[ImageSet | None, ImageSet | None, ImageSet | None]:
    """(calibration images with the eval transform, augmented training images if training, validation images)."""
    if cfg.data is None:
        return None, None, None
    train_dir = split_dir(cfg.data, "train")
    calib_set = image_folder(train_dir, meta.preprocess)
    train_set = image_folder(train_dir, meta.preprocess, train=True, augment=cfg.augment) if cfg.epochs else None
    val_set = image_folder(split_dir(cfg.data, "val"), meta.preprocess)
    for ds in (calib_set, val_set):
        check_classes(meta.class_names, ds)
    return calib_set, train_set, val_set


def _measure_targets(cfg: PruneConfig) -> list[str]:
    if cfg.measure is not None:
        return list(cfg.measure)
    from toolkit.backends import available

    if cfg.mode == "unstructured" and available("openvino"):
        return ["onnxruntime", "openvino"]
    return ["onnxruntime"]


def _count(model: nn.Module, example: torch.Tensor) -> tuple[float, int]:
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model.eval(), example)
    return float(macs), int(params)


def _top1(model: nn.Module, val_set: ImageSet | None) -> float | None:
    if val_set is None:
        return None
    from toolkit.finetune import evaluate

    return evaluate(model, val_set)[1]


def _calibration(train_set: ImageSet | None, cfg: PruneConfig, batches: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for x, y in loader(train_set, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed):
        out.append((x, y))
        if len(out) >= batches:
            break
    return out


def _importance(name: str):
    import torch_pruning as tp

    return {"l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
            "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
            "bn": tp.importance.BNScaleImportance,
            "taylor": tp.importance.GroupTaylorImportance}[name]()


def _prune_channels(model: nn.Module, *, ratio: float, cfg: PruneConfig, glob: bool, example: torch.Tensor,
                    calib: list | None) -> nn.Module:
    """torch-pruning MetaPruner over the dependency graph; fc outputs (the classes) are never pruned."""
    import torch_pruning as tp

    model.eval()
    pruner = tp.pruner.MetaPruner(model, example, importance=_importance(cfg.importance), pruning_ratio=ratio,
                                  global_pruning=glob, max_pruning_ratio=0.95, ignored_layers=[model.fc],
                                  round_to=cfg.round_to)
    if calib:
        model.zero_grad()
        for x, y in calib:
            nn.functional.cross_entropy(model(x), y).backward()
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def _sparsify(model: nn.Module, *, sparsity: float, glob: bool, example: torch.Tensor) -> nn.Module:
    """nncf.prune magnitude masks on every conv/linear weight (a global or a per-layer threshold)."""
    import nncf

    mode = nncf.PruneMode.UNSTRUCTURED_MAGNITUDE_GLOBAL if glob else nncf.PruneMode.UNSTRUCTURED_MAGNITUDE_LOCAL
    return nncf.prune(model.eval(), mode, ratio=sparsity, examples_inputs=example)


def _strip_masks(model: nn.Module, meta: ModelMeta) -> nn.Module:
    """A plain network whose weights are the masked ones (nncf.strip needs torchao, which rtk does not ship)."""
    from nncf.torch.function_hook.pruning.magnitude.algo import get_pruned_modules
    from nncf.torch.function_hook.wrapper import ATR_HOOK_STORAGE

    masks = get_pruned_modules(model)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(ATR_HOOK_STORAGE)}
    for name, hook in masks.items():
        state[name] = state[name] * hook.binary_mask
    plain = build_model(meta)
    plain.load_state_dict(state)
    return plain.eval()


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, data: ImageSet, *, batches: int, batch_size: int) -> int:
    """Re-estimate batch-norm statistics (cumulative average) over up to `batches` calibration batches.

    The same pass as nncf.batch_norm_adaptation, without its own progress display (one live display at a time).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    done = 0
    try:
        for x, _ in loader(data, batch_size=batch_size, shuffle=True):
            if len(x) < 2:
                continue
            model(x)
            done += 1
            if done >= batches:
                break
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()
    return done


def _recover(model, teacher, train_set, val_set, cfg: PruneConfig, say: Progress):
    """Recovery fine-tuning with finetune.train (AdamW one-cycle), with the unpruned model as teacher if asked."""
    from toolkit.finetune import train

    steps = max(1, -(-len(train_set) // cfg.batch_size))

    def update(epoch: int, step: int, **metrics: float) -> None:
        say(f"recovery epoch {epoch + 1}/{cfg.epochs}", step, steps, **metrics)

    return train(model, train_set=train_set, val_set=val_set, epochs=cfg.epochs, lr=cfg.lr,
                 batch_size=cfg.batch_size, seed=cfg.seed, teacher=teacher, distill_alpha=cfg.distill_alpha,
                 temperature=cfg.temperature, progress=update)


def _finalize(pruned: nn.Module, meta: ModelMeta, source: Path, cfg: PruneConfig, facts: dict):
    """The output metadata and the network rebuilt from it (proving the checkpoint will load)."""
    if cfg.mode == "structured":
        channels = channel_config(pruned, meta.num_classes)
        arch = {**meta.arch_config, "channels": channels}
        state = pruned.state_dict()
    else:
        arch = dict(meta.arch_config)
        state = _strip_masks(pruned, meta).state_dict()
    keep = ("mode", "ratio", "sparsity", "importance", "round_to", "global_pruning", "target_latency_ms", "target")
    out_meta = meta.derived("prune", parent=source, epochs=cfg.epochs, distill=cfg.distill,
                            **{k: facts[k] for k in keep if facts.get(k) is not None})
    out_meta = out_meta.model_copy(update={"arch_config": arch})
    final = build_model(out_meta)
    final.load_state_dict(state)
    return out_meta, final.eval()


__all__ = ["PruneConfig", "PruneResult", "prune_model", "adapt_batchnorm", "weight_sparsity"]
