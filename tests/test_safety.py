"""Input/output safety (issue #18): the catalogue rows of docs/bad-inputs.md's "Safety" section, one case each.

Refused: exit 2, stderr is exactly one `error:` line (no progress line, no library warning before it), every
file in the work folder is byte-for-byte what it was (nothing clobbered, nothing left behind). Handled: exit 0.
The cases are classes, not examples: outputs onto inputs (directly, through symbolic and hard links, relative
paths, an IR's .bin, a run folder), folder walks with links across classes, metadata that disagrees with its
graph or weights, numbers out of range on the CLI and in recipes, NaN/Inf logits, strict recipes and reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_reliability import Case, Ctx, RECIPE, VAL_ARGS, _recipe, _write

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"


# ---------------------------------------------------------------- input makers

def small_classifier(path: Path, *, classes: int = 4, size: int = 64, fill: float = 0.1, names: list[str] | None = None,
                     meta: dict | None = None, outputs: int = 1) -> Path:
    """An image classifier ONNX of three nodes (pool, flatten, matmul): N x 3 x size x size -> N x classes.

    `fill` is every weight (NaN or Inf makes a broken model); `names` adds rtk metadata with those class names,
    `meta` overrides fields of it; `outputs` > 1 adds extra outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from toolkit.artifact import ModelMeta, Preprocess
    from toolkit.onnx_file import write_onnx_meta

    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])]
    for i in range(1, outputs):
        nodes.append(helper.make_node("Identity", ["y"], [f"y{i}"]))
        outs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["N", classes]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                              outs, [numpy_helper.from_array(np.full((3, classes), fill, np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if names is not None:
        base = ModelMeta(num_classes=len(names), class_names=names, preprocess=Preprocess().at_size(size))
        data = {**base.model_dump(mode="json"), **(meta or {})}
        entry = model.metadata_props.add()
        entry.key, entry.value = "rtk.meta", json.dumps(data)
        if meta is None:
            write_onnx_meta(model, base)
    onnx.save(model, str(path))
    return path


def _names(ctx: Ctx) -> list[str]:
    return sorted(p.name for p in (ctx.data / "val").iterdir() if p.is_dir())


def _copy(ctx: Ctx, source: Path, name: str) -> Path:
    return Path(shutil.copy(source, ctx.work / name))


def _link(ctx: Ctx, target: Path, name: str) -> Path:
    os.symlink(target, ctx.work / name)
    return ctx.work / name


def _hard(ctx: Ctx, target: Path, name: str) -> Path:
    os.link(target, ctx.work / name)
    return ctx.work / name


def _linked_val(ctx: Ctx, kind: str) -> Path:
    """A copy of val/ with a link across classes: `file` (an image of class B inside A), `folder` (B's folder
    inside A), `alias` (a class folder that is B), `twice` (two links to one image of its own class), `split` (an
    image of class B in the train split, outside this root, inside A)."""
    val = ctx.copy_val()
    classes = sorted(p for p in val.iterdir() if p.is_dir())
    a, b = classes[0], classes[1]
    image = sorted(b.iterdir())[0]
    if kind == "file":
        os.symlink(image, a / "borrowed.png")
    elif kind == "folder":
        os.symlink(b, a / "more")
    elif kind == "alias":
        os.symlink(b, val / "zz_alias")
    elif kind == "split":
        os.symlink(sorted((ctx.data / "train" / b.name).iterdir())[0], a / "from_train.png")
    elif kind == "twice":
        own = sorted(a.iterdir())[0]
        os.symlink(own, a / "again.png")
        os.symlink(own, a / "again2.png")
    return val


def _ckpt_with(ctx: Ctx, name: str, **meta) -> Path:
    obj = torch.load(ctx.ckpt, map_location="cpu", weights_only=True)
    obj["meta"].update(meta)
    path = ctx.work / name
    torch.save(obj, path)
    return path


def _nan_ckpt(ctx: Ctx, name: str) -> Path:
    """The random checkpoint with one NaN weight, as a training run that diverged leaves it."""
    obj = torch.load(ctx.ckpt, map_location="cpu", weights_only=True)
    obj["state_dict"]["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(obj, ctx.work / name)
    return ctx.work / name


def _external(ctx: Ctx) -> Path:
    """ext/e.onnx keeping its weights in ext/model.bin (ONNX external data), the name an IR's weights take."""
    import onnx

    (ctx.work / "ext").mkdir()
    model = onnx.load(str(small_classifier(ctx.work / "ext" / "inline.onnx")))
    (ctx.work / "ext" / "inline.onnx").unlink()
    onnx.save(model, str(ctx.work / "ext" / "e.onnx"), save_as_external_data=True, location="model.bin",
              size_threshold=0)
    return ctx.work / "ext" / "e.onnx"


def _one_class(ctx: Ctx) -> Path:
    """A data folder (train/ and val/) with a single class."""
    for split in ("train", "val"):
        first = sorted(p for p in (ctx.data / split).iterdir() if p.is_dir())[0]
        shutil.copytree(first, ctx.work / "one" / split / first.name)
    return ctx.work / "one"


def _wide_png(ctx: Ctx) -> Path:
    from PIL import Image

    Image.new("RGB", (1_000_000, 1)).save(ctx.work / "wide.png")
    return ctx.work / "wide.png"


def _fifo(ctx: Ctx, name: str) -> Path:
    os.mkfifo(ctx.work / name)
    return ctx.work / name


def _onnx_prop(ctx: Ctx, name: str, key: str, value: str) -> Path:
    import onnx

    model = onnx.load(str(ctx.onnx))
    entry = next((p for p in model.metadata_props if p.key == key), None) or model.metadata_props.add()
    entry.key, entry.value = key, value
    onnx.save(model, str(ctx.work / name))
    return ctx.work / name


def _ir_with(ctx: Ctx, ir: Path, old: str, new: str, block: str = "<rtk>") -> Path:
    """A copy of the IR with `old` replaced once inside its rt_info `block` (rtk's, or "<framework>": the ONNX
    props OpenVINO keeps)."""
    folder = ctx.work / "ir"
    folder.mkdir()
    shutil.copy(ir.with_suffix(".bin"), folder / "model.bin")
    text = ir.read_text()
    head, sep, tail = text.partition(block)
    assert sep and old in tail, f"the IR has no {block} metadata block to damage"
    (folder / "model.xml").write_text(head + sep + tail.replace(old, new, 1))
    return folder / "model.xml"


def _edited_report(ctx: Ctx, edit: str) -> Path:
    """b.json: a valid report edited by `edit`: dupkey, order, floor, twice, perclass, throughput."""
    base = ctx.work / "b0.json"
    if edit == "order":
        return _report(ctx, "b.json", latency_ms={**json.loads(_report(ctx, "b0.json").read_text())["rows"][0][
            "latency_ms"], "p99": 4.0})
    if edit == "floor":
        return _report(ctx, "b.json", p50_repeats=[1e-300, 1e-300, 1e-300])
    if edit == "perclass":
        return _report(ctx, "b.json", per_class_top1={"a": 500.0})
    if edit == "throughput":
        return _report(ctx, "b.json", throughput_ips={"1": -5.0})
    if edit in ("top5", "cosine", "ci", "norepeats", "runs"):
        a = json.loads(_report(ctx, "b0.json").read_text())["rows"][0]
        return _report(ctx, "b.json", **{
            "top5": {"top5": 10.0}, "cosine": {"cosine": 7.0}, "ci": {"p50_ci95": [6.0, 4.0]},
            "norepeats": {"p50_repeats": []}, "runs": {"latency_ms": {**a["latency_ms"], "runs": 0}}}[edit])
    data = json.loads(_report(ctx, "b0.json").read_text())
    if edit in ("images", "booltop1"):
        data.update(validation_images=-3) if edit == "images" else data["rows"][0].update(top1=True)
        return _write(ctx.work / "b.json", json.dumps(data))
    if edit == "twice":
        data["rows"].append(data["rows"][0])
        return _write(ctx.work / "b.json", json.dumps(data))
    return _write(ctx.work / "b.json", base.read_text().replace('"top1": 50.0', '"top1": 25.0, "top1": 99.0'))


def _report(ctx: Ctx, name: str, **row_update) -> Path:
    latency = {"p50": 5.0, "p90": 5.2, "p99": 5.3, "mean": 5.0, "std": 0.1, "min": 4.9, "max": 5.3, "runs": 3}
    row = {"name": "fp32", "path": "m.onnx", "target": "onnxruntime", "precision": "fp32", "role": "fp32",
           "size_mb": 1.0, "top1": 50.0, "latency_ms": latency, "p50_repeats": [5.0, 5.1, 4.9], **row_update}
    report = {"recipe": name, "rtk": "t", "created": "2026-01-01T00:00:00+00:00", "passed": True,
              "headline": {"artifact": "fp32", "accuracy_drop_pt": None, "size_ratio": None, "speedup": None},
              "gates": [], "rows": [row], "validation_images": 8, "stages": []}
    return _write(ctx.work / name, json.dumps(report))


IR = {}        # the session's random IR, set by the test (Case builders take only the Ctx)
DATA_RECIPE = "version: 1\nname: t\ndata:\n  root: {root}\nmodel:\n  source: random\n"


def _data_recipe(ctx: Ctx, extra: str = "", root: Path | None = None) -> Path:
    return _recipe(ctx, DATA_RECIPE.format(root=root or ctx.data) + extra)


QUICK = ("--runs", "2", "--warmup", "0")

CASES = [
    # 1. no output clobbers an input
    Case("clobber-bench-json-onto-model", "bench", lambda c: ["bench", _copy(c, c.onnx, "m.onnx"), *QUICK, "--json",
                                                             c.work / "m.onnx"], ("--json", "m.onnx", "would overwrite the input")),
    Case("clobber-export-onto-checkpoint", "export", lambda c: ["export", _copy(c, c.ckpt, "m.pt"), "-o",
                                                               c.work / "m.pt"], ("-o", "m.pt", "would overwrite the input")),
    Case("clobber-quantize-through-symlink", "quantize", lambda c: [
        "quantize", _copy(c, c.onnx, "m.onnx"), "-o", _link(c, c.work / "m.onnx", "link.onnx"), "--calib",
        c.data / "train"], ("link.onnx", "would overwrite the input")),
    Case("clobber-quantize-hard-link", "quantize", lambda c: [
        "quantize", _copy(c, c.onnx, "m.onnx"), "-o", _hard(c, c.work / "m.onnx", "hard.onnx"), "--calib",
        c.data / "train"], ("hard.onnx", "would overwrite the input")),
    Case("clobber-relative-path", "quantize", lambda c: [
        "quantize", _copy(c, c.onnx, "m.onnx"), "-o", _write(c.work / "sub" / ".keep", "").parent / ".." / "m.onnx",
        "--calib", c.data / "train"], ("would overwrite the input",)),
    Case("clobber-validate-json-onto-ir-bin", "validate", lambda c: [
        "validate", _ir_with(c, IR["xml"], "x", "x"), "--data", c.data / "val", "--json", c.work / "ir" / "model.bin"],
         ("--json", "model.bin", "would overwrite the input")),
    Case("clobber-dump-recipe-onto-input", "export", lambda c: ["export", _copy(c, c.ckpt, "m.pt"), "--dump-recipe",
                                                               c.work / "m.pt"], ("--dump-recipe", "would overwrite the input")),
    Case("clobber-run-folder-holds-recipe", "run", lambda c: ["run", _recipe(c, RECIPE), "-o", c.work, "--force"],
         ("r.yaml", "inside this folder")),
    Case("clobber-json-is-a-run-file", "run", lambda c: [
        "run", _recipe(c, RECIPE), "-o", _write(c.work / "o" / ".keep", "").parent, "--force", "--json",
        c.work / "o" / "report.json"], ("report.json", "also the output")),
    Case("clobber-run-json-onto-recipe-source", "run", lambda c: [
        "run", _recipe(c, DATA_RECIPE.format(root=c.data).replace("source: random", f"source: {_copy(c, c.ckpt, 'm.pt')}")),
        "-o", c.work / "o", "--json", _link(c, c.work / "m.pt", "link.json")], ("--json", "would overwrite the input")),
    Case("clobber-json-inside-data-folder", "validate", lambda c: [
        "validate", c.onnx, "--data", _write(c.work / "val" / "notes.json", "{}").parent, "--json",
        c.work / "val" / "notes.json"], ("--json", "inside the input folder")),
    # 2. folder walks
    Case("walk-file-link-into-other-class", "validate", lambda c: ["validate", c.onnx, "--data",
                                                                  _linked_val(c, "file")], ("borrowed.png", "class")),
    Case("walk-folder-link-into-other-class", "validate", lambda c: ["validate", c.onnx, "--data",
                                                                    _linked_val(c, "folder")], ("more", "class")),
    Case("walk-file-link-into-other-split", "validate", lambda c: ["validate", c.onnx, "--data",
                                                                  _linked_val(c, "split")], ("from_train.png", "class")),
    Case("walk-class-folder-alias", "validate", lambda c: ["validate", c.onnx, "--data", _linked_val(c, "alias")],
         ("zz_alias", "same folder")),
    Case("walk-calibration-link-into-other-class", "quantize", lambda c: [
        "quantize", c.onnx, "-o", c.work / "q.onnx", "--calib", _linked_val(c, "file")], ("borrowed.png", "class")),
    Case("walk-two-links-one-file", "validate", lambda c: ["validate", c.onnx, "--data", _linked_val(c, "twice"),
                                                          *VAL_ARGS], outcome="skipped", skipped=0),
    # 3. metadata against the artifact
    Case("meta-classes-disagree-with-graph", "validate", lambda c: [
        "validate", small_classifier(c.work / "m.onnx", names=_names(c), meta={"num_classes": 5, "class_names": [
            *_names(c), "extra"]}), "--data", c.data / "val"], ("m.onnx", "5 classes")),
    Case("meta-crop-disagrees-with-graph", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx", names=_names(c), meta={
            "preprocess": {"resize": 146, "crop": 128}})], ("m.onnx", "128 px")),
    Case("meta-std-zero", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx", names=_names(c), meta={
            "preprocess": {"resize": 73, "crop": 64, "std": [0, 1, 1]}})], ("m.onnx", "std")),
    Case("meta-resize-absurd", "bench", lambda c: [
        "bench", small_classifier(c.work / "m.onnx", names=_names(c), meta={
            "preprocess": {"resize": 10**7, "crop": 64}}), *QUICK], ("m.onnx", "damaged")),
    Case("meta-resize-below-crop", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx", names=_names(c), meta={
            "preprocess": {"resize": 32, "crop": 64}})], ("m.onnx", "resize 32 is smaller than crop 64")),
    Case("number-byo-resize-below-crop", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx"), "--resize", "10"],
         ("--resize", "smaller than crop 64")),
    Case("meta-mean-absurd", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx", names=_names(c), meta={
            "preprocess": {"resize": 73, "crop": 64, "mean": [1e308, 0, 0]}})], ("m.onnx", "mean")),
    Case("meta-names-count-mismatch", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx", names=_names(c), meta={
            "class_names": ["a"]})], ("m.onnx", "class names")),
    Case("meta-int8-on-fp32-graph", "bench", lambda c: [
        "bench", small_classifier(c.work / "m.onnx", names=_names(c), meta={"precision": "int8"}), *QUICK],
         ("m.onnx", "says int8", "FP32 graph")),
    Case("meta-fp16-on-fp32-graph", "bench", lambda c: [
        "bench", small_classifier(c.work / "m.onnx", names=_names(c), meta={"precision": "fp16"}), *QUICK],
         ("m.onnx", "says fp16", "FP32 graph")),
    Case("meta-ckpt-int8", "validate", lambda c: ["validate", _ckpt_with(c, "q.pt", precision="int8"), "--data",
                                                 c.data / "val"], ("q.pt", "says int8", "FP32 weights")),
    Case("meta-ckpt-embedded", "validate", lambda c: ["validate", _ckpt_with(c, "e.pt", preprocess={
        "resize": 73, "crop": 64, "embedded": True}), "--data", c.data / "val"], ("e.pt", "embedded", "float input")),
    Case("meta-class-names-prop-disagrees", "predict", lambda c: [
        "predict", c.image(), "--model", _onnx_prop(c, "m.onnx", "class_names", "a,b,c,d")], ("m.onnx", "class_names")),
    Case("meta-two-outputs", "bench", lambda c: ["bench", small_classifier(c.work / "m.onnx", outputs=2), *QUICK],
         ("m.onnx", "2 outputs")),
    Case("meta-ckpt-classes-before-allocation", "export", lambda c: [
        "export", _ckpt_with(c, "big.pt", num_classes=90000, class_names=[f"c{i}" for i in range(90000)]), "-o",
        c.work / "m.onnx"], ("big.pt", "fc.weight")),
    Case("meta-ckpt-widths-before-allocation", "validate", lambda c: [
        "validate", _ckpt_with(c, "wide.pt", arch_config={"channels": {"conv1": 10**7}}), "--data", c.data / "val"],
         ("wide.pt", "conv1.weight")),
    Case("meta-ckpt-channels-not-a-mapping", "export", lambda c: [
        "export", _ckpt_with(c, "odd.pt", arch_config={"channels": [1, 2]}), "-o", c.work / "m.onnx"],
         ("odd.pt", "damaged")),
    Case("meta-ir-damaged", "bench", lambda c: ["bench", _ir_with(c, IR["xml"], '<meta value="{', '<meta value="{x'),
                                               *QUICK], ("model.xml", "damaged")),
    Case("meta-ir-framework-copy-disagrees", "validate", lambda c: [
        "validate", _ir_with(c, IR["xml"], '<class_names value="[&quot;', '<class_names value="[&quot;x', "<framework>"),
        "--data", c.data / "val"], ("model.xml", "rt_info framework/class_names", "disagrees", "on class 0's name")),
    Case("meta-ir-framework-preprocess-disagrees", "validate", lambda c: [
        "validate", _ir_with(c, IR["xml"], "0.485", "0.5", "<framework>"), "--data", c.data / "val"],
         ("model.xml", "rt_info framework/rtk.meta", "on preprocess mean", "0.5")),
    Case("meta-empty-class-name", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx", names=_names(c), meta={
            "class_names": [*_names(c)[:-1], " "]})], ("m.onnx", "empty name")),
    Case("meta-nan-weights-export", "export", lambda c: ["export", _nan_ckpt(c, "nan.pt"), "-o", c.work / "m.onnx"],
         ("nan.pt", "NaN or Inf", "layer2.0.conv1.weight")),
    Case("meta-nan-weights-prune", "prune", lambda c: ["prune", _nan_ckpt(c, "nan.pt"), "-o", c.work / "p.pt",
                                                      "--ratio", "0.3"], ("nan.pt", "NaN or Inf")),
    Case("clobber-compile-onto-external-data", "compile", lambda c: [
        "compile", _external(c), "--target", "openvino", "-o", c.work / "ext" / "model.xml"],
         ("model.xml", "would overwrite the input")),
    Case("clobber-finetune-json-onto-history", "finetune", lambda c: [
        "finetune", "--data", c.data, "-o", c.work / "f.pt", "--json", c.work / "f.history.json"],
         ("f.history.json", "also the output")),
    Case("meta-one-class-finetune", "finetune", lambda c: ["finetune", "--data", _one_class(c), "-o", c.work / "f.pt"],
         ("1 class folder", "at least 2 classes")),
    Case("byo-flags-on-rtk-model", "predict", lambda c: ["predict", c.image(), "--model", c.onnx, "--std", "0.5,0.5,0.5"],
         ("carries rtk metadata", "leave them out")),
    Case("number-prune-ratio-beyond-cap", "prune", lambda c: ["prune", c.ckpt, "-o", c.work / "p.pt", "--ratio",
                                                              "0.999"], ("--ratio", "0.9")),
    Case("read-photo-too-elongated", "predict", lambda c: ["predict", _wide_png(c), "--model", c.onnx],
         ("wide.png", "too elongated")),
    Case("read-newline-in-path", "predict", lambda c: ["predict", c.image(), "--model",
                                                      c.work / "nope\nerror: all good.onnx"], ("\\n",)),
    Case("place-name-too-long", "bench", lambda c: ["bench", c.onnx, *QUICK, "--json", c.work / ("a" * 300 + ".json")],
         ("File name too long", "shorter path")),
    Case("meta-ir-disagrees-with-graph", "validate", lambda c: [
        "validate", _ir_with(c, IR["xml"], "&quot;crop&quot;: 64", "&quot;crop&quot;: 72"), "--data", c.data / "val"],
         ("model.xml", "72 px")),
    # 4. numbers at the boundary (CLI and recipe alike)
    Case("number-runs-zero", "bench", lambda c: ["bench", c.onnx, "--runs", "0"], ("--runs 0",)),
    Case("number-runs-absurd", "bench", lambda c: ["bench", c.onnx, "--runs", "1000000000000"], ("--runs",)),
    Case("number-batch-absurd", "bench", lambda c: ["bench", c.onnx, "--batch", "1,100000"], ("--batch",)),
    Case("number-seconds-nan", "bench", lambda c: ["bench", c.onnx, "--seconds", "nan"], ("--seconds", "finite")),
    Case("number-gate-inf", "validate", lambda c: ["validate", c.onnx, "--data", c.data / "val", "--reference", c.onnx,
                                                  "--max-drop", "inf"], ("--max-drop", "finite")),
    Case("number-seed-negative", "export", lambda c: ["export", "--weights", "random", "--seed", "-1", "-o",
                                                     c.work / "m.onnx"], ("--seed",)),
    Case("number-seed-beyond-rng", "data synth", lambda c: ["data", "synth", c.work / "d", "--seed", str(2**40)],
         ("--seed",)),
    Case("number-num-classes-absurd", "export", lambda c: ["export", "--weights", "random", "--num-classes",
                                                          "1000000000", "-o", c.work / "m.onnx"], ("--num-classes",)),
    Case("number-num-classes-one", "export", lambda c: ["export", "--weights", "random", "--num-classes", "1", "-o",
                                                       c.work / "m.onnx"], ("--num-classes 1", "at least 2")),
    Case("number-std-tiny", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx"), "--std", "1e-50,1,1"],
         ("--std", "0.001..255")),
    Case("number-caffe-with-channels", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx"), "--caffe", "--channels", "RGB"],
         ("--caffe", "--channels", "not both")),
    Case("number-not-a-number", "bench", lambda c: ["bench", c.onnx, "--runs", "many"], ("--runs", "rtk bench")),
    Case("number-unknown-flag", "bench", lambda c: ["bench", c.onnx, "--rnus", "3"], ("--rnus",)),
    Case("number-missing-option", "validate", lambda c: ["validate", c.onnx], ("--data",)),
    Case("number-compare-tolerance-nan", "compare", lambda c: ["compare", _report(c, "a.json"), _report(c, "b.json"),
                                                              "--tolerance", "nan"], ("--tolerance",)),
    Case("number-recipe-gate-nan", "recipe check", lambda c: ["recipe", "check", _recipe(
        c, RECIPE + "gates:\n  max_drop_pt: .nan\n")], ("r.yaml:8", "finite")),
    Case("number-recipe-seed-beyond-rng", "recipe check", lambda c: ["recipe", "check", _recipe(
        c, RECIPE + f"seed: {2**40}\n")], ("r.yaml:7", "seed")),
    Case("number-recipe-seed-bool", "recipe check", lambda c: ["recipe", "check", _recipe(c, RECIPE + "seed: true\n")],
         ("r.yaml:7", "seed", "not a number")),
    Case("number-recipe-batch-zero", "run", lambda c: ["run", _recipe(c, RECIPE + "bench:\n  batches: [0]\n"), "-o",
                                                      c.work / "o"], ("r.yaml:8", "batch")),
    Case("read-labels-device", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx"), "--labels", "/dev/zero"],
         ("--labels /dev/zero", "not a regular file")),
    Case("read-labels-fifo", "predict", lambda c: [
        "predict", c.image(), "--model", small_classifier(c.work / "m.onnx"), "--labels", _fifo(c, "labels.txt")],
         ("labels.txt", "not a regular file")),
    Case("read-photo-fifo", "predict", lambda c: ["predict", _fifo(c, "photo.jpg"), "--model", c.onnx],
         ("photo.jpg", "not a regular file")),
    Case("read-recipe-fifo", "recipe check", lambda c: ["recipe", "check", _fifo(c, "r.yaml")],
         ("r.yaml", "not a regular file")),
    # 5. non-finite outputs
    Case("nan-logits-bench", "bench", lambda c: ["bench", small_classifier(c.work / "nan.onnx", fill=float("nan")),
                                                *QUICK], ("nan.onnx", "NaN")),
    Case("nan-logits-predict", "predict", lambda c: ["predict", c.image(), "--model", small_classifier(
        c.work / "nan.onnx", fill=float("nan"))], ("nan.onnx", "NaN")),
    Case("inf-logits-validate", "validate", lambda c: ["validate", small_classifier(
        c.work / "inf.onnx", fill=float("inf"), names=_names(c)), "--data", c.data / "val"], ("inf.onnx", "NaN/Inf")),
    # 6. strict recipes and reports
    Case("recipe-quantize-with-fp32-compile", "recipe check", lambda c: ["recipe", "check", _recipe(
        c, RECIPE + "quantize: {subset: 16}\ncompile: {precision: fp32}\n")],
         ("compile.precision fp32 and a quantize: block", "set compile.precision auto, or drop quantize")),
    Case("recipe-duplicate-key", "recipe check", lambda c: ["recipe", "check", _recipe(
        c, RECIPE + "gates:\n  max_drop_pt: 1\n  max_drop_pt: 50\n")], ("r.yaml:9", "twice", "lines 8 and 9")),
    Case("recipe-root-is-a-file", "recipe check", lambda c: ["recipe", "check", _data_recipe(c, root=c.onnx)],
         ("data.root", "is a file")),
    Case("recipe-source-is-a-folder", "recipe check", lambda c: ["recipe", "check", _recipe(
        c, DATA_RECIPE.format(root=c.data).replace("source: random", f"source: {c.data}"))], ("model.source",)),
    Case("recipe-wrong-kind-before-run-writes", "run", lambda c: [
        "run", _data_recipe(c, f"quantize:\n  calib_list: {c.data}\n"), "-o", c.work / "o"],
         ("quantize.calib_list", "is a folder")),
    Case("compare-hand-edited-report", "compare", lambda c: ["compare", _report(c, "a.json"), _write(
        c.work / "b.json", json.dumps({"rows": [{"name": "fp32", "target": "onnxruntime"}]}))], ("b.json", "valid")),
    Case("compare-nan-in-report", "compare", lambda c: ["compare", _report(c, "a.json"), _write(
        c.work / "b.json", _report(c, "b0.json").read_text().replace('"top1": 50.0', '"top1": NaN'))],
         ("b.json", "NaN")),
    *[Case(f"compare-{edit}", "compare", lambda c, edit=edit: ["compare", _report(c, "a.json"), _edited_report(
        c, edit)], ("b.json", words)) for edit, words in (
        ("dupkey", "given twice"), ("order", "out of order"), ("floor", "latency"), ("twice", "listed twice"),
        ("perclass", "per-class"), ("throughput", "throughput"), ("top5", "top-5 below its top-1"),
        ("cosine", "cosine"), ("ci", "reversed"), ("norepeats", "without its repeats"), ("runs", "no runs"),
        ("images", "validation_images"), ("booltop1", "rows.0.top1"))],
    Case("compare-zero-latency", "compare", lambda c: ["compare", _report(c, "a.json", p50_repeats=[0.0, 0.0, 0.0]),
                                                      _report(c, "b.json")], ("a.json", "latency")),
]


