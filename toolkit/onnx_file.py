"""An ONNX file: loaded with one-line errors, and the rtk metadata it carries in `metadata_props`.

Reading the metadata of a file needs only ONNX Runtime (the runtime-only install); loading, editing and writing
a model is `onnx`, imported when called (the export extra)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.artifact import MAX_SIDE, ModelMeta, Preprocess, default_class_names, foreign
from toolkit.errors import RtkError
from toolkit.settings import MAX_CLASSES

ONNX_META_KEY = "rtk.meta"


def read_onnx_meta(path: Path, model: Any = None) -> ModelMeta:
    """Metadata from an ONNX file; an ONNX file rtk did not write gets ImageNet defaults sized to its input.

    With `model` (an onnx.ModelProto the caller already holds) it is read from there; otherwise ONNX Runtime
    reads the file, which the runtime-only install has (the `onnx` package is only in the export extra) and
    which is faster than importing onnx and parsing the whole protobuf (0.18 s against 0.88 s for a ResNet50).
    """
    path = Path(path)
    if model is not None:
        props = {p.key: p.value for p in model.metadata_props}
        inputs = [_dims(i) for i in model.graph.input]
        outputs = [_dims(o) for o in model.graph.output]
        ops = {node.op_type for node in model.graph.node}
    else:
        props, inputs, outputs = _onnx_facts(path)
        ops = _op_types(path)
    quantized = bool(ops & QUANTIZE_OPS) or any(op.startswith("QLinear") for op in ops)
    if ONNX_META_KEY in props:
        meta = parse_meta(props[ONNX_META_KEY], path, f"rtk metadata ({ONNX_META_KEY})")
        meta.check_graph(path, inputs, outputs)
        meta = meta.check_precision(path, quantized=quantized, cast="Cast" in ops)
        check_copies(path, meta, {k: v for k, v in props.items() if k == "class_names"})
        return meta
    return foreign_meta(path, inputs, outputs, source="foreign-onnx").check_precision(path, quantized=quantized)


def parse_meta(text: str, path: Path, what: str) -> ModelMeta:
    try:
        return ModelMeta.model_validate_json(text)
    except ValueError as exc:
        raise RtkError(f"{path}: its {what} is damaged ({_first_error(exc)}); re-export it with `rtk export`") from None


def check_copies(path: Path, meta: ModelMeta, props: dict[str, str], where: str = "") -> None:
    """The copies of the metadata beside rtk's must agree with it: the `class_names` prop other tools read, and
    in an IR the ONNX props OpenVINO keeps (`where` "rt_info framework/"). A disagreement means a hand edit:
    which copy is right cannot be told, so the file is refused rather than scored under the wrong names."""
    copies = {}
    if "class_names" in props:
        copies["class_names"] = (_listed(props["class_names"]), meta.class_names)
    if ONNX_META_KEY in props:
        copy = parse_meta(props[ONNX_META_KEY], path, f"{where}{ONNX_META_KEY} metadata")
        copies[ONNX_META_KEY] = ((copy.class_names, copy.preprocess.on_host()),        # compile may embed it
                                 (meta.class_names, meta.preprocess.on_host()))
    for key, (copy, own) in copies.items():
        if copy != own:
            raise RtkError(f"{path}: its {where}{key} metadata disagrees with its rtk metadata on {_differs(copy, own)}; "
                           "the metadata was edited: make the file again with rtk")


def _differs(copy: Any, own: Any) -> str:
    """What differs between two copies of the metadata: the class names, or the preprocessing fields by name."""
    if isinstance(copy, tuple) and copy[0] == own[0]:
        fields = [f for f in type(copy[1]).model_fields if getattr(copy[1], f) != getattr(own[1], f)]
        return "preprocess " + ", ".join(f"{f} ({getattr(copy[1], f)} vs {getattr(own[1], f)})" for f in fields)
    names = list(copy[0] if isinstance(copy, tuple) else copy)
    mine = list(own[0] if isinstance(own, tuple) else own)
    at = next((i for i, (a, b) in enumerate(zip(names, mine)) if a != b), None)
    if at is None:
        return f"the number of class names ({len(names)} vs {len(mine)})"
    return f"class {at}'s name ({names[at][:40]!r} vs {mine[at][:40]!r})"


def _listed(value: str) -> list[str]:
    """The `class_names` prop other tools read: rtk writes a JSON list; a comma-separated string is read too."""
    try:
        names = json.loads(value)
    except ValueError:
        return value.split(",")
    return [str(n) for n in names] if isinstance(names, list) else [value]


QUANTIZE_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}


def _op_types(path: Path) -> set[str]:
    """The op types among Cast and the quantize ops that the file's graph holds, found as their protobuf encoding
    (NodeProto.op_type, field 4) in the raw bytes: ONNX Runtime does not list a graph's nodes, and parsing the
    file with `onnx` costs about a second for a ResNet50 (and is not in the runtime-only install)."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as raw:
        found = {op for op in (*QUANTIZE_OPS, "Cast") if raw.find(b"\x22" + bytes([len(op)]) + op.encode()) >= 0}
        if raw.find(b"QLinear") >= 0:
            found.add("QLinearConv")
    return found


