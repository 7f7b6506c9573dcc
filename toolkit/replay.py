"""`--dump-recipe PATH` on a command: the recipe that replays it with `rtk run` (Olive's CLI-to-config habit).

A recipe is a whole pipeline, so the recipe of one command is that command's stage plus what a run always
adds (validation against the FP32 reference and a benchmark), with the command's inputs as the recipe's
inputs. Paths are written as given, so replay from the same working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.io import write_text_atomic
from toolkit.errors import RtkError
from toolkit.recipe import Recipe, dump_recipe


def _name(command: str, model: str | Path) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(str(model)).stem) or "model"
    return f"{command}-{stem}"


def _data(*, root: Path | None = None, calibration: Path | None = None, validation: Path | None = None) -> dict:
    data: dict[str, Any] = {}
    if root is not None:
        data["root"] = str(root)
    if calibration is not None:
        data["calibration"] = str(calibration)
    if validation is not None:
        data["validation"] = str(validation)
    return data


def _source(model: str | Path) -> str:
    if Path(str(model)).suffix.lower() == ".xml":
        raise RtkError("recipes start from a .pt checkpoint or an .onnx model; dump the recipe for the ONNX the IR came from")
    return str(model)


def quantize_recipe(*, model: Path, calib: str, target: str, subset: int | None, allow_small: bool,
                    max_drop: float | None, val: Path | None, seed: int) -> Recipe:
    if calib == "random":
        raise RtkError("a recipe calibrates on images; --calib random is for speed tests only")
    quant: dict[str, Any] = {"allow_small": allow_small}
    if subset is not None:
        quant["subset"] = subset
    if max_drop is not None:
        quant["max_drop"] = max_drop
    targets = ["tensorrt"] if target == "tensorrt" else sorted({"onnxruntime", target})
    return Recipe.model_validate({"name": _name("quantize", model), "seed": seed,
                                  "data": _data(calibration=Path(calib), validation=val),
                                  "model": {"source": _source(model)}, "quantize": quant,
                                  "compile": {"targets": targets}})


def compile_recipe(*, source: Path, target: str, precision: str) -> Recipe:
    targets = ["tensorrt"] if target == "tensorrt" else ["onnxruntime", target]
    return Recipe.model_validate({"name": _name("compile", source), "data": {},
                                  "model": {"source": _source(source)},
                                  "compile": {"targets": targets, "precision": precision}})


def prune_recipe(*, model: Path, mode: str, ratio: float | None, sparsity: float | None, importance: str,
                 round_to: int, data: Path | None, epochs: int, lr: float, distill: bool, seed: int,
                 augment: str = "none") -> Recipe:
    stage: dict[str, Any] = {"mode": mode, "importance": importance, "round_to": round_to,
                             "epochs": epochs if data else 0, "lr": lr, "distill": distill, "augment": augment}
    if ratio is not None:
        stage["ratio"] = ratio
    if sparsity is not None:
        stage["sparsity"] = sparsity
    if data is None:
        raise RtkError("a recipe needs data to validate the pruned model; add --finetune DATA")
    return Recipe.model_validate({"name": _name("prune", model), "seed": seed, "data": _data(root=data),
                                  "model": {"source": _source(model)}, "prune": stage})


def finetune_recipe(*, data: Path, weights: str, epochs: int, batch_size: int, lr: float | None,
                    freeze_backbone: bool, input_size: int | None, seed: int) -> Recipe:
    stage: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "freeze_backbone": freeze_backbone}
    if lr is not None:
        stage["lr"] = lr
    return Recipe.model_validate({"name": _name("finetune", data), "seed": seed, "data": _data(root=data),
                                  "model": {"source": weights, "input_size": input_size}, "finetune": stage})


def export_recipe(*, source: str, num_classes: int | None, input_size: int | None, opset: int, dynamic_batch: bool,
                  data: Path | None, seed: int) -> Recipe:
    return Recipe.model_validate({"name": _name("export", source), "seed": seed, "data": _data(validation=data),
                                  "model": {"source": str(source), "num_classes": num_classes,
                                            "input_size": input_size},
                                  "export": {"opset": opset, "dynamic_batch": dynamic_batch}})


def write(recipe: Recipe, path: Path, command: str) -> Path:
    text = f"# Replays `rtk {command}` (written by --dump-recipe): rtk run {path} -o runs/{recipe.name}\n"
    write_text_atomic(Path(path), text + dump_recipe(recipe))
    return Path(path)
