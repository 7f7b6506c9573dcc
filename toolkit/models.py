"""ResNet50 from torchvision weights, a seeded random init, an rtk checkpoint or a plain state dict.

An rtk checkpoint is a dict of plain values and tensors, so `torch.load(weights_only=True)` reads it:
    {"format": "rtk.checkpoint", "version": 1, "meta": ModelMeta as JSON-able dict, "state_dict": {...}}
Pruned networks store their per-layer channel counts in `meta.arch_config["channels"]` and are rebuilt
from them, never unpickled.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from pydantic import ValidationError
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from toolkit.artifact import ModelMeta, Preprocess, default_class_names
from toolkit.io import atomic_outputs
from toolkit.channels import apply_channels
from toolkit.errors import RtkError
from toolkit.settings import MAX_CLASSES, MAX_INPUT, MIN_CLASSES, MIN_INPUT

CHECKPOINT_FORMAT = "rtk.checkpoint"
CHECKPOINT_VERSION = 1
PRETRAINED = {"imagenet-v1": ResNet50_Weights.IMAGENET1K_V1, "imagenet-v2": ResNet50_Weights.IMAGENET1K_V2}
SOURCES = ("imagenet-v1", "imagenet-v2", "random", "none")


def build_model(meta: ModelMeta) -> nn.Module:
    """An untrained network with the architecture `meta` describes."""
    if meta.arch != "resnet50":
        raise RtkError(f"architecture {meta.arch!r} is not supported; rtk handles resnet50")
    model = resnet50(weights=None, num_classes=meta.num_classes)
    channels = meta.arch_config.get("channels")
    if channels:
        apply_channels(model, channels)
    return model


def load_model(
    source: str | Path,
    *,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    seed: int = 0,
    input_size: int | None = None,
) -> tuple[nn.Module, ModelMeta]:
    """Resolve a model source to (eval-mode module, metadata).

    `source` is "imagenet-v1" / "imagenet-v2" (torchvision download), "random" / "none" (seeded init),
    or a path to an rtk checkpoint or a plain torchvision state dict.
    """
    if num_classes is not None and num_classes < MIN_CLASSES:
        raise RtkError(f"--num-classes {num_classes}: a classifier needs at least {MIN_CLASSES} classes")
    if num_classes is not None and num_classes > MAX_CLASSES:
        raise RtkError(f"--num-classes {num_classes}: give at most {MAX_CLASSES} classes")
    if input_size is not None and not MIN_INPUT <= input_size <= MAX_INPUT:
        raise RtkError(f"--input-size {input_size}: give a side between {MIN_INPUT} and {MAX_INPUT} pixels")
    key = str(source).lower()
    if key in PRETRAINED:
        model, meta = _pretrained(key)
    elif key in ("random", "none"):
        model, meta = _random(num_classes or len(class_names or []) or 1000, class_names, seed)
    else:
        model, meta = read_checkpoint(Path(source), num_classes=num_classes)
    if input_size and input_size != meta.preprocess.crop:
        meta = meta.model_copy(update={"preprocess": meta.preprocess.at_size(input_size)})
    return model.eval(), meta


def _pretrained(key: str) -> tuple[nn.Module, ModelMeta]:
    weights = PRETRAINED[key]
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        name = weights.url.rsplit("/", 1)[-1]
        raise RtkError(
            f"could not download {key} weights ({type(exc).__name__}); offline, put {name} "
            f"from {weights.url} into {cache}/"
        ) from None
    model = resnet50(weights=None)
    model.load_state_dict(state)
    tf = weights.transforms()
    meta = ModelMeta(
        num_classes=1000,
        class_names=list(weights.meta["categories"]),
        preprocess=Preprocess(resize=tf.resize_size[0], crop=tf.crop_size[0]),
        provenance={"source": f"torchvision:{weights}",
                    "reference_top1": weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]},
    )
    return model, meta


def _random(num_classes: int, class_names: list[str] | None, seed: int) -> tuple[nn.Module, ModelMeta]:
    names = class_names or default_class_names(num_classes)
    if len(names) != num_classes:
        raise RtkError(f"{len(names)} class names given for {num_classes} classes; make them match")
    meta = ModelMeta(num_classes=num_classes, class_names=names,
                     provenance={"source": "random", "seed": seed})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = resnet50(weights=None, num_classes=num_classes)
    return model, meta


def _torch_load(path: Path, *, mmap: bool = False) -> object:
    if not path.is_file():
        raise RtkError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise RtkError(f"{path}: checkpoint is empty (0 bytes); save it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise RtkError(
            f"{path}: refused, it holds pickled Python objects, not only tensors; "
            "re-save it with torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:
        raise RtkError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}); check the file") from None


def read_checkpoint(path: Path, *, num_classes: int | None = None) -> tuple[nn.Module, ModelMeta]:
    """Load an rtk checkpoint, or a plain state dict (class count from `fc.weight` or `num_classes`)."""
    obj = _torch_load(path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        try:
            meta = ModelMeta.model_validate(obj.get("meta"))
        except ValidationError as exc:
            raise RtkError(f"{path}: its rtk metadata is damaged ({_first_error(exc)}); save the checkpoint again") from None
        if meta.preprocess.embedded:        # only an OpenVINO IR rtk compiled takes 8-bit pixels
            raise RtkError(f"{path}: its rtk metadata says the preprocessing is embedded, which a checkpoint never "
                           "is (the network takes float input); save the checkpoint again")
        state = obj.get("state_dict")
        if not isinstance(state, dict):
            raise RtkError(f"{path}: rtk checkpoint without a state_dict; save the checkpoint again")
    else:
        state = _plain_state_dict(obj, path)
        fc = state.get("fc.weight")
        if fc is None:
            raise RtkError(f"{path}: not a ResNet50 state dict (no fc.weight); pass a torchvision resnet50 state dict")
        found = int(fc.shape[0])
        if num_classes is not None and num_classes != found:
            raise RtkError(f"{path}: state dict has {found} classes but --num-classes is {num_classes}; drop or fix it")
        meta = ModelMeta(num_classes=found, class_names=default_class_names(found),
                         provenance={"source": f"state_dict:{path.name}"})
    if meta.precision != "fp32":
        raise RtkError(f"{path}: its metadata says {meta.precision} but a checkpoint holds FP32 weights (rtk runs "
                       "it in FP32); the metadata is damaged: save the checkpoint again")
    _check_shapes(meta, state, path)
    model = build_model(meta)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise RtkError(f"{path}: weights do not fit {meta.arch} ({first[:160]})") from None
    return model.eval(), meta


def _check_shapes(meta: ModelMeta, state: dict, path: Path) -> None:
    """Refuse metadata whose network (class count, pruned widths) disagrees with the weights, before any memory is
    allocated from it: the network is first built on the meta device, which holds shapes and no data."""
    channels = meta.arch_config.get("channels")
    if channels is not None and not isinstance(channels, dict):
        raise RtkError(f"{path}: its rtk metadata is damaged (arch_config.channels is not a mapping); save the "
                       "checkpoint again")
    with torch.device("meta"):
        skeleton = build_model(meta)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    for key, shape in expected.items():
        tensor = state.get(key)
        if not isinstance(tensor, torch.Tensor):
            raise RtkError(f"{path}: weights do not fit {meta.arch} as its metadata describes it (no {key}); the "
                           "checkpoint is damaged, save it again")
        if tuple(tensor.shape) != shape:
            raise RtkError(f"{path}: weights do not fit {meta.arch} as its metadata describes it ({key} is "
                           f"{list(tensor.shape)}, the metadata says {list(shape)}); pass a matching checkpoint")
    broken = [key for key in expected if state[key].is_floating_point() and not torch.isfinite(state[key]).all()]
    if broken:
        raise RtkError(f"{path}: {len(broken)} weight tensors hold NaN or Inf (first: {broken[0]}); the model is "
                       "damaged (a training run that diverged?): pass an earlier checkpoint")


def checkpoint_meta(path: Path) -> ModelMeta:
    """The metadata of a checkpoint, after proving its weights load into the network it describes."""
    return read_checkpoint(Path(path))[1]


def stored_extra(path: Path) -> dict:
    """The `extra` metadata an rtk checkpoint stores, read without reading its weights (memory-mapped) or building
    the network: for a note on a file rtk just wrote, not to trust a checkpoint (that is `checkpoint_meta`)."""
    obj = _torch_load(Path(path), mmap=True)
    meta = obj.get("meta") if isinstance(obj, dict) else None
    extra = meta.get("extra") if isinstance(meta, dict) else None
    if not isinstance(extra, dict):
        raise RtkError(f"{path}: no rtk metadata")
    return extra


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(map(str, first['loc'])) or 'meta'}: {first['msg']}"


def _plain_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RtkError(f"{path}: not a state dict of tensors nor an rtk checkpoint; save model.state_dict()")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def save_checkpoint(path: Path, model: nn.Module, meta: ModelMeta) -> Path:
    """Write an rtk checkpoint atomically; loadable with weights_only=True."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "meta": meta.json_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    with atomic_outputs(Path(path)) as (tmp,):
        torch.save(payload, tmp)
    return Path(path)
