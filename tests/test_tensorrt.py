"""TensorRT: the CPU-side check, refusals and sidecar rules; engine build and run where TensorRT and a GPU exist."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolkit.backends import read_meta
from toolkit.backends.tensorrt import BatchProfile, check_compatible, check_onnx, qdq_form
from toolkit.backends.tensorrt.sidecar import sidecar_path, timing_cache_bytes
from toolkit.compile import compile_model
from toolkit.errors import RtkError
from toolkit.fp16 import fp16_onnx_from_onnx
from toolkit.settings import CompileSettings

from qdq import ort_quantize, trt_form_qdq

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def trt_form_onnx(random_onnx, tiny_data, tmp_path_factory):
    """Signed, symmetric, per-channel-weight QDQ: the form TensorRT's explicit quantization takes."""
    return trt_form_qdq(random_onnx, tmp_path_factory.mktemp("q") / "trt.onnx", tiny_data / "train")


@pytest.fixture(scope="module")
def uint8_onnx(random_onnx, tiny_data, tmp_path_factory):
    """uint8 activations with zero-points (what NNCF's ONNX PTQ or ORT with QUInt8 writes), quantized biases."""
    return ort_quantize(random_onnx, tmp_path_factory.mktemp("q") / "u8.onnx", tiny_data / "train",
                        activation_type="QUInt8", weight_type="QInt8")


def test_check_passes_trt_form_int8(trt_form_onnx, cli, tmp_path):
    assert [f for f in check_onnx(trt_form_onnx, profile=BatchProfile()) if f.severity == "error"] == []
    res = cli("compile", trt_form_onnx, "--target", "tensorrt", "--check-only", "--json", tmp_path / "c.json")
    assert res.exit_code == 0, res.stderr
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["precision"] == "int8" and report["passed"] and report["profile"] == {"min": 1, "opt": 1, "max": 8}


def test_check_flags_uint8_qdq(uint8_onnx, cli, tmp_path):
    errors = [f for f in check_onnx(uint8_onnx) if f.severity == "error"]
    messages = {f.message.split(";")[0] for f in errors}
    assert "QuantizeLinear in uint8 (TensorRT needs signed INT8)" in messages
    assert any("zero-point" in m for m in messages) and any("int32" in m for m in messages)
    res = cli("compile", uint8_onnx, "--target", "tensorrt", "--check-only", "--json", tmp_path / "c.json")
    assert res.exit_code == 1 and "TensorRT would refuse" in res.stderr
    assert not json.loads((tmp_path / "c.json").read_text())["passed"]


def test_check_fp32_dynamic_batch_needs_profile(random_onnx):
    findings = check_onnx(random_onnx)
    assert [f.severity for f in findings] == ["warning"] and "optimization profile" in findings[0].message
    assert check_onnx(random_onnx, profile=BatchProfile(min=1, opt=4, max=8)) == []


def _graph(nodes, inits, inp_shape, opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, inp_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_check_flags_ops_int64_dims_opset_and_weight_axis():
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "w")
    scale = numpy_helper.from_array(np.full(3, 0.1, np.float32), "s")
    zp = numpy_helper.from_array(np.zeros(3, np.int8), "z")
    big = numpy_helper.from_array(np.array([2**40], np.int64), "big")
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"], name="dq_w", axis=1),
             helper.make_node("Conv", ["x", "wf"], ["c"], name="conv"),
             helper.make_node("Erf", ["c"], ["e"], name="erf"),
             helper.make_node("QLinearConv", ["e"], ["y"], name="qconv")]
    model = _graph(nodes, [w, scale, zp, big], ["n", 3, "h", 8], opset=8)
    found = {(f.severity, f.node) for f in check_onnx(model, profile=BatchProfile())}
    assert {("error", "(model)"), ("error", "dq_w"), ("warning", "erf"), ("error", "qconv"), ("error", "big"),
            ("error", "x")} <= found
    assert ("warning", "x") not in found  # the batch axis is covered by the profile


def test_int8_without_qdq_refused(random_onnx, tmp_path, cli):
    out = tmp_path / "m.engine"
    res = cli("compile", random_onnx, "--target", "tensorrt", "--precision", "int8", "-o", out)
    assert res.exit_code == 2 and "rtk quantize --int8 --target tensorrt" in res.stderr
    assert not out.exists() and not sidecar_path(out).exists()


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is not installed")
def test_missing_tensorrt_names_the_extras(random_onnx, tmp_path, cli):
    out = tmp_path / "m.engine"
    res = cli("compile", random_onnx, "--target", "tensorrt", "-o", out)
    assert res.exit_code == 2 and not out.exists()
    assert "needs TensorRT 10.x or 11.x: pip install 'rtk[tensorrt-cu13]' (NVIDIA driver 580+) or " in res.stderr
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"not an engine")
    res = cli("bench", engine)
    assert res.exit_code == 2 and "rtk[tensorrt-cu12]" in res.stderr


