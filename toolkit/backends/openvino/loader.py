"""OpenVINO: read a model (`.xml` + `.bin`, or `.onnx`) and the rtk metadata an IR carries in its `rt_info`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from toolkit.artifact import ModelMeta, Preprocess, default_class_names
from toolkit.errors import RtkError

META_PATH = ["rtk", "meta"]


@functools.cache
def core() -> Any:
    import openvino as ov

    return ov.Core()


def one_line(exc: Exception) -> str:
    """The first meaningful line of an OpenVINO exception (its messages start with a C++ location banner)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return (lines[0] if lines else type(exc).__name__)[:200]


def bin_path(xml: Path) -> Path:
    return Path(xml).with_suffix(".bin")


def require_bin(xml: Path) -> None:
    if not bin_path(xml).is_file():
        raise RtkError(f"{xml}: its weights file {bin_path(xml).name} is missing; keep the .xml and .bin together "
                       "or compile again with `rtk compile --target openvino`")


def read_model(path: Path) -> Any:
    """An ov.Model from `.xml` (with its `.bin`) or `.onnx`, with one-line errors."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        require_bin(path)
    try:
        return core().read_model(str(path))
    except Exception as exc:
        raise RtkError(f"{path}: OpenVINO cannot read it ({one_line(exc)})") from None


def read_ir_meta(path: Path) -> ModelMeta:
    """Metadata stored in an IR's rt_info; an IR rtk did not write gets ImageNet defaults sized to its input."""
    model = read_model(Path(path))
    if model.has_rt_info(META_PATH):
        return ModelMeta.model_validate_json(str(model.get_rt_info(META_PATH).astype(str)))
    shape = model.input(0).get_partial_shape()
    out = model.output(0).get_partial_shape()
    crop = shape[3].get_length() if shape.rank.is_static and shape[3].is_static else 224
    if not (out.rank.is_static and out[out.rank.get_length() - 1].is_static):
        raise RtkError(f"{path}: the IR output has no static class dimension and no rtk metadata; compile it with rtk")
    classes = out[out.rank.get_length() - 1].get_length()
    return ModelMeta(num_classes=classes, class_names=default_class_names(classes),
                     preprocess=Preprocess().at_size(crop),
                     provenance={"source": "foreign-ir", "file": Path(path).name})
