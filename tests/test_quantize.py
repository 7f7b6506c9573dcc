"""rtk quantize: TensorRT's QDQ form, NNCF INT8 for CPU targets, accuracy control, calibration checks, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from toolkit.backends import read_meta
from toolkit.quantize.calibration import balanced_order, calibration_set, list_images, stats_warnings, write_list
from toolkit.isa import effective_tier
from toolkit.quantize.nncf_cpu import cpu_settings, float_layers
from toolkit.quantize import quantize_int8
from toolkit.settings import QuantizeSettings
from toolkit.backends.tensorrt import qdq_form
from toolkit.validate import mean_cosine, validate

SMALL = {"subset": 16, "allow_small": True, "bench_runs": 5}


def small(**overrides) -> QuantizeSettings:
    return QuantizeSettings(**{**SMALL, **overrides})


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quantize")


@pytest.fixture(scope="module")
def cpu_int8(work, random_onnx, tiny_data):
    out = work / "cpu.int8.onnx"
    return quantize_int8(random_onnx, output=out, calib=tiny_data / "train", target="onnxruntime",
                         val=tiny_data / "val", settings=small())


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _val_batch(tiny_data: Path, onnx_path: Path) -> np.ndarray:
    from toolkit.data import batches, image_folder

    data = image_folder(tiny_data / "val", read_meta(onnx_path).preprocess)
    return next(batches(data, 32))[0]


def test_tensorrt_target_is_signed_symmetric_per_channel_qdq(work, random_onnx, tiny_data):
    out = work / "model.trt-int8.onnx"
    result = quantize_int8(random_onnx, output=out, calib=tiny_data / "train", target="tensorrt", settings=small())
    model = onnx.load(str(out))
    inits = {t.name: t for t in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 100
    for node in qdq:
        zp = inits[node.input[2]]
        assert zp.data_type == TensorProto.INT8, node.name
        assert not numpy_helper.to_array(zp).any(), node.name
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    producers = {n.output[0]: n for n in model.graph.node}
    for conv in convs:
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear", conv.name
        weight = numpy_helper.to_array(inits[dq.input[0]])
        scale = numpy_helper.to_array(inits[dq.input[1]])
        assert weight.dtype == np.int8 and scale.shape == (weight.shape[0],), conv.name
        assert next((a.i for a in dq.attribute if a.name == "axis"), 1) == 0
    assert qdq_form(model) == []
    assert result.speedup is None and "not measurable" in result.speed_note
    meta = read_meta(out)
    assert meta.precision == "int8"
    assert meta.extra["quantization"]["target"] == "tensorrt"
    assert meta.extra["quantization"]["calibration"]["images"] == 16


def test_trt_checker_rejects_nncf_cpu_form(cpu_int8):
    problems = {f.message.split(";")[0] for f in qdq_form(onnx.load(cpu_int8.output))}
    assert "QuantizeLinear in uint8 (TensorRT needs signed INT8)" in problems


def test_cpu_target_qdq_runs_close_to_fp32(cpu_int8, random_onnx, tiny_data):
    model = onnx.load(cpu_int8.output)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = _val_batch(tiny_data, random_onnx)
    cos = mean_cosine(_logits(Path(cpu_int8.output), x), _logits(random_onnx, x))
    assert cos > 0.98, cos   # measured 0.998-0.999; a broken calibration (wrong scales) gives < 0.9
    assert cpu_int8.size_ratio > 3.0
    assert 0 < cpu_int8.latency_int8_ms < 1e4 and 0 < cpu_int8.latency_fp32_ms < 1e4     # measured, in ms
    assert cpu_int8.speedup == pytest.approx(cpu_int8.latency_fp32_ms / cpu_int8.latency_int8_ms)
    assert cpu_int8.top1_fp32 is not None and cpu_int8.drop_pt == pytest.approx(cpu_int8.top1_fp32 - cpu_int8.top1_int8)
    q = read_meta(Path(cpu_int8.output)).extra["quantization"]
    assert q["settings"]["overflow_fix"] == cpu_settings().overflow_fix
    assert q["settings"]["fast_bias_correction"] is True     # NNCF's default, on both backends
    assert q["calibration"]["per_class"] == {name: 4 for name in q["calibration"]["per_class"]}
    assert q["facts"]["speedup"] == pytest.approx(cpu_int8.speedup)


def _weight_levels(model: onnx.ModelProto) -> int:
    """The largest |integer level| any quantized weight uses: 127 with all 8 bits, 64 with NNCF's 7-bit overflow fix
    (QuantizeLinear of a float initializer, per-channel on axis 0, or an int8 initializer DequantizeLinear reads)."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    widest = 0
    for n in model.graph.node:
        w = inits.get(n.input[0])
        if w is None or w.ndim < 2:
            continue
        if n.op_type == "DequantizeLinear" and w.dtype == np.int8:
            widest = max(widest, int(np.abs(w.astype(np.int16)).max()))
        elif n.op_type == "QuantizeLinear" and w.dtype == np.float32:
            scale = inits[n.input[1]].reshape(-1, *[1] * (w.ndim - 1))
            widest = max(widest, int(np.abs(np.rint(w / scale)).max()))
    return widest