def test_engine_from_other_tensorrt_or_gpu_refused(tmp_path):
    side = {"tensorrt": "10.3.0", "gpu": "NVIDIA A10", "compute_capability": "8.6"}
    check_compatible(side, tensorrt="10.3.0", gpu="NVIDIA A10", compute_capability="8.6", path=tmp_path / "m.engine")
    with pytest.raises(RtkError, match="built with TensorRT 10.3.0, this machine has 10.8.0; .*--version-compatible"):
        check_compatible(side, tensorrt="10.8.0", gpu="NVIDIA A10", compute_capability="8.6", path=tmp_path)
    with pytest.raises(RtkError, match="built for NVIDIA A10 .*this GPU is NVIDIA L4"):
        check_compatible(side, tensorrt="10.3.0", gpu="NVIDIA L4", compute_capability="8.9", path=tmp_path)


def test_version_compatible_engine_runs_on_later_tensorrt_only(tmp_path):
    side = {"tensorrt": "10.8.0.43", "version_compatible": True, "gpu": "NVIDIA L4", "compute_capability": "8.9"}
    for later in ("10.8.0.43", "10.16.1.11", "11.4.0.106"):
        check_compatible(side, tensorrt=later, gpu="NVIDIA L4", compute_capability="8.9", path=tmp_path)
    with pytest.raises(RtkError, match=r"version-compatible: it runs on 10.8.0.43 or newer\), this machine has 10.3.0"):
        check_compatible(side, tensorrt="10.3.0", gpu="NVIDIA L4", compute_capability="8.9", path=tmp_path)


def test_timing_cache_from_elsewhere_is_ignored_with_a_warning(tmp_path):
    here = {"tensorrt": "11.4.0.106", "gpu": "NVIDIA L4", "compute_capability": "8.9"}
    cache = tmp_path / "timing.cache"
    assert timing_cache_bytes(cache, here) == (b"", None)
    cache.write_bytes(b"timings")
    start, warning = timing_cache_bytes(cache, here)
    assert start == b"" and "made without a record of where it was made" in warning
    sidecar_path(cache).write_text(json.dumps({**here, "tensorrt": "10.16.1.11"}))
    start, warning = timing_cache_bytes(cache, here)
    assert start == b"" and warning == ("timing cache timing.cache was made by TensorRT 10.16.1.11 on NVIDIA L4; this "
                                        "is TensorRT 11.4.0.106 on NVIDIA L4: starting a new one (the old one is "
                                        "replaced)")
    sidecar_path(cache).write_text(json.dumps(here))
    assert timing_cache_bytes(cache, here) == (b"timings", None)


