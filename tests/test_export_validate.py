"""Export parity, validation numbers and the accuracy gate, on real ONNX Runtime and PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from toolkit.backends import read_meta
from toolkit.backends import open_runner
from toolkit.errors import RtkError
from toolkit.export import export_onnx
from toolkit.models import load_model, save_checkpoint
from toolkit.settings import ExportSettings, Gates, ValidateSettings
from toolkit.validate import validate


def test_export_carries_metadata_and_passes_checker(random_onnx, random_ckpt):
    proto = onnx.load(str(random_onnx))
    onnx.checker.check_model(proto, full_check=True)
    meta = read_meta(random_onnx)
    assert meta.class_names == read_meta(random_ckpt).class_names
    assert meta.preprocess.crop == 64 and meta.provenance["history"][-1]["step"] == "export"
    assert proto.opset_import[0].version == 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_onnx_matches_torch_on_val(accurate_ckpt, tiny_data, tmp_path):
    model, meta = load_model(accurate_ckpt)
    onnx_path = tmp_path / "accurate.onnx"
    result = export_onnx(model, meta, onnx_path, data=tiny_data / "val", parent=accurate_ckpt)
    assert result.parity.passed and result.parity.max_abs_diff < 1e-3
    report = validate([onnx_path], tiny_data / "val", reference=accurate_ckpt, gates=Gates(max_drop_pt=0.5))
    assert report.reference.top1 >= 90.0
    assert abs(report.top1 - report.reference.top1) <= 0.1
    assert report.agreement >= 99.5 and report.cosine > 0.9999
    assert report.passed


def test_static_batch_export_and_opset(random_ckpt, tmp_path, tiny_data):
    model, meta = load_model(random_ckpt)
    out = tmp_path / "static.onnx"
    export_onnx(model, meta, out, settings=ExportSettings(opset=13, dynamic_batch=False, batch=4),
                data=tiny_data / "val")
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == 13
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    report = validate([out], tiny_data / "val", reference=random_ckpt, settings=ValidateSettings(batch_size=32),
                      measure_latency=False)
    assert report.images == 32 and report.agreement == 100.0


def test_damaged_model_fails_the_gate(accurate_ckpt, tiny_data, tmp_path, cli):
    model, meta = load_model(accurate_ckpt)
    with torch.no_grad():
        model.fc.weight.copy_(model.fc.weight.roll(1, dims=0))
    damaged = tmp_path / "damaged.pt"
    save_checkpoint(damaged, model, meta)
    out = tmp_path / "v.json"
    result = cli("validate", damaged, "--data", tiny_data / "val", "--reference", accurate_ckpt, "--max-drop", "0.5",
                 "--json", out)
    assert result.exit_code == 1
    assert "max_drop_pt" in result.stderr
    data = json.loads(out.read_text())
    assert data["passed"] is False and data["drop_pt"] > 50


def test_validate_json_fields(random_onnx, random_ckpt, tiny_data, tmp_path, cli):
    out = tmp_path / "v.json"
    result = cli("validate", random_onnx, "--data", tiny_data / "val", "--reference", random_ckpt, "--json", out)
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())
    for key in ("top1", "top5", "drop_pt", "agreement", "cosine", "images", "passed"):
        assert key in data
    assert {"top1", "top5"} <= set(data["reference"])
    assert data["images"] == 32 and data["passed"] is True
    assert 0.0 <= data["top1"] <= 100.0 and data["top5"] >= data["top1"]


def test_bench_json_and_percentiles(random_onnx, tmp_path, cli):
    out = tmp_path / "b.json"
    result = cli("bench", random_onnx, "--target", "onnxruntime", "--batch", "1,2", "--runs", "12", "--warmup", "2",
                 "--json", out)
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["target"] == "onnxruntime"
    assert [r["batch"] for r in data["results"]] == [1, 2]
    for r in data["results"]:
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and lat["runs"] == 12
        assert r["throughput_ips"] > 0


def test_predict_names_classes(random_onnx, tiny_data, cli, tmp_path):
    image = next((tiny_data / "val").rglob("*.png"))
    out = tmp_path / "p.json"
    result = cli("predict", image, "--model", random_onnx, "--top", "3", "--json", out)
    assert result.exit_code == 0, result.stderr
    got = json.loads(out.read_text())
    (pred,) = got["predictions"]
    assert got["phases"]["images"] == 1 and got["phases"]["skipped"] == [] and got["phases"]["total_ms"]["p50"] > 0
    names = read_meta(random_onnx).class_names
    assert len(pred["top"]) == 3 and all(g["label"] in names for g in pred["top"])
    probs = [g["probability"] for g in pred["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


def test_runners_agree_on_one_batch(random_onnx, random_ckpt):
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with open_runner(random_ckpt) as ref, open_runner(random_onnx) as ort:
        assert np.abs(ref.infer(x) - ort.infer(x)).max() < 1e-3


def test_export_refuses_unsupported_opset(random_ckpt, tmp_path):
    model, meta = load_model(random_ckpt)
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, meta, tmp_path / "x.onnx", settings=ExportSettings(opset=5))
    assert not list(tmp_path.iterdir())
