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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from toolkit.errors import RtkError

from toolkit.io import sha256_file
from toolkit.settings import MAX_CLASSES, Precision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MAX_SIDE = 4096                  # pixels: beyond this a resize or crop is damage, not a model


class Preprocess(BaseModel):
    """The one preprocessing definition: eval = resize shorter side, center crop, scale to [0, 1], normalise.

    Every value is bounded, so metadata read from a file (which may be damaged or hostile) cannot ask for a
    100000-pixel resize or divide by a zero std."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    resize: int = Field(256, ge=1, le=2 * MAX_SIDE)
    crop: int = Field(224, ge=1, le=MAX_SIDE)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x <= 0 for x in v):
            raise ValueError("std values must be positive (the input is divided by them)")
        return v

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop)

    def at_size(self, crop: int) -> "Preprocess":
        """The same preprocessing for another input size, keeping the resize/crop ratio."""
        return Preprocess.model_validate({**self.model_dump(), "crop": crop,
                                          "resize": round(crop * self.resize / self.crop)})


class ModelMeta(BaseModel):
    """Everything a deployed classifier needs besides its weights."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    arch: str = "resnet50"
    num_classes: int = Field(ge=1, le=MAX_CLASSES)
    class_names: list[str]
    preprocess: Preprocess = Field(default_factory=Preprocess)
    precision: Precision = "fp32"
    arch_config: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_match(self) -> "ModelMeta":
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        return self

    def check_graph(self, path: Path, inputs: list[list[int | None]], outputs: list[list[int | None]]) -> None:
        """Refuse metadata that disagrees with the graph it describes: one N x 3 x H x W image input (H and W
        the crop where they are fixed) and one N x classes logits output (classes the number of names).
        Dimensions are None where the graph leaves them dynamic."""
        if len(inputs) != 1 or len(outputs) != 1:
            raise RtkError(f"{path}: not an image classifier ({len(inputs)} inputs, {len(outputs)} outputs); rtk "
                           "runs models with one image input and one logits output")
        dims, out = inputs[0], outputs[0]
        shape = "x".join(str(d or "?") for d in dims) or "without a shape"
        if len(dims) != 4 or dims[1] not in (None, 3):
            raise RtkError(f"{path}: not an image classifier (input {shape}); rtk runs models with an "
                           "N x 3 x H x W input")
        if any(d is not None and d != self.preprocess.crop for d in dims[2:]):
            raise RtkError(f"{path}: its metadata says {self.preprocess.crop} px input but the graph takes {shape}; "
                           "the metadata is damaged: export the model again")
        if len(out) != 2 or (out[1] is not None and out[1] != self.num_classes):
            raise RtkError(f"{path}: its metadata names {self.num_classes} classes but the graph outputs "
                           f"{'x'.join(str(d or '?') for d in out) or 'a scalar'}; the metadata is damaged: export "
                           "the model again")

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