def test_fp16_check_only_makes_and_checks_the_fp16_graph(random_onnx, tmp_path, cli):
    """--precision fp16 --check-only on a CPU: the FP16 ONNX is made and compared in memory, nothing is written."""
    res = cli("compile", random_onnx, "--target", "tensorrt", "--precision", "fp16", "--check-only",
              "--json", tmp_path / "c.json")
    assert res.exit_code == 0, res.stderr
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["precision"] == "fp16" and report["passed"] and [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_an_fp16_onnx_compiles_as_fp16(random_onnx, tmp_path, cli):
    fp16 = tmp_path / "m.fp16.onnx"
    fp16_onnx_from_onnx(random_onnx, fp16)
    assert compile_model(fp16, target="tensorrt", settings=CompileSettings(check_only=True)).precision == "fp16"
    res = cli("compile", fp16, "--target", "tensorrt", "--precision", "fp32", "--check-only")
    assert res.exit_code == 2 and "is FP16; compile it with --precision fp16 or auto" in res.stderr


def test_fp16_without_onnxconverter_common_names_the_extra(random_onnx, cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)   # as if not installed: import fails
    res = cli("compile", random_onnx, "--target", "tensorrt", "--precision", "fp16", "--check-only")
    assert res.exit_code == 2, res.stderr
    assert "needs onnxconverter_common" in res.stderr and "pip install 'rtk[export]'" in res.stderr


def test_engine_meta_comes_from_sidecar(random_onnx, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    meta = read_meta(random_onnx)
    sidecar_path(engine).write_text(json.dumps({"tensorrt": "10.3.0", "meta": meta.model_dump(mode="json")}))
    assert read_meta(engine).class_names == meta.class_names


def test_profile_and_static_batch_rules(random_onnx, tmp_path):
    with pytest.raises(RtkError, match="min <= opt <= max"):
        compile_model(random_onnx, target="tensorrt",
                      settings=CompileSettings(check_only=True, min_batch=4, opt_batch=2, max_batch=8))
    with pytest.raises(ValueError, match="not both"):
        CompileSettings(check_only=True, batch=2, min_batch=1)
    result = compile_model(random_onnx, target="tensorrt", settings=CompileSettings(check_only=True, batch=4))
    assert result.profile == BatchProfile(min=4, opt=4, max=4) and result.passed and result.output is None


def _gpu_missing() -> str | None:
    """Why the engine tests cannot run here (the message rtk itself gives), or None on a GPU machine."""
    from toolkit.backends.tensorrt import import_tensorrt, require_gpu

    try:
        import_tensorrt()
        require_gpu()
    except RtkError as exc:
        return str(exc)
    return None


GPU_MISSING = _gpu_missing()
needs_gpu = pytest.mark.skipif(GPU_MISSING is not None, reason=f"needs TensorRT and an NVIDIA GPU: {GPU_MISSING}")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_builds_and_matches_onnx(random_onnx, tiny_data, tmp_path, precision):
    from toolkit.settings import ValidateSettings
    from toolkit.validate import validate

    out = tmp_path / f"{precision}.engine"
    result = compile_model(random_onnx, target="tensorrt", output=out, settings=CompileSettings(
        precision=precision, min_batch=1, opt_batch=4, max_batch=8, timing_cache=tmp_path / "timing.cache"))
    side = json.loads(sidecar_path(out).read_text())
    assert side["precision"] == precision and side["source_sha256"] == result.source_sha256
    assert side["strongly_typed"] and side["tensorrt_major"] in (10, 11) and side["version_compatible"] is False
    assert side["profile"]["max"][0] == 8 and (tmp_path / "timing.cache").is_file()
    assert json.loads(sidecar_path(tmp_path / "timing.cache").read_text())["gpu"] == side["gpu"]
    if precision == "fp16":   # built from the FP16 ONNX written beside it, checked on CPU first
        assert side["fp16_onnx"]["file"] == "fp16.fp16.onnx" and side["fp16_onnx"]["cpu_check"]["passed"]
        assert (tmp_path / "fp16.fp16.onnx").is_file()
    report = validate([out], tiny_data / "val", reference=random_onnx, settings=ValidateSettings(batch_size=8),
                      measure_latency=False)
    assert report.cosine > (0.9999 if precision == "fp32" else 0.999)


@pytest.mark.gpu
@needs_gpu
def test_int8_engine_from_qdq_runs_with_phases(trt_form_onnx, tmp_path):
    from toolkit.backends import open_runner

    out = tmp_path / "int8.engine"
    compile_model(trt_form_onnx, target="tensorrt", output=out)
    with open_runner(out) as runner:
        x = np.zeros((2, 3, 64, 64), np.float32)
        assert runner.infer(x).shape == (2, 4)
        phases = runner.infer_phases(x)
        assert set(phases) == {"h2d", "compute", "d2h"} and phases["compute"] > 0


def test_qdq_form_wants_per_channel_weights_and_qdq():
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "w")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zp = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"], name="dq_w"),
             helper.make_node("Conv", ["x", "wf"], ["y"], name="conv")]
    model = _graph(nodes, [w, scale, zp], [1, 3, 8, 8])
    assert [(f.severity, f.node) for f in check_onnx(model)] == [("warning", "dq_w")]   # TensorRT builds it
    assert [(f.severity, f.node) for f in qdq_form(model)] == [("error", "dq_w")]      # rtk's TensorRT form does not
    plain = _graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], [], [1, 3, 8, 8])
    assert "not quantized" in qdq_form(plain)[0].message


def test_gpu_check_table_reads_what_the_commands_write(random_onnx, tiny_data, tmp_path, cli):
    """gpu_check.sh's table over the JSON that `rtk compile/validate/bench --json` really write (an OpenVINO IR
    here, so no per-phase GPU times: those columns show a dash)."""
    from rich.console import Console

    from benchmarks.gpu_table import PRECISIONS, gpu_table

    xml = tmp_path / "ov" / "model.xml"
    assert cli("compile", random_onnx, "--target", "openvino", "-o", xml, "--json", tmp_path / "c.json").exit_code == 0
    assert cli("validate", xml, "--data", tiny_data / "val", "--reference", random_onnx,
               "--json", tmp_path / "v.json").exit_code == 0
    assert cli("bench", xml, "--batch", "1,2", "--runs", "5", "--json", tmp_path / "b.json").exit_code == 0
    for precision in PRECISIONS:
        for kind, name in (("compile", "c"), ("validate", "v"), ("bench", "b")):
            (tmp_path / f"{kind}.{precision}.json").write_text((tmp_path / f"{name}.json").read_text())
    table = gpu_table(tmp_path)
    assert table.row_count == 2 * len(PRECISIONS) and table.title == "TensorRT on CPU"
    console = Console(record=True, width=200)
    console.print(table)
    text = console.export_text()
    assert all(p in text for p in PRECISIONS) and "100.00" in text and "—" in text
