"""OpenVINO: read a model (`.xml` + `.bin`, or `.onnx`) and the rtk metadata an IR carries in its `rt_info`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from toolkit.artifact import ModelMeta
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
    """Metadata stored in an IR's rt_info, checked against the IR's graph; an IR rtk did not write gets
    ImageNet defaults sized to its input."""
    import openvino as ov

    from toolkit.onnx_file import _first_error, check_copies, foreign_meta

    path = Path(path)
    model = read_model(path)
    inputs = [_dims(i.get_partial_shape()) for i in model.inputs]
    outputs = [_dims(o.get_partial_shape()) for o in model.outputs]
    quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    kind = model.input(0).get_element_type() if model.inputs else ov.Type.f32  # what the first input takes
    if not model.has_rt_info(META_PATH):
        if kind.is_integral():
            raise RtkError(f"{path}: its input is {kind.get_type_name()} and it has no rtk metadata saying what that "
                           "input is; rtk runs float-input models, and 8-bit pixels only in an IR it compiled with "
                           "--embed-preprocess: compile the source ONNX with rtk")
        return foreign_meta(path, inputs, outputs, source="foreign-ir").check_precision(path, quantized=quantized)
    try:
        meta = ModelMeta.model_validate_json(str(model.get_rt_info(META_PATH).astype(str)))
    except ValueError as exc:
        raise RtkError(f"{path}: its rtk metadata (rt_info rtk/meta) is damaged ({_first_error(exc)}); compile it "
                       "again with `rtk compile --target openvino`") from None
    if kind not in (ov.Type.u8, ov.Type.f32, ov.Type.f16):
        raise RtkError(f"{path}: its input is {kind.get_type_name()}; rtk runs float input, or 8-bit (u8) pixels in "
                       "an IR it compiled with --embed-preprocess: compile it again")
    meta.check_graph(path, inputs, outputs, pixels=kind == ov.Type.u8)
    framework = {key: str(model.get_rt_info(["framework", key]).astype(str)) for key in ("class_names", "rtk.meta")
                 if model.has_rt_info(["framework", key])}
    check_copies(path, meta, framework, where="rt_info framework/")
    return meta.check_precision(path, quantized=quantized)


def _dims(shape: Any) -> list[int | None]:
    """A partial shape as ints where static, None where dynamic ([] for a dynamic rank)."""
    if shape.rank.is_dynamic:
        return []
    return [d.get_length() if d.is_static and d.get_length() > 0 else None for d in shape]
