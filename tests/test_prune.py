"""rtk prune on the real topology at 64x64: torch-pruning channels, nncf sparsity, the rebuilt checkpoint
flowing through weights_only loading, ONNX export, validate and bench; and every refused input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from toolkit.channels import apply_channels
from toolkit.errors import RtkError
from toolkit.models import build_model, read_checkpoint
from toolkit.prune import prune_model, weight_sparsity
from toolkit.settings import BenchSettings, PruneSettings


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, random_ckpt, tiny_data) -> tuple[Path, dict]:
    """Structured 0.5 via the CLI, with BN adaptation, one distilled recovery epoch and ORT timing."""
    from typer.testing import CliRunner

    from toolkit.cli import app

    out = tmp_path_factory.mktemp("prune") / "pruned.pt"
    report = out.with_suffix(".json")
    args = ["prune", random_ckpt, "--structured", "--ratio", "0.5", "--finetune", tiny_data, "--epochs", "1",
            "--distill", "--batch-size", "16", "--measure", "onnxruntime", "-o", out, "--json", report]
    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    return out, json.loads(report.read_text())


def test_structured_cuts_macs_about_4x_and_keeps_classes(pruned, random_ckpt):
    path, rep = pruned
    assert 3.3 < rep["macs_before"] / rep["macs_after"] < 4.7
    assert rep["params_after"] < rep["params_before"] / 3
    model, meta = read_checkpoint(path)          # torch.load(weights_only=True) + apply_channels
    raw = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in raw["state_dict"].values())
    channels = meta.arch_config["channels"]
    assert channels and all(v % 8 == 0 for v in channels.values())
    assert all(m.out_channels % 8 == 0 for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.fc.out_features == 4 and model.fc.in_features == 1024
    assert meta.provenance["history"][-1]["step"] == "prune"
    assert meta.class_names == read_checkpoint(random_ckpt)[1].class_names
    assert len(rep["recovery"]) == 1 and rep["bn_adapted_batches"] >= 1
    assert rep["top1_before"] is not None and rep["top1_after"] is not None
    [lat] = rep["latency"]                                   # --measure onnxruntime: that runtime, nothing else
    assert lat["target"] == "onnxruntime" and 0 < lat["after_ms"] < 1e4 and 0 < lat["before_ms"] < 1e4
    assert lat["speedup"] == pytest.approx(lat["before_ms"] / lat["after_ms"])
    with torch.inference_mode():
        a = model(torch.randn(2, 3, 64, 64))
    assert a.shape == (2, 4) and torch.isfinite(a).all()


def test_pruned_checkpoint_flows_into_export_validate_bench(pruned, tiny_data, tmp_path):
    from toolkit.bench import bench
    from toolkit.export import export_onnx
    from toolkit.validate import validate

    path, rep = pruned
    model, meta = read_checkpoint(path)
    onnx_path = tmp_path / "pruned.onnx"
    result = export_onnx(model, meta, onnx_path, data=tiny_data / "val", parent=path)
    assert result.parity.passed and result.parity.max_abs_diff < 1e-3
    report = validate([onnx_path], tiny_data / "val", reference=path, measure_latency=False)
    assert report.artifacts[0].agreement == 100.0
    assert abs(report.reference.top1 - rep["top1_after"]) < 1e-6
    timing = bench(onnx_path, settings=BenchSettings(runs=5, warmup=1))
    assert timing.results[0].latency_ms.p50 > 0


def test_channel_counts_follow_round_to(random_ckpt, tmp_path):
    out = tmp_path / "r16.pt"
    res = prune_model(random_ckpt, output=out, settings=PruneSettings(ratio=0.3, round_to=16, measure=[]))
    _, meta = read_checkpoint(out)
    widths = meta.arch_config["channels"]
    assert widths and all(v % 16 == 0 for v in widths.values())
    assert any(v % 32 for v in widths.values())            # 0.3 of 64/128/... is not a trivial power of two
    assert res.macs_after < res.macs_before


def test_unstructured_reaches_sparsity_and_saves_plain_state_dict(random_ckpt, tmp_path):
    out = tmp_path / "sparse.pt"
    res = prune_model(random_ckpt, output=out, settings=PruneSettings(mode="unstructured", sparsity=0.7,
                                                                  measure=["onnxruntime"]))
    raw = torch.load(out, weights_only=True)
    state = raw["state_dict"]
    assert set(state) == set(build_model(read_checkpoint(random_ckpt)[1]).state_dict())
    assert not any("nncf" in k for k in state)
    zeros = weight_sparsity(state)
    assert abs(zeros - 0.7) < 0.005 and abs(res.sparsity_reached - zeros) < 1e-9
    assert res.macs_after == res.macs_before                # dense runtimes still run every MAC
    [lat] = res.latency
    assert lat.target == "onnxruntime" and 0 < lat.before_ms < 1e4 and 0 < lat.after_ms < 1e4
    assert lat.speedup == pytest.approx(lat.before_ms / lat.after_ms)
    model, _ = read_checkpoint(out)
    assert weight_sparsity(model.state_dict()) == zeros


def test_unreachable_latency_target_exits_1_and_writes_nothing(cli, random_ckpt, tmp_path):
    out = tmp_path / "fast.pt"
    res = cli("prune", random_ckpt, "--target-latency-ms", "0.001", "--target", "onnxruntime", "--measure", "none",
              "-o", out)
    assert res.exit_code == 1
    assert "not reached" in res.stderr and "best was" in res.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("args", [
    ["--ratio", "0"],
    ["--ratio", "1.5"],
    ["--unstructured", "--sparsity", "1.0"],
    ["--unstructured", "--sparsity", "-0.2"],
    ["--structured", "--unstructured"],
    ["--target-latency-ms", "20"],
    ["--unstructured", "--ratio", "0.5"],
    ["--importance", "magic"],
    ["--augment", "mixup"],
    ["--distill"],
])
def test_bad_input_exits_2_and_writes_nothing(cli, random_ckpt, tmp_path, args):
    out = tmp_path / "bad.pt"
    res = cli("prune", random_ckpt, "-o", out, *args)
    assert res.exit_code == 2, res.stderr
    assert res.stderr.startswith("error:") and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_not_a_resnet_exits_2(cli, tmp_path):
    src = tmp_path / "mlp.pt"
    torch.save(nn.Sequential(nn.Linear(4, 4)).state_dict(), src)
    out = tmp_path / "out.pt"
    res = cli("prune", src, "--ratio", "0.5", "-o", out)
    assert res.exit_code == 2 and "ResNet" in res.stderr
    assert not out.exists()


def test_recovery_augmentation_none_is_the_eval_view_and_flip_only_mirrors_it(tiny_data):
    from toolkit.artifact import Preprocess
    from toolkit.data import eval_transform, load_image, train_transform

    pre = Preprocess(resize=48, crop=40)
    img = load_image(next((tiny_data / "train").rglob("*.png")))
    view = eval_transform(pre)(img)
    assert torch.equal(train_transform(pre, augment="none")(img), view)
    torch.manual_seed(0)
    flips = [train_transform(pre, augment="flip")(img) for _ in range(16)]
    assert all(torch.equal(f, view) or torch.equal(f, view.flip(-1)) for f in flips)
    assert any(torch.equal(f, view.flip(-1)) for f in flips) and not torch.equal(view, view.flip(-1))
    assert not torch.equal(train_transform(pre, augment="full")(img), view)   # random-resized crop moves it


def test_apply_channels_refuses_a_damaged_config():
    from torchvision.models import resnet50

    with pytest.raises(RtkError, match="does not fit"):
        apply_channels(resnet50(num_classes=4), {"layer9.conv1": 8})
    with pytest.raises(RtkError, match="differ"):
        apply_channels(resnet50(num_classes=4), {"layer1.0.conv3": 128})
