"""What every artifact carries besides its weights: ModelMeta (class names, preprocessing, precision, provenance).

An artifact is a file on disk (`.pt`, `.onnx`, `.xml` + `.bin`, `.engine`) plus this metadata. It travels inside
the file where the format has room for it (checkpoint dict, ONNX `metadata_props`, OpenVINO `rt_info`) and in a
sidecar `<file>.json` where it does not (TensorRT engines); `toolkit.backends.read_meta` reads it from any of
them. Writing files is `toolkit.io`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolkit.io import sha256_file
from toolkit.settings import Precision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

class Preprocess(BaseModel):
    """The one preprocessing definition: eval = resize shorter side, center crop, scale to [0, 1], normalise."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop)

    def at_size(self, crop: int) -> "Preprocess":
        """The same preprocessing for another input size, keeping the resize/crop ratio."""
        return self.model_copy(update={"crop": crop, "resize": round(crop * self.resize / self.crop)})


class ModelMeta(BaseModel):
    """Everything a deployed classifier needs besides its weights."""

    model_config = ConfigDict(extra="forbid")

    arch: str = "resnet50"
    num_classes: int
    class_names: list[str]
    preprocess: Preprocess = Field(default_factory=Preprocess)
    precision: Precision = "fp32"
    arch_config: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    def derived(self, step: str, parent: Path | None = None, **facts: Any) -> "ModelMeta":
        """A copy for an artifact made from this one by `step`, recording the parent's hash.

        No wall-clock time is recorded, so the same inputs give a byte-identical artifact; run times are
        in the run manifest and the commands' JSON results.
        """
        history = list(self.provenance.get("history", []))
        entry: dict[str, Any] = {"step": step, **facts}
        if parent is not None and parent.is_file():
            entry["parent"] = parent.name
            entry["parent_sha256"] = sha256_file(parent)
        history.append(entry)
        return self.model_copy(deep=True, update={"provenance": {**self.provenance, "history": history}})

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def default_class_names(num_classes: int) -> list[str]:
    """ImageNet's class names for a 1000-class model, else class_0, class_1, ...

    The names ship with rtk (imagenet_classes.txt, torchvision's list; a test keeps the two equal) rather than
    coming from torchvision, so a device with the runtime-only install labels a foreign model as the build
    machine does.
    """
    if num_classes == 1000:
        from importlib.resources import files

        return files("toolkit").joinpath("imagenet_classes.txt").read_text().splitlines()
    return [f"class_{i}" for i in range(num_classes)]