def test_isa_quantizes_for_the_deployment_cpu_whatever_this_one_is(work, random_onnx, tiny_data):
    """--isa picks NNCF's overflow fix by the tier that will run the model: 7-bit weights for AVX2 (no VNNI, int16
    pair sums could saturate), all 8 bits for a VNNI tier, on this CPU whichever it is; the record names both."""
    here = cpu_settings().built_on
    levels = {}
    for tier, fix in (("AVX2", "enable"), ("AVX512_CORE_VNNI", "disable")):
        out = work / f"for-{tier}.int8.onnx"
        result = quantize_int8(random_onnx, output=out, calib=tiny_data / "train", target="onnxruntime",
                               settings=small(isa=tier.lower(), bench_runs=0))
        s = read_meta(out).extra["quantization"]["settings"]
        assert (s["isa"], s["built_on"], s["overflow_fix"]) == (tier, here, fix) and result.settings == s
        levels[tier] = _weight_levels(onnx.load(out))
    assert levels["AVX2"] <= 64 and levels["AVX512_CORE_VNNI"] >= 126, levels


def test_accuracy_control_reverts_layers_and_its_drop_matches_validate(work, fragile_ckpt, tiny_data):
    """On a model whose logits plain INT8 disturbs (calibrated on 4 images, it loses top-1 on tiny val), a bound of
    0 pt makes accuracy control revert layers to float, which must show in the graph.
    (ONNX model: NNCF 3.4 ranks layers by logits MSE only on its OpenVINO backend; rtk ranks by per-image top-1.)"""
    from toolkit.export import export_onnx
    from toolkit.models import load_model

    fp32 = work / "fragile.onnx"
    model, meta = load_model(fragile_ckpt)
    export_onnx(model, meta, fp32, data=tiny_data / "val", parent=fragile_ckpt)
    out = work / "aa.int8.onnx"
    result = quantize_int8(fp32, output=out, calib=tiny_data / "train", target="onnxruntime",
                           val=tiny_data / "val", settings=small(subset=4, max_drop=0.0))
    control = result.accuracy_control
    assert control is not None and control.nncf_drop_pt > 0       # the bound was not met without reverting
    assert control.reverted_layers and control.reverted_layers == float_layers(onnx.load(str(out)))
    assert f"{len(control.reverted_layers)} layers reverted to float" in control.message
    report = validate([out], tiny_data / "val", reference=fp32, measure_latency=False)
    assert result.drop_pt == pytest.approx(report.drop_pt) and result.drop_pt <= 0.0
    assert result.top1_int8 == pytest.approx(report.top1)
    assert read_meta(out).extra["quantization"]["reverted_layers"] == control.reverted_layers


