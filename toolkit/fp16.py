"""FP32 ONNX -> FP16 ONNX (weights and activations FP16, the model's input and output kept FP32), checked on CPU.

TensorRT 11 builds every network strongly typed: the ONNX's tensor types are the engine's, and the FP16 builder
flag is gone. rtk therefore puts FP16 in the ONNX and builds it strongly typed on TensorRT 10 as well, so both
majors build the same network from the same file.

The converter is onnxconverter-common's `float16.convert_float_to_float16` (Microsoft, pure Python; ONNX Runtime's
transformer optimizer carries a modified copy of the same module). NVIDIA ModelOpt's AutoCast was tried on rtk's
ResNet50 on this machine: it made the same graph (all 169 nodes FP16, one Cast at the input and one at the
output) in 8.3 s against 0.9 s, and its `[onnx]` extra pins onnx~=1.21 and onnxruntime-gpu~=1.24 with cupy and
lief, which cannot install next to rtk's onnx and onnxruntime. What AutoCast adds, keeping nodes whose measured
ranges overflow FP16 in FP32, does not arise in a ResNet50 (batch norm is folded into the convolutions and
activations stay far below 65504); the CPU check below would catch an overflow as non-finite logits.

The check runs both models on ONNX Runtime's CPU execution provider on the same inputs, but ONNX Runtime 1.32
has no FP16 Conv kernel for x86 CPUs, and its fallback (InsertCastTransformer, forcing FP32 on CPU) does not
just wrap each FP16 node in Casts: it removes the Casts between nodes, the model's own input Cast included, so
the FP16 ONNX as written runs in FP32 with only its weights rounded to FP16 (a logit of 360000 stays 360000,
where FP16 gives inf). OpenVINO's CPU plugin, asked for f16 on a CPU without AVX512-FP16, runs bf16 instead.
ONNX's reference evaluator does run the FP16 tensors as written, at about 8 s an image for ResNet50 at 64 px.
So the check runs `cpu_form(fp16)`: the same graph in FP32 arithmetic with every FP16 tensor rounded to FP16
by an explicit Cast pair that ONNX Runtime keeps. That is close to TensorRT's FP16 engine and, if anything,
harsher: TensorRT rounds once per fused layer rather than once per ONNX node, and accumulates in FP32 or FP16
depending on the kernel it picks. tests/test_fp16.py checks the CPU form against the reference evaluator.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from toolkit.errors import RtkError
from toolkit.io import atomic_outputs, sha256_file
from toolkit.onnx_file import load_onnx, read_onnx_meta, write_onnx_meta
from toolkit.preprocess import sample_inputs

FP16_MAX = 65504.0
FP16_TINY = 2.0 ** -24  # the smallest FP16 subnormal
MIN_COSINE = 0.999      # mean per-image cosine of the logits, FP16 ONNX vs FP32 ONNX, for the check to pass
CHECK_IMAGES = 16
CPU_RUNTIME = ("ONNX Runtime {version} CPU EP on the FP16 ONNX's CPU form: FP16 tensors between nodes, "
               "FP32 arithmetic inside them")


class Fp16Check(BaseModel):
    """The FP16 ONNX against its FP32 source on the same inputs on CPU; truthy when it passed."""

    inputs: str
    images: int
    cosine: float
    max_abs_diff: float
    agreement: float
    finite: bool
    runtime: str
    passed: bool

    def __bool__(self) -> bool:
        return self.passed


class Fp16Onnx(BaseModel):
    """How an FP16 ONNX was made from its FP32 source and how it compared on CPU (`output` once written)."""

    source: str
    source_sha256: str
    output: str | None = None
    converter: str
    nodes: int
    weights_above_fp16_max: int
    weights_below_fp16_tiny: int
    seconds: float
    check: Fp16Check


def is_fp16_onnx(model) -> bool:
    """True when the graph's float initializers are FP16 (an ONNX this module, or another converter, made)."""
    from onnx import TensorProto

    kinds = {init.data_type for init in model.graph.initializer}
    return TensorProto.FLOAT16 in kinds and TensorProto.FLOAT not in kinds


