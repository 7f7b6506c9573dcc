"""What TensorRT will refuse or run badly in an ONNX model, found on a CPU without TensorRT installed.

`rtk compile --target tensorrt --check-only` runs this. It reads the graph with `onnx` only and reports
typed findings: an *error* is something TensorRT's ONNX parser or builder (10.x and 11.x) rejects (or silently
computes differently), a *warning* is something that builds but may be slow or surprising.

The quantization rules are TensorRT's explicit-quantization rules: Q/DQ in signed INT8, zero-point 0,
per-tensor scales on activations, per-channel weight scales on the output-channel axis (axis 0 for Conv).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel

from toolkit.onnx_file import load_onnx

if TYPE_CHECKING:
    from toolkit.backends.tensorrt.builder import BatchProfile

Severity = Literal["error", "warning"]

OPSET_RANGE = range(9, 23)  # opsets the ONNX parsers of TensorRT 10.x and 11.x both document (11.x: up to 25)

# Ops a ResNet-style classifier (and its FP16 and QDQ forms) uses, all supported by TensorRT's ONNX parser.
SUPPORTED_OPS = frozenset({
    "Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid",
    "HardSwish", "Tanh", "Softmax", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Add", "Sub",
    "Mul", "Div", "Flatten", "Reshape", "Gemm", "MatMul", "Identity", "Constant", "Shape", "Gather", "Unsqueeze",
    "Squeeze", "Concat", "Transpose", "Cast", "ReduceMean", "Pad", "Slice", "Resize", "Dropout",
    "QuantizeLinear", "DequantizeLinear",
})

# Ops TensorRT does not implement (ONNX Runtime's QOperator / integer forms): quantize to QDQ instead.
REFUSED_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearConcat",
    "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QGemm",
})

INT32 = np.iinfo(np.int32)


class Finding(BaseModel):
    """One thing TensorRT would refuse (error) or handle badly (warning), at one node or tensor."""

    severity: Severity
    node: str
    message: str


def check_onnx(source: Path | Any, *, profile: BatchProfile | None = None) -> list[Finding]:
    """Every finding for a model (path or loaded ModelProto), errors first.

    `profile` is the batch profile the build would use; without one a dynamic batch axis is flagged.
    """
    model = load_onnx(Path(source), load_external_data=False) if isinstance(source, (str, Path)) else source
    findings = [*_opset(model), *_ops(model), *_int64(model), *_qdq(model), *_dynamic_dims(model, profile)]
    return sorted(findings, key=lambda f: f.severity != "error")


def qdq_form(model: Any) -> list[Finding]:
    """TensorRT's explicit-quantization form alone, as `rtk quantize --target tensorrt` promises it (empty = the
    form holds): Q/DQ present, no integer operators, signed INT8 with zero-point 0, per-tensor activation scales,
    weight scales per output channel. Every finding is an error here, per-tensor weight scales included (TensorRT
    builds them, but they cost accuracy)."""
    if not has_qdq(model):
        return [Finding(severity="error", node="(model)",
                        message="no QuantizeLinear/DequantizeLinear nodes: the model is not quantized")]
    found = [f for f in _ops(model) if f.severity == "error"] + _qdq(model)
    return [f.model_copy(update={"severity": "error"}) for f in found]


def has_qdq(model: Any) -> bool:
    """True when the graph carries explicit quantization (QuantizeLinear / DequantizeLinear nodes)."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _opset(model: Any) -> list[Finding]:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        return [Finding(severity="error", node="(model)", message="no default-domain opset; re-export with rtk export")]
    if opset < OPSET_RANGE.start:
        return [Finding(severity="error", node="(model)",
                        message=f"opset {opset} is older than TensorRT's ONNX parser accepts "
                                f"({OPSET_RANGE.start}+); re-export with --opset 17")]
    if opset >= OPSET_RANGE.stop:
        return [Finding(severity="warning", node="(model)",
                        message=f"opset {opset} is newer than TensorRT 10's ONNX parser documents "
                                f"(up to {OPSET_RANGE.stop - 1}; TensorRT 11: 25); re-export with --opset 17 if "
                                "parsing fails")]
    return []


def _ops(model: Any) -> list[Finding]:
    found = []
    for node in model.graph.node:
        name = node.name or node.output[0]
        if node.op_type in REFUSED_OPS:
            found.append(Finding(severity="error", node=name,
                                 message=f"{node.op_type} is not implemented by TensorRT; quantize to QDQ with "
                                         "`rtk quantize --int8 --target tensorrt`"))
        elif node.domain not in ("", "ai.onnx"):
            found.append(Finding(severity="error", node=name,
                                 message=f"{node.domain}::{node.op_type} is a custom-domain op; TensorRT needs a "
                                         "plugin for it"))
        elif node.op_type not in SUPPORTED_OPS:
            found.append(Finding(severity="warning", node=name,
                                 message=f"{node.op_type} is outside rtk's table of ops checked for ResNet-style "
                                         "graphs; see TensorRT's ONNX operator support matrix"))
    return found


