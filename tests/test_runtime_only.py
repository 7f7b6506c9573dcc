"""The runtime-only install: running an artifact imports nothing that makes artifacts, and a real torch-free venv
(the device rig's, core + openvino extra) gets the same results as the full install.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "torchvision", "nncf", "torch_pruning", "matplotlib", "onnx", "onnxscript")

DRIVER = r'''
import json, sys
from typer.testing import CliRunner
from toolkit.cli import app

forbidden, steps = json.loads(sys.argv[1]), json.loads(sys.argv[2])
runner, seen = CliRunner(), {}
for step in steps:
    result = runner.invoke(app, step)
    loaded = sorted({name.split(".")[0] for name in sys.modules} & set(forbidden))
    seen[" ".join(step)] = {"exit": result.exit_code, "stderr": result.stderr[-300:], "loaded": loaded}
print(json.dumps(seen))
'''


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> tuple[Path, Path]:
    """Two run reports for `rtk compare` (the fields it reads)."""
    folder = tmp_path_factory.mktemp("reports")
    paths = []
    for name, repeats in (("a", [5.0, 5.1, 5.2]), ("b", [5.1, 5.0, 5.3])):
        latency = {"p50": repeats[1], "p90": max(repeats), "p99": max(repeats), "mean": sum(repeats) / 3, "std": 0.1,
                   "min": min(repeats), "max": max(repeats), "runs": 3}
        row = {"name": "fp32", "path": "m.onnx", "target": "onnxruntime", "precision": "fp32", "role": "fp32",
               "size_mb": 1.0, "top1": 50.0, "latency_ms": latency, "p50_repeats": repeats}
        report = {"recipe": name, "rtk": "test", "created": "2026-01-01T00:00:00+00:00", "passed": True,
                  "headline": {"artifact": "fp32", "accuracy_drop_pt": None, "size_ratio": None, "speedup": None},
                  "gates": [], "rows": [row], "validation_images": 8, "stages": []}
        paths.append(folder / f"{name}.json")
        paths[-1].write_text(json.dumps(report))
    return paths[0], paths[1]


def test_running_an_artifact_imports_no_build_package(random_onnx, random_qdq, random_ir, tiny_data, reports,
                                                      tmp_path):
    """doctor, bench, validate, predict and compare on ONNX, QDQ ONNX and IR, in one fresh interpreter: after each
    command, none of torch, torchvision, nncf, torch_pruning, matplotlib, onnx is in sys.modules."""
    val = tiny_data / "val"
    image = next(next(val.iterdir()).iterdir())
    quick = ["--runs", "3", "--warmup", "1"]
    steps = [["doctor", "--json", tmp_path / "doctor.json"]]
    for model in (random_onnx, random_qdq, random_ir):
        steps += [["bench", model, *quick],
                  ["validate", model, "--data", val, "--reference", random_onnx],
                  ["predict", image, "--model", model]]
    steps += [["compare", *reports]]
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(FORBIDDEN),
                           json.dumps([[str(a) for a in s] for s in steps])],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(seen) == len(steps)
    failed = {cmd: r for cmd, r in seen.items() if r["exit"] != 0}
    assert not failed, failed
    leaked = {cmd: r["loaded"] for cmd, r in seen.items() if r["loaded"]}
    assert not leaked, f"a runtime path imported a build package: {leaked}"


def _device(rtk: Path, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(rtk), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": f"{rtk.parent}:/usr/bin:/bin", "HOME": str(Path.home()), "COLUMNS": "200"})


def test_device_venv_has_no_build_package(device_rtk):
    python = device_rtk.parent / "python"
    found = subprocess.run([str(python), "-c", "import importlib.util, json, sys; "
                            "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m)]))",
                            *FORBIDDEN], capture_output=True, text=True, check=True)
    assert json.loads(found.stdout) == []


def test_torch_free_install_scores_like_the_full_one(device_rtk, random_onnx, random_qdq, random_ir, tiny_data,
                                                     tmp_path):
    """validate and predict on ONNX, QDQ ONNX and IR with the torch-free venv: the same top-1, per-class top-1 and
    top labels as the full install (this process) on the same artifacts and images."""
    from toolkit.predict import predict
    from toolkit.validate import validate

    val = tiny_data / "val"
    images = [p for d in sorted(val.iterdir()) for p in sorted(d.iterdir())[:1]]
    for model in (random_onnx, random_qdq, random_ir):
        out = tmp_path / f"{model.stem}.json"
        done = _device(device_rtk, "validate", model, "--data", val, "--json", out)
        assert done.returncode == 0, done.stderr
        device, local = json.loads(out.read_text()), validate([model], val, measure_latency=False)
        assert device["top1"] == local.top1 and device["images"] == local.images
        assert device["artifacts"][0]["per_class_top1"] == local.artifacts[0].per_class_top1
        out = tmp_path / f"{model.stem}.predict.json"
        done = _device(device_rtk, "predict", *images, "--model", model, "--json", out)
        assert done.returncode == 0, done.stderr
        device_labels = [[g["label"] for g in p["top"]] for p in json.loads(out.read_text())["predictions"]]
        assert device_labels == [[g.label for g in p.top] for p in predict(images, model)]


def test_making_commands_name_the_export_extra(device_rtk, random_onnx, random_ckpt, tiny_data, tmp_path):
    """Without torch/onnx/nncf: one line naming `rtk[export]`, exit 2, nothing written; a .pt reference the same."""
    cases = {
        "export": ["export", random_ckpt, "-o", tmp_path / "m.onnx"],
        "quantize": ["quantize", random_onnx, "-o", tmp_path / "q.onnx", "--calib", tiny_data / "train"],
        "finetune": ["finetune", "--data", tiny_data, "-o", tmp_path / "m.pt", "--epochs", "1"],
        "compile": ["compile", random_onnx, "--target", "openvino", "-o", tmp_path / "ir"],
        "validate --reference .pt": ["validate", random_onnx, "--data", tiny_data / "val", "--reference",
                                     random_ckpt],
    }
    for name, args in cases.items():
        done = _device(device_rtk, *args, cwd=tmp_path)
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        assert done.returncode == 2, (name, done.stderr)
        assert len(lines) == 1 and "pip install 'rtk[export]'" in lines[0], (name, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