def fp16_model(model, *, source: Path, check_inputs: np.ndarray | None = None,
               inputs_label: str | None = None):
    """(the FP16 ModelProto of an FP32 one read from `source`, Fp16Onnx): converted and checked on CPU, in memory.

    `check_inputs` (N x C x H x W, preprocessed) are what both models run on; by default CHECK_IMAGES of the
    built-in synthetic images with the model's preprocessing (the images export's parity check uses).
    """
    from onnx import TensorProto, numpy_helper
    from onnxconverter_common import __version__ as occ_version
    from onnxconverter_common.float16 import convert_float_to_float16

    started = time.perf_counter()
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise RtkError(f"{source} is INT8 (it has Q/DQ nodes); make FP16 from the FP32 ONNX")
    if is_fp16_onnx(model):
        raise RtkError(f"{source} is already FP16; use it as it is")
    meta = read_onnx_meta(source, model)
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == TensorProto.FLOAT]
    above = sum(int(np.count_nonzero(np.abs(w) > FP16_MAX)) for w in weights)
    below = sum(int(np.count_nonzero((w != 0) & (np.abs(w) < FP16_TINY))) for w in weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one "will be truncated" line per clamped tensor; counted above
        fp16 = convert_float_to_float16(model, min_positive_val=FP16_TINY, max_finite_val=FP16_MAX,
                                        keep_io_types=True)
    converter = f"onnxconverter-common {occ_version}"
    out_meta = meta.derived("fp16", parent=source, converter=converter).model_copy(update={"precision": "fp16"})
    write_onnx_meta(fp16, out_meta)
    if check_inputs is None:
        check_inputs, inputs_label = sample_inputs(meta.preprocess, None, CHECK_IMAGES)
    check = check_on_cpu(fp16, model, check_inputs, label=inputs_label or "given inputs")
    return fp16, Fp16Onnx(source=str(source), source_sha256=sha256_file(source), converter=converter,
                          nodes=len(fp16.graph.node), weights_above_fp16_max=above, weights_below_fp16_tiny=below,
                          seconds=time.perf_counter() - started, check=check)


def fp16_onnx_from_onnx(source: str | Path, output: str | Path, *, check_inputs: np.ndarray | None = None,
                        inputs_label: str | None = None) -> Fp16Onnx:
    """Write the FP16 form of an FP32 ONNX to `output`, only if it passes the CPU check (see `fp16_model`)."""
    import onnx

    source, output = Path(source), Path(output)
    if source.resolve() == output.resolve():
        raise RtkError(f"-o {output} is the input model; choose another output name")
    fp16, made = fp16_model(load_onnx(source), source=source, check_inputs=check_inputs, inputs_label=inputs_label)
    if not made.check:
        raise RtkError(f"{source}: its FP16 form differs from it on CPU (logits cosine {made.check.cosine:.5f}, "
                       f"finite: {made.check.finite}; needs >= {MIN_COSINE}); build this model in FP32")
    with atomic_outputs(output) as (tmp,):
        onnx.save(fp16, str(tmp))
    return made.model_copy(update={"output": str(output)})


def check_on_cpu(fp16, fp32, images: np.ndarray, *, label: str) -> Fp16Check:
    """The FP16 model (its CPU form) against the FP32 one on ONNX Runtime's CPU EP over the same images."""
    import onnxruntime as ort

    a, b = cpu_logits(cpu_form(fp16), images), cpu_logits(fp32, images)
    finite, cosine = bool(np.isfinite(a).all()), 0.0
    if finite:
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        norms = np.maximum(np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1), 1e-12)
        cosine = float(((a64 * b64).sum(1) / norms).mean())
    return Fp16Check(inputs=label, images=len(images), cosine=cosine,
                     max_abs_diff=float(np.abs(a - b).max()) if finite else FP16_MAX,
                     agreement=float((a.argmax(1) == b.argmax(1)).mean() * 100),
                     finite=finite, runtime=CPU_RUNTIME.format(version=ort.__version__),
                     passed=finite and cosine >= MIN_COSINE)


def cpu_logits(model, images: np.ndarray) -> np.ndarray:
    """Logits of an ONNX ModelProto on ONNX Runtime's CPU EP (BASIC graph optimisation), batch by batch."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    step = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else len(images)
    return np.concatenate([session.run(None, {inp.name: images[i:i + step]})[0]
                           for i in range(0, len(images), step)]).astype(np.float32)


def cpu_form(fp16):
    """The FP16 ModelProto as ONNX Runtime's CPU EP can run it faithfully: FP32 nodes, each FP16 tensor of the
    original rounded to FP16 and back by a Cast pair, FP16 weights widened to FP32 (exactly), FP16 graph inputs
    and outputs made FP32. For graphs without subgraphs (If/Loop), which is what rtk's classifiers are."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(fp16)
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}

    def widened(tensor):
        if tensor.data_type != TensorProto.FLOAT16:
            return tensor
        return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name)

    def rounded(fp32_name: str, name: str) -> list:
        return [helper.make_node("Cast", [fp32_name], [f"{name}.fp16"], to=TensorProto.FLOAT16),
                helper.make_node("Cast", [f"{name}.fp16"], [name], to=TensorProto.FLOAT)]

    nodes = []
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Cast" and attrs["to"].i == TensorProto.FLOAT16:
            nodes += rounded(node.input[0], node.output[0])
            continue
        if node.op_type == "Constant" and "value" in attrs:
            attrs["value"].t.CopyFrom(widened(attrs["value"].t))
        outputs = [f"{o}.fp32" if types.get(o) == TensorProto.FLOAT16 else o for o in node.output]
        copy = helper.make_node(node.op_type, list(node.input), outputs, name=node.name, domain=node.domain)
        copy.attribute.extend(node.attribute)
        nodes.append(copy)
        for original, out in zip(node.output, outputs):
            if out != original:
                nodes += rounded(out, original)
    for i, init in enumerate(graph.initializer):
        graph.initializer[i].CopyFrom(widened(init))
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    del graph.node[:], graph.value_info[:]
    graph.node.extend(nodes)
    return model