def test_openvino_ir_input_gives_int8_ir_and_records_random_calibration(work, random_onnx, cli):
    from toolkit.backends.openvino import ir_from_onnx, read_model

    ir = work / "fp32" / "model.xml"
    ir_from_onnx(random_onnx, ir, meta=read_meta(random_onnx))
    out = work / "int8" / "model.xml"
    out.parent.mkdir()
    res = cli("quantize", "--int8", ir, "--calib", "random", "--subset", "4", "--target", "openvino", "--bench-runs", "5",
              "-o", out, "--json", work / "ir.json")
    assert res.exit_code == 0, res.stderr
    ops = {op.get_type_name() for op in read_model(out).get_ops()}
    assert "FakeQuantize" in ops and out.with_suffix(".bin").is_file()
    result = json.loads((work / "ir.json").read_text())
    assert result["size_ratio"] > 2.5 and result["measured_on"] == "openvino"
    assert result["speedup"] == pytest.approx(result["latency_fp32_ms"] / result["latency_int8_ms"])
    assert read_meta(out).extra["quantization"]["facts"]["latency_int8_ms"] == result["latency_int8_ms"]
    assert result["measured_isa"] == effective_tier("openvino") is not None
    meta = read_meta(out)
    assert meta.precision == "int8"
    assert meta.extra["quantization"]["calibration"]["source"] == "random"
    assert meta.extra["quantization"]["calibration"]["images"] == 4


def test_onnx_to_int8_ir_for_openvino_matches_fp32_on_openvino(work, random_onnx, tiny_data):
    from toolkit.backends.openvino import read_model

    out = work / "from-onnx" / "model.int8.xml"
    out.parent.mkdir()
    result = quantize_int8(random_onnx, output=out, calib=tiny_data / "train", target="openvino",
                           val=tiny_data / "val", settings=small())
    ops = {op.get_type_name() for op in read_model(out).get_ops()}
    # NNCF worked on the folded graph (ov.convert_model): Core.read_model's ONNX graph keeps a ShapeOf/Broadcast
    # around every conv bias, where bias correction finds no biases to correct
    assert "FakeQuantize" in ops and "ShapeOf" not in ops and "Broadcast" not in ops
    assert float_layers(read_model(out)) == []            # every Convolution/MatMul weight and residual Add quantized
    assert sorted(Path(f).name for f in result.files) == ["model.int8.bin", "model.int8.xml"]
    assert result.measured_on == "openvino" and result.size_ratio > 3.0
    report = validate([out], tiny_data / "val", reference=random_onnx, targets=["openvino"], measure_latency=False)
    assert result.top1_int8 == pytest.approx(report.top1)
    assert report.cosine > 0.98, report.cosine   # same bound as the QDQ ONNX: a wrong calibration gives < 0.9
    meta = read_meta(out)
    assert meta.precision == "int8" and meta.extra["quantization"]["target"] == "openvino"
    assert meta.extra["quantization"]["settings"]["fast_bias_correction"] is True


def test_full_bias_correction_on_request_for_an_ir(work, random_onnx, tiny_data):
    out = work / "full-bc" / "model.xml"
    out.parent.mkdir()
    quantize_int8(random_onnx, output=out, calib=tiny_data / "train", target="openvino",
                  settings=small(bias_correction="full", bench_runs=0))
    assert read_meta(out).extra["quantization"]["settings"]["fast_bias_correction"] is False


def test_calibration_pick_is_seeded_balanced_and_listable(tiny_data, tmp_path):
    files = list_images(tiny_data / "train")
    first = balanced_order(files, seed=1)[:8]
    assert [c.label for c in first[:4]] == sorted({c.label for c in files})
    assert first == balanced_order(files, seed=1)[:8] and first != balanced_order(files, seed=2)[:8]
    listing = tmp_path / "calib.txt"
    assert write_list(tiny_data, listing, subset=8, seed=1) == 8
    from toolkit.artifact import Preprocess

    by_list = calibration_set(tiny_data / "train", Preprocess().at_size(64), list_file=listing)
    assert by_list.facts.images == 8 and by_list.facts.per_class == {c: 2 for c in by_list.facts.per_class}
    rnd = calibration_set("random", Preprocess().at_size(64), subset=4)
    assert rnd.facts.source == "random" and "random" in rnd.facts.warnings[0]


