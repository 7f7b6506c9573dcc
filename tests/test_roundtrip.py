"""Every command is a recipe: a command's flags survive `--dump-recipe` and reach the library under `rtk run`.

For each command that makes an artifact, flags that differ from every default are dumped; the recipe must
hold each as the stage setting of the same name, and replaying it with `rtk run` must make an artifact that
records those settings. What a recipe cannot express is refused with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import yaml

from toolkit.backends import read_meta
from toolkit.recipe import load_recipe

FAST_BENCH = {"warmup": 0, "runs": 2, "repeats": 1}


def _dump(cli, tmp_path: Path, name: str, args: list) -> tuple[Path, object]:
    path = tmp_path / f"{name}.yaml"
    result = cli(*args, "--dump-recipe", path)
    assert result.exit_code == 0, result.stderr
    return path, load_recipe(path)


def _replay(cli, path: Path, out: Path, bench: dict | None = None):
    recipe = yaml.safe_load(path.read_text())
    recipe["bench"].update(FAST_BENCH, **(bench or {}))
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return cli("run", path, "-o", out)


def _history(path: Path, step: str) -> dict:
    return next(h for h in reversed(read_meta(path).provenance["history"]) if h["step"] == step)


def test_finetune_flags_round_trip(cli, tmp_path, tiny_data, random_ckpt):
    path, recipe = _dump(cli, tmp_path, "finetune", [
        "finetune", "--data", tiny_data, "--weights", random_ckpt, "--freeze-backbone", "--epochs", "1",
        "--batch-size", "16", "--lr", "0.002", "--augment", "flip", "--input-size", "48", "--seed", "3",
        "--threads", "2", "-o", tmp_path / "never.pt"])
    ft = recipe.finetune
    assert (ft.freeze_backbone, ft.epochs, ft.batch_size, ft.lr, ft.augment, ft.threads) == (True, 1, 16, 0.002,
                                                                                          "flip", 2)
    assert (recipe.model.source, recipe.model.input_size, recipe.seed) == (str(random_ckpt), 48, 3)
    assert recipe.data.root == tiny_data and not (tmp_path / "never.pt").exists()
    result = _replay(cli, path, tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    made = _history(tmp_path / "run" / "model.pt", "finetune")
    assert {k: made[k] for k in ("freeze_backbone", "epochs", "batch_size", "lr", "seed", "augment")} == {
        "freeze_backbone": True, "epochs": 1, "batch_size": 16, "lr": 0.002, "seed": 3, "augment": "flip"}
    assert read_meta(tmp_path / "run" / "model.pt").preprocess.crop == 48


def test_export_flags_round_trip(cli, tmp_path, tiny_data, random_ckpt):
    path, recipe = _dump(cli, tmp_path, "export", [
        "export", random_ckpt, "--opset", "13", "--static-batch", "--batch", "2", "--atol", "0.01",
        "--data", tiny_data / "val", "--seed", "4", "-o", tmp_path / "never.onnx"])
    e = recipe.export
    assert (e.opset, e.dynamic_batch, e.batch, e.atol) == (13, False, 2, 0.01)
    assert recipe.data.validation == tiny_data / "val" and recipe.seed == 4
    assert recipe.bench.batches == [2]   # the batch-2 IR is timed at its batch
    result = _replay(cli, path, tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    proto = onnx.load(str(tmp_path / "run" / "model.onnx"))
    assert proto.opset_import[0].version == 13
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_prune_flags_round_trip_with_a_latency_target(cli, tmp_path, tiny_data, random_ckpt):
    path, recipe = _dump(cli, tmp_path, "prune", [
        "prune", random_ckpt, "--target-latency-ms", "0.001", "--target", "onnxruntime", "--keep-best",
        "--importance", "l1", "--round-to", "16", "--finetune", tiny_data, "--epochs", "1", "--lr", "0.001",
        "--batch-size", "16", "--distill", "--temperature", "2", "--augment", "flip", "--measure", "none",
        "--uniform", "--seed", "1", "-o", tmp_path / "never.pt"])
    p = recipe.prune
    assert (p.target_latency_ms, p.target, p.keep_best, p.importance, p.round_to, p.epochs, p.lr, p.batch_size,
            p.distill, p.temperature, p.augment, p.measure, p.global_pruning) == (
        0.001, "onnxruntime", True, "l1", 16, 1, 0.001, 16, True, 2.0, "flip", [], False)
    result = _replay(cli, path, tmp_path / "run")
    assert result.exit_code == 1 and "not reached" in result.stderr     # 1 us is out of reach: a missed target
    made = _history(tmp_path / "run" / "pruned.pt", "prune")          # --keep-best kept the best candidate
    assert (made["target_latency_ms"], made["importance"], made["round_to"], made["epochs"], made["distill"]) == (
        0.001, "l1", 16, 1, True)


def test_quantize_flags_round_trip_to_an_int8_ir(cli, tmp_path, tiny_data, random_onnx):
    from toolkit.quantize.calibration import write_list

    listing = tmp_path / "calib.txt"
    write_list(tiny_data, listing, subset=12, seed=0)
    path, recipe = _dump(cli, tmp_path, "quantize", [
        "quantize", "--int8", random_onnx, "--calib", tiny_data / "train", "--target", "openvino",
        "-o", tmp_path / "never.xml", "--subset", "8", "--calib-list", listing, "--allow-small",
        "--bias-correction", "full", "--bench-runs", "0", "--seed", "2", "--val", tiny_data / "val"])
    q = recipe.quantize
    assert (q.form, q.subset, q.calib_list, q.allow_small, q.bias_correction, q.bench_runs) == (
        "ir", 8, listing, True, "full", 0)
    assert recipe.compile.targets == ["onnxruntime", "openvino"] and recipe.seed == 2
    result = _replay(cli, path, tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    ir = tmp_path / "run" / "openvino" / "model.xml"
    quant = read_meta(ir).extra["quantization"]
    assert quant["settings"]["fast_bias_correction"] is False and quant["target"] == "openvino"
    assert quant["calibration"]["images"] == 8 and quant["calibration"]["list_file"] == str(listing)
    assert quant["calibration"]["seed"] == 2
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["fp32", "openvino"] and report["rows"][1]["precision"] == "int8"


def test_compile_flags_round_trip(cli, tmp_path, random_onnx):
    path, recipe = _dump(cli, tmp_path, "compile", [
        "compile", random_onnx, "--target", "openvino", "--precision", "fp16", "--batch", "2", "-o",
        tmp_path / "never"])
    assert (recipe.compile.precision, recipe.compile.batch, recipe.compile.targets) == ("fp16", 2,
                                                                                     ["onnxruntime", "openvino"])
    assert recipe.bench.batches == [2]   # the batch-2 IR is timed at its batch
    result = _replay(cli, path, tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    made = _history(tmp_path / "run" / "openvino" / "model.xml", "compile")
    assert (made["precision"], made["batch"]) == ("fp16", "2")


def test_compile_check_only_round_trip(cli, tmp_path, random_onnx):
    path, recipe = _dump(cli, tmp_path, "check", [
        "compile", random_onnx, "--target", "tensorrt", "--check-only", "--min-batch", "1", "--opt-batch", "2",
        "--max-batch", "4", "--workspace-mb", "512", "--timing-cache", tmp_path / "t.cache", "--version-compatible"])
    c = recipe.compile
    assert (c.check_only, c.min_batch, c.opt_batch, c.max_batch, c.workspace_mb, c.timing_cache,
            c.version_compatible, c.targets) == (True, 1, 2, 4, 512, tmp_path / "t.cache", True, ["tensorrt"])
    result = _replay(cli, path, tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    state = json.loads((tmp_path / "run" / ".rtk" / "state.json").read_text())["stages"]
    assert state["check:tensorrt"]["result"]["profile"] == {"min": 1, "opt": 2, "max": 4}
    assert "No TensorRT engine was built" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("args, reason", [
    (["quantize", "M.onnx", "--calib", "random", "-o", "q.onnx"], "random is for speed tests"),
    (["prune", "M.pt", "--ratio", "0.5", "-o", "p.pt"], "add --finetune DATA"),
])
def test_what_a_recipe_cannot_express_is_refused_in_one_line(cli, tmp_path, random_onnx, random_ckpt, args, reason):
    args = [random_onnx if a == "M.onnx" else random_ckpt if a == "M.pt" else a for a in args]
    result = cli(*args, "--dump-recipe", tmp_path / "r.yaml")
    assert result.exit_code == 2 and reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.yaml").exists()
