"""What every artifact carries besides its weights: ModelMeta (class names, preprocessing, precision, provenance).

An artifact is a file on disk (`.pt`, `.onnx`, `.xml` + `.bin`, `.engine`) plus this metadata. It travels inside
the file where the format has room for it (checkpoint dict, ONNX `metadata_props`, OpenVINO `rt_info`) and in a
sidecar `<file>.json` where it does not (TensorRT engines); `toolkit.backends.read_meta` reads it from any of
them. Writing files is `toolkit.io`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from toolkit.errors import RtkError

from toolkit.io import sha256_file
from toolkit.settings import MAX_CLASSES, MIN_CLASSES, Precision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)     # Keras' "caffe" mode: BGR, ImageNet mean in 0-255, no std
NEW_FIELDS = ("layout", "channels", "pixels", "embedded")   # left out of the JSON at their defaults: older rtk reads it

MAX_SIDE = 4096                  # pixels: beyond this a resize or crop is damage, not a model
# ModelMeta.extra[DECODE_RECORD]: the fast JPEG decode's passed check on this very artifact (toolkit.deploy); it
# holds for that artifact only, so an artifact made from it does not inherit it
DECODE_RECORD = "decode"


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
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    channels: Literal["RGB", "BGR"] = "RGB"
    pixels: Literal["0-1", "0-255"] = Field("0-1", description="The pixel range mean and std apply to: 0-1 "
                                            "(torchvision's ToTensor) or 0-255 (Caffe/Keras 'caffe' mode).")
    embedded: bool = Field(False, description="The artifact does the per-pixel steps itself (OpenVINO "
                           "PrePostProcessor, `rtk compile --embed-preprocess`): it takes the resized, cropped 8-bit "
                           "RGB pixels, N x H x W x 3 uint8; the fields above say what it does with them.")

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not 1e-3 <= x <= 255 for x in v):   # divided by: a tiny std overflows float32 to Inf
            raise ValueError("std values must lie within 0.001..255 (the input is divided by them)")
        return v

    @field_validator("mean")
    @classmethod
    def _mean_in_pixel_range(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(abs(x) > 255 for x in v):
            raise ValueError("mean values must lie within -255..255 (pixels are 0-1 or 0-255)")
        return v

    @model_validator(mode="after")
    def _resize_covers_crop(self) -> "Preprocess":
        if self.resize < self.crop:
            raise ValueError(f"resize {self.resize} is smaller than crop {self.crop} (the crop would be padded); "
                             "give a resize of at least the crop")
        return self

    @property
    def input_layout(self) -> Literal["NCHW", "NHWC"]:
        """The layout of the artifact's input: NHWC pixels where the preprocessing is embedded, else `layout`."""
        return "NHWC" if self.embedded else self.layout

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop) if self.input_layout == "NCHW" else (self.crop, self.crop, 3)

    def describe_input(self, batch: str = "N") -> str:
        """The artifact's input in words: what an application feeds it (`batch`: a static batch, else N)."""
        dims = "x".join((batch if batch.isdigit() else "N", *map(str, self.input_shape)))
        if self.embedded:
            return f"{dims} uint8 RGB pixels, resized and center-cropped (the IR normalizes them)"
        return f"{dims} float32, {self.channels}, normalized with the mean and std of the metadata"

    def on_host(self) -> "Preprocess":
        """The same preprocessing done outside the artifact: what an artifact of the same model without it takes."""
        return self.model_copy(update={"embedded": False})

    def at_size(self, crop: int) -> "Preprocess":
        """The same preprocessing for another input size, keeping the resize/crop ratio."""
        return Preprocess.model_validate({**self.model_dump(), "crop": crop,
                                          "resize": round(crop * self.resize / self.crop)})