def _digest(folder: Path) -> dict[str, str]:
    """Every entry under `folder`: file contents by sha256, links by target, folders by name."""
    out = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        if p.is_symlink():
            out[key] = "-> " + os.readlink(p)
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_safety_catalogue(case: Case, cli, tmp_path, tiny_data, random_onnx, random_ckpt, random_ir):
    IR["xml"] = random_ir
    work = tmp_path / "work"
    work.mkdir()
    ctx = Ctx(work=work, data=tiny_data, onnx=random_onnx, ckpt=random_ckpt, trunc=random_onnx)
    args = case.build(ctx)
    report = tmp_path / "v.json"
    if case.outcome == "skipped":
        args = [*args, "--json", report]
    before = _digest(work)
    result = cli(*args)
    if case.outcome == "refused":
        assert result.exit_code == 2, (result.exit_code, result.stdout[-500:], result.stderr[-1500:])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        for fragment in case.names:
            assert fragment in lines[0], (fragment, lines[0])
        assert _digest(work) == before, "an input changed or an output was left behind"
        return
    assert result.exit_code == 0, (result.stdout[-500:], result.stderr[-1500:])
    data = json.loads(report.read_text())
    assert data["skipped"] == case.skipped
    assert data["images"] == len(list((tiny_data / "val").rglob("*.png"))) + case.images_added


