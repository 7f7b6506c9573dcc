"""Transfer learning (new head on a pretrained backbone), training from scratch, and recovery fine-tuning.

The recipe is the practitioner's default for ResNet50: AdamW with a one-cycle schedule, label smoothing,
augmentation from the model's own Preprocess (`augment`: full, flip or none), best checkpoint kept by val top-1.
`train()` is the shared loop; pruning reuses it for recovery, with optional distillation from a teacher.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from toolkit.artifact import ModelMeta, Preprocess
from toolkit.io import atomic_outputs, check_output, write_json
from toolkit.data import ImageSet, check_classes, image_folder, loader
from toolkit.errors import RtkError
from toolkit.models import PRETRAINED, load_model, save_checkpoint, stored_extra
from toolkit.progress import Progress, silent
from toolkit.settings import MIN_CLASSES, FinetuneSettings



class EpochStats(BaseModel):
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float


class FinetuneResult(BaseModel):
    output: str
    history_json: str
    plot_png: str | None
    weights: str
    freeze_backbone: bool
    augment: str = "full"
    classes: list[str]
    input_size: int
    train_images: int
    val_images: int
    best_epoch: int
    best_val_acc: float
    history: list[EpochStats]
    seconds: float


def default_lr(weights: str, freeze_backbone: bool) -> float:
    if freeze_backbone:
        return 3e-3
    return 3e-4 if weights != "none" else 1e-3


def _initial_model(weights: str, *, freeze_backbone: bool, input_size: int | None, seed: int,
                   class_names: list[str], image_side: int) -> tuple[nn.Module, ModelMeta]:
    """The starting network with a head for `class_names`."""
    if weights.lower() in ("none", "random"):
        if freeze_backbone:
            raise RtkError("--freeze-backbone needs pretrained weights; use --weights imagenet-v2 or drop the flag")
        torch.manual_seed(seed)
        from torchvision.models import resnet50

        model = resnet50(weights=None, num_classes=len(class_names), zero_init_residual=True)
        side = input_size or image_side
        meta = ModelMeta(num_classes=len(class_names), class_names=class_names,
                         preprocess=Preprocess(resize=side, crop=side), provenance={"source": "scratch"})
        return model, meta
    model, meta = load_model(weights, input_size=input_size)
    if meta.num_classes != len(class_names) or meta.class_names != class_names:
        torch.manual_seed(seed)
        model.fc = nn.Linear(model.fc.in_features, len(class_names))
    meta = meta.model_copy(update={"num_classes": len(class_names), "class_names": class_names})
    if weights.lower() not in PRETRAINED:
        meta = meta.derived("finetune-from", parent=Path(weights))
    return model, meta


def training_sets(root: Path, pre: Preprocess, *, augment: str) -> tuple[ImageSet, ImageSet]:
    """(train/ with the `augment` transform, val/ with the eval transform): what the training loop is fed."""
    root = Path(root)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise RtkError(f"{root} needs train/ and val/ sub-folders, each with one folder per class "
                       "(rtk data synth makes one)")
    train_set = image_folder(root / "train", pre, train=True, augment=augment)
    val_set = image_folder(root / "val", pre)
    check_classes(train_set.classes, val_set, what=f"{root / 'train'}")
    return train_set, val_set


def _image_side(data: ImageSet) -> int:
    from PIL import Image

    with Image.open(data.folder.samples[0][0]) as img:
        return min(img.size)


def evaluate(model: nn.Module, val_set: ImageSet, *, batch_size: int = 64) -> tuple[float, float]:
    """(mean cross-entropy, top-1 %) in eval mode."""
    model.eval()
    total, correct, loss = 0, 0, 0.0
    with torch.inference_mode():
        for x, y in loader(val_set, batch_size=batch_size):
            out = model(x)
            loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            total += len(y)
    return loss / total, 100.0 * correct / total


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *, alpha: float,
                 temperature: float, label_smoothing: float) -> torch.Tensor:
    """Hinton distillation: alpha * T^2 * KL(soft teacher || soft student) + (1 - alpha) * CE."""
    ce = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    kl = F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                  log_target=True, reduction="batchmean")
    return alpha * temperature**2 * kl + (1 - alpha) * ce


def one_cycle(opt, lr: float, total: int):
    """The one-cycle schedule over `total` steps, a quarter of them warm-up. OneCycleLR divides by the warm-up's
    length, pct_start x total - 1 steps, which is zero at exactly 4 steps (e.g. 1 epoch of 4 batches): there the
    warm-up is half."""
    import torch

    pct = 0.5 if total == 4 else 0.25
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=pct)


def train(model: nn.Module, *, train_set: ImageSet, val_set: ImageSet, epochs: int, lr: float, batch_size: int = 32,
          seed: int = 0, weight_decay: float = 0.05, label_smoothing: float = 0.1,
          params: list[nn.Parameter] | None = None, teacher: nn.Module | None = None, distill_alpha: float = 0.7,
          temperature: float = 4.0, progress: Progress = silent, stage: str = "epoch",
          on_best: Callable[[nn.Module, EpochStats], None] | None = None) -> tuple[nn.Module, list[EpochStats]]:
    """Train with AdamW + one-cycle; returns the model with its best-val-top-1 weights and the history.

    Progress is one bar per epoch, named `stage` and its number ("epoch 2/8")."""
    torch.manual_seed(seed)
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    batches = loader(train_set, batch_size=batch_size, shuffle=True, seed=seed)
    steps = max(1, len(batches))
    sched = one_cycle(opt, lr, epochs * steps)
    if teacher is not None:
        teacher.eval()
    history: list[EpochStats] = []
    best_state, best_acc = None, -1.0
    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()
        seen, correct, loss_sum = 0, 0, 0.0
        for step, (x, y) in enumerate(batches, 1):
            out = model(x)
            if teacher is not None:
                with torch.inference_mode():
                    soft = teacher(x)
                loss = distill_loss(out, soft.clone(), y, alpha=distill_alpha, temperature=temperature,
                                    label_smoothing=label_smoothing)
            else:
                loss = F.cross_entropy(out, y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, max_norm=2.0)
            opt.step()
            sched.step()
            seen += len(y)
            correct += (out.argmax(1) == y).sum().item()
            loss_sum += loss.item() * len(y)
            progress(f"{stage} {epoch + 1}/{epochs}", step, steps, loss=loss_sum / seen, acc=100.0 * correct / seen)
        val_loss, val_acc = evaluate(model, val_set)
        stats = EpochStats(epoch=epoch, train_loss=loss_sum / seen, train_acc=100.0 * correct / seen,
                           val_loss=val_loss, val_acc=val_acc, seconds=time.perf_counter() - started)
        history.append(stats)
        progress(f"{stage} {epoch + 1}/{epochs}", steps, steps, loss=stats.train_loss, acc=stats.train_acc,
                 val_acc=val_acc)
        if val_acc > best_acc:
            best_acc, best_state = val_acc, copy.deepcopy(model.state_dict())
            if on_best:
                on_best(model, stats)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


def _kept(output: Path, began: float, epochs: int) -> str | None:
    """What an interrupted finetune leaves at `output` (saved each time val top-1 improved), read from the file."""
    try:
        if output.stat().st_mtime < began:
            return None
        held = stored_extra(output)
        epoch, top1 = int(held["best_epoch"]) + 1, float(held["val_top1"])
    except (OSError, RtkError, KeyError, TypeError, ValueError):
        return None
    return (f"{output} holds epoch {epoch} of {epochs} (val top-1 {top1:.2f}%), the best trained before the interrupt; "
            f"run again for all {epochs} epochs and the training history")


def finetune(settings: FinetuneSettings, *, data: Path, output: Path, weights: str = "none",
             input_size: int | None = None, seed: int = 0, progress: Progress = silent) -> FinetuneResult:
    """Train on `data` (train/ and val/) from `weights` and save the best checkpoint at `output` (atomically, each
    time val top-1 improves). `input_size` overrides the model's (or, from scratch, the images') side."""
    cfg = settings
    output = check_output(Path(output))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    probe = image_folder(Path(data) / "train" if (Path(data) / "train").is_dir() else data, Preprocess())
    if len(probe.classes) < MIN_CLASSES:
        raise RtkError(f"--data {data}: {len(probe.classes)} class folder ({', '.join(probe.classes)}); a classifier "
                       f"needs at least {MIN_CLASSES} classes: add a folder of images per class")
    model, meta = _initial_model(weights, freeze_backbone=cfg.freeze_backbone, input_size=input_size, seed=seed,
                                 class_names=probe.classes, image_side=_image_side(probe))
    train_set, val_set = training_sets(Path(data), meta.preprocess, augment=cfg.augment)
    params = None
    if cfg.freeze_backbone:
        for p in model.parameters():
            p.requires_grad = False
        for p in model.fc.parameters():
            p.requires_grad = True
        params = list(model.fc.parameters())
    lr = cfg.lr or default_lr(weights, cfg.freeze_backbone)
    meta = meta.derived("finetune", weights=weights, freeze_backbone=cfg.freeze_backbone, epochs=cfg.epochs,
                        lr=lr, batch_size=cfg.batch_size, seed=seed, data=str(data),
                        **({"augment": cfg.augment} if cfg.augment != "full" else {}))

    def save_best(net: nn.Module, stats: EpochStats) -> None:
        best = meta.model_copy(update={"extra": {**meta.extra, "val_top1": stats.val_acc, "best_epoch": stats.epoch}})
        save_checkpoint(output, net, best)

    began = time.time()
    history_json = output.with_suffix(".history.json")
    try:
        model, history = train(model, train_set=train_set, val_set=val_set, epochs=cfg.epochs, lr=lr,
                               batch_size=cfg.batch_size, seed=seed, weight_decay=cfg.weight_decay,
                               label_smoothing=cfg.label_smoothing, params=params, progress=progress,
                               on_best=save_best)
        write_json(history_json, [h.model_dump() for h in history])
        plot = plot_history(history, output.with_suffix(".history.png"))
    except BaseException as exc:        # an interrupt (or a library's error for it): say what the checkpoint is
        setattr(exc, "kept", _kept(output, began, cfg.epochs))
        raise
    best = max(history, key=lambda h: h.val_acc)
    return FinetuneResult(output=str(output), history_json=str(history_json), plot_png=str(plot) if plot else None,
                          weights=weights, freeze_backbone=cfg.freeze_backbone, augment=cfg.augment,
                          classes=meta.class_names, input_size=meta.preprocess.crop, train_images=len(train_set),
                          val_images=len(val_set), best_epoch=best.epoch, best_val_acc=best.val_acc, history=history,
                          seconds=time.perf_counter() - started)


def plot_history(history: list[EpochStats], path: Path) -> Path | None:
    """Train vs validation accuracy and loss per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history) + 1)
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    acc_ax.plot(epochs, [h.train_acc for h in history], "o-", label="train")
    acc_ax.plot(epochs, [h.val_acc for h in history], "o-", label="val")
    acc_ax.set(xlabel="epoch", ylabel="top-1 %", title="accuracy")
    loss_ax.plot(epochs, [h.train_loss for h in history], "o-", label="train")
    loss_ax.plot(epochs, [h.val_loss for h in history], "o-", label="val")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_outputs(path) as (tmp,):
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