def _int64(model: Any) -> list[Finding]:
    from onnx import TensorProto, numpy_helper

    found = []
    for init in model.graph.initializer:
        if init.data_type != TensorProto.INT64:
            continue
        values = numpy_helper.to_array(init)
        if values.size and (values.min() < INT32.min or values.max() > INT32.max):
            found.append(Finding(severity="error", node=init.name,
                                 message="INT64 initialiser with values outside INT32; TensorRT casts INT64 "
                                         "weights to INT32 and these would overflow"))
        else:
            found.append(Finding(severity="warning", node=init.name,
                                 message="INT64 initialiser; TensorRT casts it to INT32 (harmless here, "
                                         "but the parser warns)"))
    return found


def _qdq(model: Any) -> list[Finding]:
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def const_array(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            attr = next((a for a in consts[name].attribute if a.name == "value"), None)
            return None if attr is None else numpy_helper.to_array(attr.t)
        return None

    def dtype_of(name: str) -> int | None:
        if name in inits:
            return inits[name].data_type
        if name in consts:
            attr = next((a for a in consts[name].attribute if a.name == "value"), None)
            return None if attr is None else attr.t.data_type
        return None

    found = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        name = node.name or node.output[0]
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        attrs = {a.name: a for a in node.attribute}
        if zp_name is None:
            quant_type = attrs["output_dtype"].i if "output_dtype" in attrs else TensorProto.UINT8
            if node.op_type == "DequantizeLinear":
                quant_type = dtype_of(node.input[0]) or TensorProto.INT8
        else:
            quant_type = dtype_of(zp_name)
        if quant_type is not None and quant_type != TensorProto.INT8:
            kind = TensorProto.DataType.Name(quant_type).lower()
            hint = ("quantized bias: quantize with QuantizeBias=False" if quant_type == TensorProto.INT32
                    else "TensorRT needs signed INT8")
            found.append(Finding(severity="error", node=name,
                                 message=f"{node.op_type} in {kind} ({hint}); re-quantize with "
                                         "`rtk quantize --int8 --target tensorrt`"))
        zp = const_array(zp_name) if zp_name else None
        if zp is not None and np.any(zp != 0):
            found.append(Finding(severity="error", node=name,
                                 message="non-zero zero-point; TensorRT quantization is symmetric (zero-point 0)"))
        scale = const_array(node.input[1])
        if scale is None:
            found.append(Finding(severity="error", node=name,
                                 message="scale is computed at run time; TensorRT needs a constant Q/DQ scale"))
            continue
        on_weights = node.input[0] in inits or node.input[0] in consts
        if scale.size > 1:
            found.extend(_per_channel(node, name, attrs, on_weights, consumers))
        elif on_weights and node.op_type == "DequantizeLinear":
            found.append(Finding(severity="warning", node=name,
                                 message="per-tensor weight scale; TensorRT builds it, but per-channel scales "
                                         "(axis 0) keep more accuracy"))
    return found


def _per_channel(node: Any, name: str, attrs: dict, on_weights: bool, consumers: dict) -> list[Finding]:
    if not on_weights and node.op_type == "QuantizeLinear":
        return [Finding(severity="error", node=name,
                        message="per-channel scale on an activation; TensorRT quantizes activations per tensor")]
    axis = attrs["axis"].i if "axis" in attrs else 1
    feeds_conv = any(c.op_type in ("Conv", "ConvTranspose") for c in consumers.get(node.output[0], []))
    if on_weights and feeds_conv and axis != 0:
        return [Finding(severity="error", node=name,
                        message=f"per-channel Conv weight scales on axis {axis}; TensorRT needs the "
                                "output-channel axis 0")]
    return []


def _dynamic_dims(model: Any, profile: BatchProfile | None) -> list[Finding]:
    found = []
    init_names = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in init_names:
            continue
        dims = inp.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            label = dim.dim_param or "?"
            if axis == 0 and profile is None:
                found.append(Finding(severity="warning", node=inp.name,
                                     message=f"dynamic batch '{label}' needs an optimization profile; give "
                                             "--min-batch/--opt-batch/--max-batch or --batch"))
            elif axis != 0:
                found.append(Finding(severity="error", node=inp.name,
                                     message=f"dynamic axis {axis} '{label}'; rtk builds profiles over the batch "
                                             "only: re-export with a fixed input size"))
    return found