def test_stats_warn_on_unnormalised_tensors():
    assert stats_warnings([0.1, 0.0, -0.1], [1.0, 1.1, 0.9], -2.1, 2.6) == []
    assert "0-255" in stats_warnings([120.0] * 3, [60.0] * 3, 0.0, 255.0)[0]
    assert "far from normalised" in stats_warnings([0.45] * 3, [0.05] * 3, 0.0, 1.0)[0]


def test_float_layers_are_read_from_the_graph(cpu_int8, random_onnx):
    """Plain NNCF INT8 of a ResNet leaves no layer in float (so any float layer after accuracy control is one it
    reverted); the FP32 graph is all float: every Conv, the Gemm and every residual Add."""
    assert float_layers(onnx.load(cpu_int8.output)) == []
    fp32 = onnx.load(str(random_onnx))
    expected = [n.name for n in fp32.graph.node if n.op_type in ("Conv", "Gemm", "Add")]
    assert float_layers(fp32) == expected and len(expected) == 53 + 1 + 16


def _bad_folders(root: Path, tiny_data: Path) -> dict[str, Path]:
    empty = root / "empty" / "a"
    empty.mkdir(parents=True)
    corrupt = root / "corrupt" / "a"
    corrupt.mkdir(parents=True)
    src = next((tiny_data / "train").rglob("*.png")).read_bytes()
    for i in range(3):
        (corrupt / f"{i}.png").write_bytes(src[:60])
    return {"empty": empty.parent, "corrupt": corrupt.parent}


@pytest.mark.parametrize("case", ["empty", "corrupt", "too-few", "quantized", "meta-int8", "target", "no-val",
                                  "size", "pt-input", "val-classes", "ir-not-openvino", "full-bc-onnx"])
def test_bad_input_exits_2_and_writes_nothing(case, cli, tmp_path, random_onnx, random_ckpt, tiny_data, cpu_int8):
    folders = _bad_folders(tmp_path, tiny_data)
    model, calib, extra = random_onnx, tiny_data / "train", ["--allow-small", "--subset", "4"]
    if case in ("empty", "corrupt"):
        calib = folders[case]
    elif case == "too-few":
        extra = []                                    # 48 images < the default 300
    elif case == "quantized":
        model = Path(cpu_int8.output)
    elif case == "meta-int8":
        proto = onnx.load(str(random_onnx))
        from toolkit.onnx_file import write_onnx_meta

        write_onnx_meta(proto, read_meta(random_onnx).model_copy(update={"precision": "int8"}))
        model = tmp_path / "claims-int8.onnx"
        onnx.save(proto, str(model))
    elif case == "target":
        extra += ["--target", "tflite"]
    elif case == "no-val":
        extra += ["--max-drop", "0.5"]
    elif case == "size":
        proto = onnx.load(str(random_onnx))
        from toolkit.onnx_file import write_onnx_meta

        meta = read_meta(random_onnx)
        write_onnx_meta(proto, meta.model_copy(update={"preprocess": meta.preprocess.at_size(32)}))
        model = tmp_path / "wrong-size.onnx"
        onnx.save(proto, str(model))
    elif case == "pt-input":
        model = random_ckpt
    elif case == "val-classes":
        other = tmp_path / "other-val" / "zebra"
        other.mkdir(parents=True)
        shutil.copy(next((tiny_data / "val").rglob("*.png")), other / "0.png")
        extra += ["--val", other.parent]
    elif case == "full-bc-onnx":
        extra += ["--target", "openvino", "--bias-correction", "full"]    # NNCF's ONNX backend fails with it
    out = tmp_path / ("out.xml" if case == "ir-not-openvino" else "out.onnx")
    res = cli("quantize", "--int8", model, "--calib", calib, "-o", out, *extra)
    assert res.exit_code == 2, (case, res.stdout, res.stderr)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and res.stderr.strip().endswith(errors[0]), res.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".out.onnx", ".out.xml", "out.bin"))]
    shutil.rmtree(tmp_path / "empty", ignore_errors=True)
