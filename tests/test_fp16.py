"""FP16 ONNX from an FP32 ONNX: the graph TensorRT builds strongly typed, checked on CPU before any GPU sees it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolkit.backends import read_meta
from toolkit.errors import RtkError
from toolkit.fp16 import cpu_form, cpu_logits, fp16_onnx_from_onnx, is_fp16_onnx


@pytest.fixture(scope="module")
def accurate_onnx(accurate_ckpt, tiny_data, tmp_path_factory):
    from toolkit.export import export_onnx
    from toolkit.models import load_model

    path = tmp_path_factory.mktemp("fp16") / "accurate.onnx"
    model, meta = load_model(accurate_ckpt)
    export_onnx(model, meta, path, data=tiny_data / "val", parent=accurate_ckpt)
    return path


@pytest.fixture(scope="module")
def fp16_onnx(accurate_onnx):
    out = accurate_onnx.with_suffix(".fp16.onnx")
    return out, fp16_onnx_from_onnx(accurate_onnx, out)


def _model(nodes, inits, shape, out_shape, name="x"):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fp16_onnx_is_fp16_inside_fp32_outside_and_validates(fp16_onnx, accurate_onnx, tiny_data):
    from toolkit.validate import validate

    out, result = fp16_onnx
    model = onnx.load(str(out))
    assert is_fp16_onnx(model)
    assert {v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)} == {TensorProto.FLOAT}
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2 and casts[0].input[0] == model.graph.input[0].name   # FP32 -> FP16 once, and back
    assert result.check.passed and result.check.finite and result.check.cosine > 0.9999
    assert read_meta(out).precision == "fp16" and read_meta(out).class_names == read_meta(accurate_onnx).class_names
    report = validate([out], tiny_data / "val", reference=accurate_onnx, measure_latency=False)
    assert report.reference.top1 > 90 and report.drop_pt <= 0.1 and report.cosine > 0.9999


def test_refuses_int8_fp16_and_its_own_input(fp16_onnx, accurate_onnx, tmp_path):
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s"],
                                                                                      ["logits"])]
    qdq = tmp_path / "int8.onnx"
    onnx.save(_model(nodes, [scale], ["n", 4], ["n", 4]), str(qdq))
    with pytest.raises(RtkError, match="is INT8"):
        fp16_onnx_from_onnx(qdq, tmp_path / "x.onnx")
    with pytest.raises(RtkError, match="already FP16"):
        fp16_onnx_from_onnx(fp16_onnx[0], tmp_path / "y.onnx")
    with pytest.raises(RtkError, match="is the input model"):
        fp16_onnx_from_onnx(accurate_onnx, accurate_onnx)
    assert [p.name for p in tmp_path.iterdir()] == ["int8.onnx"]


@pytest.mark.parametrize("target", ["onnxruntime", "openvino", "tensorrt"])
def test_quantize_refuses_an_fp16_onnx(fp16_onnx, tiny_data, cli, tmp_path, target):
    result = cli("quantize", "--int8", fp16_onnx[0], "--calib", tiny_data / "train", "--target", target,
                 "-o", tmp_path / "q.onnx")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "is FP16; quantize the FP32 ONNX" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cpu_form_rounds_every_tensor_to_fp16():
    """ONNX Runtime runs the FP16 ONNX itself in FP32 (1 + 1e-3 stays 1.001); its CPU form rounds each tensor
    to FP16 (1.0009765625) exactly as ONNX's reference evaluator does, running the FP16 tensors as written."""
    from onnx.reference import ReferenceEvaluator
    from onnxconverter_common.float16 import convert_float_to_float16

    inits = [numpy_helper.from_array(np.array([1e-3], np.float32), "b"),
             numpy_helper.from_array(np.array([3.0], np.float32), "k")]
    nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Mul", ["a", "k"], ["logits"])]
    fp16 = convert_float_to_float16(_model(nodes, inits, [1, 4], [1, 4]), keep_io_types=True)
    x = np.array([[1.0, 0.1, 100.0, 2.5e4]], np.float32)
    expected = ReferenceEvaluator(fp16).run(None, {"x": x})[0]
    assert expected[0, 0] == np.float32(np.float16(np.float16(1.001) * np.float16(3))) and np.isinf(expected[0, 3])
    np.testing.assert_array_equal(cpu_logits(cpu_form(fp16), x), expected)
    assert not np.isinf(cpu_logits(fp16, x)).any()    # the FP16 ONNX as ONNX Runtime's CPU EP runs it


def test_overflow_in_fp16_fails_the_check_and_writes_nothing(tmp_path):
    """A classifier whose logits exceed FP16's 65504: its FP16 form gives inf, so nothing is written."""
    w = numpy_helper.from_array(np.full((3, 4), 6e4, np.float32), "w")
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["logits"])]
    source = tmp_path / "big.onnx"
    onnx.save(_model(nodes, [w], ["n", 3, 16, 16], ["n", 4]), str(source))
    out = tmp_path / "big.fp16.onnx"
    with pytest.raises(RtkError, match="its FP16 form differs from it on CPU .*finite: False"):
        fp16_onnx_from_onnx(source, out, check_inputs=np.full((2, 3, 16, 16), 2.0, np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["big.onnx"]