def test_safety_catalogue_is_documented():
    text = DOC.read_text(encoding="utf-8")
    missing = [c.id for c in CASES if f"`{c.id}`" not in text]
    assert not missing, missing


def test_run_folder_is_locked(cli, tmp_path):
    """While a run holds its folder (the lock taken here, as a first `rtk run` holds it), a second
    `rtk run --force` on it is refused with one line and writes nothing."""
    from toolkit.pipeline.run import run_lock

    recipe = _write(tmp_path / "r.yaml", RECIPE)
    out = tmp_path / "o"
    with run_lock(out):
        before = _digest(out)
        result = cli("run", recipe, "-o", out, "--force")
        assert _digest(out) == before
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().startswith("error:") and "another rtk run" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_pair_is_never_mixed(tmp_path, monkeypatch):
    """Replacing an IR pair stopped between its moves leaves no old .xml beside a new .bin: the old head goes
    first, so a reader finds the pair whole or the .xml missing, never two models."""
    from toolkit import io

    xml, bin_ = tmp_path / "model.xml", tmp_path / "model.bin"
    xml.write_text("old xml")
    bin_.write_text("old bin")
    real_replace = os.replace
    moves = []

    def stop_after_first(src, dst):
        real_replace(src, dst)
        moves.append(dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(io.os, "replace", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_outputs(xml, bin_) as (tx, tb):
            tx.write_text("new xml")
            tb.write_text("new bin")
    assert moves == [bin_] and bin_.read_text() == "new bin"
    assert not xml.exists(), "an old .xml sits beside a new .bin"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


def test_json_is_strict_and_non_finite_is_null(tmp_path):
    from toolkit.io import write_json

    path = tmp_path / "r.json"
    write_json(path, {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf"), "e": 2.5}})

    def refuse(name):
        raise ValueError(name)

    assert json.loads(path.read_text(), parse_constant=refuse) == {"a": None, "b": [1.0, None],
                                                                   "c": {"d": None, "e": 2.5}}


def test_foreign_onnx_is_not_called_resnet50(tmp_path):
    from toolkit.backends import read_meta

    meta = read_meta(small_classifier(tmp_path / "foreign.onnx", classes=7, size=48))
    assert meta.arch == "unknown" and meta.num_classes == 7 and meta.preprocess.crop == 48
    assert meta.provenance["source"] == "foreign-onnx"


def test_quantize_and_compile_create_the_output_folders(cli, tmp_path, tiny_data):
    """-o new/dir/model.xml: every missing folder is made (issue #18 names exactly this path)."""
    model = small_classifier(tmp_path / "m.onnx", names=sorted(p.name for p in (tiny_data / "val").iterdir()))
    out = tmp_path / "new" / "int8" / "model.xml"
    result = cli("quantize", model, "-o", out, "--calib", tiny_data / "train", "--target", "openvino",
                 "--allow-small", "--bench-runs", "0")
    assert result.exit_code == 0, result.stderr
    assert out.is_file() and out.with_suffix(".bin").is_file()
    ir = tmp_path / "new2" / "ir" / "model.xml"
    result = cli("compile", model, "--target", "openvino", "-o", ir)
    assert result.exit_code == 0, result.stderr
    assert ir.is_file() and ir.with_suffix(".bin").is_file()


def test_gif_is_an_image_in_predict_and_in_data_folders(cli, tmp_path, tiny_data, random_onnx):
    from PIL import Image

    from toolkit.images import scan_folder

    val = tmp_path / "val"
    shutil.copytree(tiny_data / "val", val)
    first = sorted(p for p in val.iterdir() if p.is_dir())[0]
    Image.open(sorted(first.iterdir())[0]).convert("P").save(first / "frame.gif")
    assert str(first / "frame.gif") in [p for p, _ in scan_folder(val).samples]
    result = cli("predict", first / "frame.gif", "--model", random_onnx)
    assert result.exit_code == 0, result.stderr
    from toolkit.predict import image_paths

    frames = [Image.new("RGB", (80, 60), (40 * i, 0, 0)) for i in range(3)]      # animated: its first frame is read
    frames[0].save(first / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    skipped: list[str] = []
    found = [str(p) for p in image_paths([first], skipped)]      # a folder given to predict / bench --images
    assert {str(first / "frame.gif"), str(first / "anim.gif")} <= set(found) and skipped == []


def test_a_killed_runs_temporaries_are_removed(tmp_path):
    """What fresh_temp_name made before a SIGKILL is removed on --resume/--force; nothing else is."""
    from toolkit.io import fresh_temp_name, remove_leftover_temps

    run = tmp_path / "run"
    (run / "int8").mkdir(parents=True)
    staged = fresh_temp_name(run / "int8", ".model.int8.onnx.")
    staged.mkdir()
    (staged / "model.int8.onnx").write_bytes(b"half")
    temp = fresh_temp_name(run, ".report.json.", ".tmp")
    temp.write_text("{")
    keep = [run / "int8" / "model.int8.onnx", run / ".rtk" / "state.json", run / ".hidden", run / "report.json"]
    for path in keep:
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    assert sorted(remove_leftover_temps(run)) == sorted([staged, temp])
    assert not staged.exists() and not temp.exists() and all(p.is_file() for p in keep)


def test_compare_says_when_the_image_sets_differ(cli, tmp_path):
    """Top-1 of two reports over different image counts is not like with like: compare says so on stderr and in
    its JSON, and still judges the change (a drop fails the gate rather than hiding behind the note)."""
    from types import SimpleNamespace

    ctx = SimpleNamespace(work=tmp_path)
    a = _report(ctx, "a.json")
    b = _report(ctx, "b.json", top1=40.0)
    b.write_text(b.read_text().replace('"validation_images": 8', '"validation_images": 500'))
    result = cli("compare", a, b, "--json", tmp_path / "c.json")
    assert result.exit_code == 1, result.stderr
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["notes"] == [f"top-1 was measured on 8 images in {a} and 500 in {b}: the accuracy changes compare "
                             "different image sets"]
    assert data["rows"][0]["accuracy"] == "lower"
    assert "different image sets" in result.stderr


@pytest.mark.parametrize("given", ["photos", "photos/sub", ".", "both"])
def test_a_json_folder_inside_the_input_is_answered_with_a_path_outside_it(given, cli, tmp_path, random_onnx,
                                                                            monkeypatch):
    """`--json` naming the photo folder (or a folder in it) is refused, and the file name it suggests is not one
    that would be refused next as inside the input folder."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(photos / "a.jpg")
    monkeypatch.chdir(photos if given == "." else tmp_path)
    if given == ".":
        result = cli("bench", random_onnx, "--images", ".", "--json", given)
    elif given == "both":       # two input folders, one holding the other's parent: the example clears both
        result = cli("predict", "photos", ".", "--model", random_onnx, "--json", "photos")
    else:
        result = cli("bench", random_onnx, "--images", "photos", "--json", given)
    assert result.exit_code == 2 and "is a folder; give a file name, e.g. " in result.stderr, result.stderr
    suggested = Path(os.path.abspath(result.stderr.split("e.g. ")[1].split()[0]))
    assert suggested.name == "result.json" and not suggested.is_relative_to(tmp_path if given == "both" else photos)