class ModelMeta(BaseModel):
    """Everything a deployed classifier needs besides its weights."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    arch: str = "resnet50"
    num_classes: int = Field(ge=MIN_CLASSES, le=MAX_CLASSES)
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
        if any(not name.strip() for name in self.class_names):
            raise ValueError(f"class {[n.strip() for n in self.class_names].index('')} has an empty name")
        return self

    def check_graph(self, path: Path, inputs: list[list[int | None]], outputs: list[list[int | None]], *,
                    pixels: bool = False) -> None:
        """Refuse metadata that disagrees with the graph it describes: one N x 3 x H x W image input (H and W
        the crop where they are fixed; 8-bit, `pixels`, exactly where the preprocessing is embedded) and one
        N x classes logits output (classes the number of names). Dimensions are None where the graph leaves them
        dynamic."""
        if len(inputs) != 1 or len(outputs) != 1:
            raise RtkError(f"{path}: not an image classifier ({len(inputs)} inputs, {len(outputs)} outputs); rtk "
                           "runs models with one image input and one logits output")
        if pixels != self.preprocess.embedded:
            raise RtkError(f"{path}: its graph takes {'8-bit' if pixels else 'float'} input but its metadata says "
                           f"{'float' if pixels else '8-bit pixels (embedded preprocessing)'}; rtk runs float inputs, "
                           "or an IR it compiled with --embed-preprocess: compile it again with rtk")
        dims, out = inputs[0], outputs[0]
        shape = "x".join(str(d or "?") for d in dims) or "without a shape"
        nhwc = self.preprocess.input_layout == "NHWC"
        if len(dims) != 4 or dims[3 if nhwc else 1] not in (None, 3):
            raise RtkError(f"{path}: not an image classifier (input {shape}); rtk runs models with an "
                           f"{'N x H x W x 3' if nhwc else 'N x 3 x H x W'} input (its metadata says "
                           f"{self.preprocess.input_layout})")
        if any(d is not None and d != self.preprocess.crop for d in (dims[1:3] if nhwc else dims[2:])):
            raise RtkError(f"{path}: its metadata says {self.preprocess.crop} px input but the graph takes {shape}; "
                           "the metadata is damaged: export the model again")
        if len(out) != 2 or (out[1] is not None and out[1] != self.num_classes):
            raise RtkError(f"{path}: its metadata names {self.num_classes} classes but the graph outputs "
                           f"{'x'.join(str(d or '?') for d in out) or 'a scalar'}; the metadata is damaged: export "
                           "the model again")

    def check_precision(self, path: Path, *, quantized: bool, cast: bool | None = None) -> "ModelMeta":
        """This metadata with the precision the graph shows: `int8` needs quantize ops (QDQ, FakeQuantize) and
        `fp16` the Cast nodes an FP16 ONNX keeps at its FP32 input and output (`cast` None where that cannot be
        told, e.g. an IR, whose constants are FP16 either way); such a claim on an FP32 graph is refused. A graph
        with quantize ops is int8 whatever its label says: a tool that quantized an rtk ONNX (ONNX Runtime's
        quantize_static) copies the FP32 metadata."""
        if quantized:
            return self if self.precision == "int8" else self.model_copy(update={"precision": "int8"})
        if self.precision == "int8":
            said = "an FP32 graph (no QuantizeLinear/DequantizeLinear or FakeQuantize nodes)"
        elif self.precision == "fp16" and cast is False:
            said = "an FP32 graph (no Cast to FP16 at its input)"
        else:
            return self
        raise RtkError(f"{path}: its metadata says {self.precision} but it is {said}; the metadata is damaged: "
                       "make the artifact again with rtk")

    def derived(self, step: str, parent: Path | None = None, **facts: Any) -> "ModelMeta":
        """A copy for an artifact made from this one by `step`, recording the parent's hash.

        No wall-clock time is recorded, so the same inputs give a byte-identical artifact; run times are
        in the run manifest and the commands' JSON results. A fast-decode record (DECODE_RECORD) is not inherited.
        """
        history = list(self.provenance.get("history", []))
        entry: dict[str, Any] = {"step": step, **facts}
        if parent is not None and parent.is_file():
            entry["parent"] = parent.name
            entry["parent_sha256"] = sha256_file(parent)
        history.append(entry)
        extra = {k: v for k, v in self.extra.items() if k != DECODE_RECORD}
        return self.model_copy(deep=True, update={"provenance": {**self.provenance, "history": history},
                                                  "extra": extra})

    def to_json(self) -> str:
        return json.dumps(self.json_dict(), sort_keys=True)

    def json_dict(self) -> dict[str, Any]:
        """The metadata as JSON values; preprocessing fields at their defaults that earlier rtk versions did not
        have are left out, so an artifact of a plain model still opens with them."""
        data = self.model_dump(mode="json")
        defaults = Preprocess()
        for name in NEW_FIELDS:
            if data["preprocess"][name] == getattr(defaults, name):
                del data["preprocess"][name]
        return data


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


class Foreign(BaseModel):
    """What rtk cannot read from a classifier exported elsewhere (no rtk metadata): its class names and its
    preprocessing. Given on the command line (`--labels`, `--resize`, `--layout`, `--caffe`, ...), applied to
    every artifact without rtk metadata that the command opens, and then recorded in what rtk writes from it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    labels: list[str] | None = None
    preprocess: dict[str, Any] = Field(default_factory=dict)   # Preprocess fields to set

    def apply(self, meta: "ModelMeta", path: Path) -> "ModelMeta":
        from pydantic import ValidationError

        names = self.labels if self.labels is not None else meta.class_names
        if len(names) != meta.num_classes:
            raise RtkError(f"{path}: --labels gives {len(names)} class names but the model outputs "
                           f"{meta.num_classes} classes; give one name per line, in output order")
        pre = meta.preprocess.model_dump()
        crop = self.preprocess.get("crop")
        if crop is not None and not 1 <= crop <= MAX_SIDE:
            raise RtkError(f"--crop {crop}: give an input side from 1 to {MAX_SIDE} pixels")
        if crop is not None and "resize" not in self.preprocess:
            pre["resize"] = round(self.preprocess["crop"] * pre["resize"] / pre["crop"])
        try:
            preprocess = Preprocess.model_validate({**pre, **self.preprocess})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise RtkError(f"--{first['loc'][0] if first['loc'] else 'resize'}: "
                           f"{first['msg'].removeprefix('Value error, ')}") from None
        return meta.model_copy(update={"class_names": list(names), "preprocess": preprocess})


_FOREIGN: list[Foreign | None] = [None]


def foreign() -> Foreign | None:
    """The description of foreign models this command was given, if any."""
    return _FOREIGN[0]


@contextlib.contextmanager
def describing(description: Foreign | None) -> Iterator[None]:
    """Within the block, artifacts without rtk metadata are read with `description` (toolkit.onnx_file)."""
    previous = _FOREIGN[0]
    _FOREIGN[0] = description
    try:
        yield
    finally:
        _FOREIGN[0] = previous