def foreign_meta(path: Path, inputs: list[list[int | None]], outputs: list[list[int | None]], *,
                 source: str) -> ModelMeta:
    """Metadata for a classifier rtk did not write: ImageNet preprocessing sized to its input, class names by
    count, and `arch` "unknown" (rtk cannot tell what network it is, so it does not call it a ResNet50)."""
    if len(inputs) != 1 or len(outputs) != 1:
        raise RtkError(f"{path}: not an image classifier ({len(inputs)} inputs, {len(outputs)} outputs); "
                       "rtk runs models with one NCHW image input and one logits output")
    dims, outs = inputs[0], outputs[0]
    given = foreign()
    layout = (given.preprocess.get("layout") if given else None) or (
        "NHWC" if len(dims) == 4 and dims[3] == 3 and dims[1] != 3 else "NCHW")     # tf2onnx keeps Keras' NHWC
    channel = 3 if layout == "NHWC" else 1
    if len(dims) != 4 or dims[channel] not in (None, 3) or len(outs) != 2:
        shape = "x".join(str(d or "?") for d in dims)
        raise RtkError(f"{path}: not an image classifier (input {shape or 'without a shape'}, output rank {len(outs)}); "
                       "rtk runs models with an N x 3 x H x W (or N x H x W x 3) input and N x classes logits")
    height, width = (dims[1], dims[2]) if layout == "NHWC" else (dims[2], dims[3])
    if height and width and height != width:
        raise RtkError(f"{path}: input {height}x{width} is not square; rtk's preprocessing center-crops a square")
    crop = width or height or 224
    classes = outs[-1]
    if not classes:
        raise RtkError(f"{path}: the output has no static class dimension and no rtk metadata; export it with rtk")
    if classes > MAX_CLASSES:
        raise RtkError(f"{path}: {classes} classes; rtk runs classifiers of at most {MAX_CLASSES} classes")
    if crop > MAX_SIDE:
        raise RtkError(f"{path}: input {crop} px; rtk runs inputs of at most {MAX_SIDE} px")
    meta = ModelMeta(arch="unknown", num_classes=classes, class_names=default_class_names(classes),
                     preprocess=Preprocess(layout=layout).at_size(crop), provenance={"source": source, "file": path.name})
    if given is not None:
        side = given.preprocess.get("crop")
        if side is not None and (height or width) and side != (width or height):
            raise RtkError(f"--crop {side}: {path} takes {width or height} px input; give its input side or leave "
                           "--crop out")
        meta = given.apply(meta, path)
    meta.check_graph(path, inputs, outputs)
    return meta


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(map(str, first['loc'])) or 'meta'}: {first['msg'].removeprefix('Value error, ')}"
    return type(exc).__name__


def _onnx_facts(path: Path) -> tuple[dict[str, str], list[list[int | None]], list[list[int | None]]]:
    """(metadata_props, input shapes, output shapes; None for a dynamic dimension) as ONNX Runtime reads them."""
    _check_file(path)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception:  # ORT raises several unrelated types for garbage input
        raise RtkError(f"{path}: not a readable ONNX model; re-export it with `rtk export`") from None

    def shape(value: Any) -> list[int | None]:
        return [d if isinstance(d, int) and d > 0 else None for d in (value.shape or [])]

    props = dict(session.get_modelmeta().custom_metadata_map)
    kinds = {i.type for i in session.get_inputs()} | {o.type for o in session.get_outputs()}
    if ONNX_META_KEY not in props and kinds - {"tensor(float)"}:
        raise RtkError(f"{path}: its inputs/outputs are {', '.join(sorted(kinds))}; rtk runs classifiers with a "
                       "float32 image input and float32 logits (export it in FP32)")
    return props, [shape(i) for i in session.get_inputs()], [shape(o) for o in session.get_outputs()]


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise RtkError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise RtkError(f"{path}: file is empty (0 bytes); re-export it with `rtk export`")


def load_onnx(path: Path, load_external_data: bool = True) -> Any:
    """onnx.load with one-line errors for missing, empty and non-ONNX files."""
    import onnx

    path = Path(path)
    _check_file(path)
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf raises several unrelated types for garbage input
        raise RtkError(f"{path}: not a readable ONNX model ({type(exc).__name__}); re-export it with `rtk export`") from None


def write_onnx_meta(model: Any, meta: ModelMeta) -> None:
    """Store `meta` in the model's metadata_props (replacing any previous rtk entry)."""
    keep = [p for p in model.metadata_props if p.key not in (ONNX_META_KEY, "class_names")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in ((ONNX_META_KEY, meta.to_json()), ("class_names", json.dumps(meta.class_names))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def input_name(model: Any) -> str:
    return model.graph.input[0].name


def input_dims(model: Any) -> list[int | None]:
    """The first input's dimensions: ints where static, None where dynamic (a named or missing dimension)."""
    return _dims(model.graph.input[0])


def _dims(value: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value.type.tensor_type.shape.dim]
