"""The commands that make artifacts: data synth, finetune, export, prune, quantize, compile.

Each builds its stage's settings model from its flags (`flags.build`), then either runs one library call or,
with --dump-recipe, writes that model into the recipe that replays it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit import console as ui
from toolkit.cli.app import DumpOpt, JsonOpt, ThreadsOpt, app, command, data_app, dump, emit_json, recipe_name
from toolkit.artifact import describing
from toolkit.cli.flags import build, default, opt
from toolkit.cli.foreign import (CaffeOpt, ChannelsOpt, CropOpt, InterpOpt, LabelsOpt, LayoutOpt, MeanOpt,
                                 ResizeOpt, StdOpt, foreign_from)
from toolkit.errors import GateFailed, RtkError
from toolkit.settings import SEED_MAX
from toolkit.settings import (CompileSettings as C, ExportSettings as E, FinetuneSettings as F, PruneSettings as P,
                              QuantizeSettings as Q, SynthSettings as S)


@data_app.command("synth")
@command
def data_synth(
    root: Annotated[Path, typer.Argument(help="Folder to create (train/ and val/ inside).")],
    classes: Annotated[int, opt(S, "classes")] = default(S, "classes"),
    per_class: Annotated[int, opt(S, "per_class")] = default(S, "per_class"),
    val_per_class: Annotated[int, opt(S, "val_per_class")] = default(S, "val_per_class"),
    size: Annotated[int, opt(S, "size")] = default(S, "size"),
    seed: Annotated[int, opt(S, "seed")] = default(S, "seed"),
    json: JsonOpt = None,
) -> None:
    """Write the built-in labeled data set of procedurally drawn images (an ImageFolder tree)."""
    from toolkit.synth import synth

    s = build(S, classes=classes, per_class=per_class, val_per_class=val_per_class, size=size, seed=seed)
    from toolkit.io import file_in_the_way

    if root.exists() and not root.is_dir():
        raise RtkError(f"{root} is a file; give a folder to create")
    blocker = file_in_the_way(root)
    if blocker is not None:
        raise RtkError(f"{root}: {blocker} is a file, not a folder; choose another folder")
    if root.exists() and any(root.iterdir()):
        raise RtkError(f"{root} already exists and is not empty; choose a new folder or delete it")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)   # `rtk data synth data/shapes` on a fresh clone makes data/
    except OSError as exc:
        raise RtkError(f"cannot create {root.parent} ({exc.strerror}); choose another folder") from None
    with ui.progress("data synth") as progress:
        try:
            summary = synth(root, classes=s.classes, per_class=s.per_class, val_per_class=s.val_per_class,
                            size=s.size, seed=s.seed, progress=progress)
        except ValueError as exc:
            raise RtkError(str(exc)) from None
    ui.ok(f"wrote {summary.train} train + {summary.val} val images of {len(summary.classes)} classes to {root}")
    emit_json(json, {"root": str(root), "classes": summary.classes, "train": summary.train, "val": summary.val,
                     "size": summary.size, "seed": summary.seed})


def _finetuned(kwargs: dict) -> list[tuple[str, Path, tuple[str, ...]]]:
    """The checkpoint and the training history written beside it (toolkit.finetune: .history.json and .png)."""
    output = Path(kwargs["output"])
    return [("-o", output, (".pt",)), ("-o", output.with_suffix(".history.json"), (".json",)),
            ("-o", output.with_suffix(".history.png"), (".png",))]


@app.command()
@command(writes={"output": _finetuned})
def finetune(
    data: Annotated[Path, typer.Option(help="ImageFolder root with train/ and val/ (or class folders).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint to write (.pt).")],
    weights: Annotated[str, typer.Option(help="Start from: imagenet-v1, imagenet-v2, none (scratch), or a .pt.")] = "none",
    freeze_backbone: Annotated[bool, opt(F, "freeze_backbone")] = default(F, "freeze_backbone"),
    epochs: Annotated[int, opt(F, "epochs")] = default(F, "epochs"),
    batch_size: Annotated[int, opt(F, "batch_size")] = default(F, "batch_size"),
    lr: Annotated[Optional[float], opt(F, "lr")] = default(F, "lr"),
    augment: Annotated[str, opt(F, "augment")] = default(F, "augment"),
    input_size: Annotated[Optional[int], typer.Option(help="Training/eval input side (default: the model's, "
                                                             "or the images' size for --weights none).",
                                                      min=16, max=4096)] = None,
    seed: Annotated[int, typer.Option(help="Seed for init, shuffling and augmentation.", min=0, max=SEED_MAX)] = 0,
    threads: ThreadsOpt = None,
    json: JsonOpt = None,
    dump_recipe: DumpOpt = None,
) -> None:
    """Transfer-learn a ResNet50 on a folder of images (new head), or train it from scratch."""
    settings = build(F, freeze_backbone=freeze_backbone, epochs=epochs, batch_size=batch_size, lr=lr,
                     augment=augment, threads=threads)
    if dump_recipe:
        return dump(dump_recipe, "finetune", name=recipe_name("finetune", data), seed=seed,
                    data={"root": str(data)}, model={"source": weights, "input_size": input_size}, finetune=settings)
    from toolkit.finetune import finetune as run

    with ui.progress("finetune", keep=True) as progress:
        result = run(settings, data=data, output=output, weights=weights, input_size=input_size, seed=seed,
                     progress=progress)
    ui.show_finetune(result)
    emit_json(json, result)


def _described(model: Path, dump_recipe: Path | None, **options):
    """The foreign-model description the options give; a recipe cannot carry one (it starts from rtk artifacts)."""
    described = foreign_from([model], **options)
    if described is not None and dump_recipe:
        raise RtkError("--dump-recipe: a recipe starts from an rtk artifact; quantize or compile the model once with "
                       "--labels and its preprocessing, then dump the recipe for what rtk wrote")
    return described


def _source(model: str | Path) -> str:
    if Path(str(model)).suffix.lower() == ".xml":
        raise RtkError("recipes start from a .pt checkpoint or an .onnx model; dump the recipe for the ONNX the IR "
                       "came from")
    return str(model)


@app.command()
@command(writes={"output": (".onnx",)})
def export(
    model: Annotated[Optional[Path], typer.Argument(help="rtk checkpoint or torchvision state dict (.pt).")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="ONNX file to write.")] = Path("model.onnx"),
    weights: Annotated[Optional[str], typer.Option(help="Instead of MODEL: imagenet-v1, imagenet-v2 or random.")] = None,
    num_classes: Annotated[Optional[int], typer.Option(help="Classes of a plain state dict or a random model.")] = None,
    opset: Annotated[int, opt(E, "opset")] = default(E, "opset"),
    dynamic_batch: Annotated[bool, opt(E, "dynamic_batch", "--dynamic-batch/--static-batch")] = default(E, "dynamic_batch"),
    batch: Annotated[int, opt(E, "batch")] = default(E, "batch"),
    input_size: Annotated[Optional[int], typer.Option(help="Input side (default: the checkpoint's; 224 for torchvision weights).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Images for the parity check (default: built-in drawings).")] = None,
    atol: Annotated[float, opt(E, "atol")] = default(E, "atol"),
    seed: Annotated[int, typer.Option(help="Seed of a random model.", min=0, max=SEED_MAX)] = 0,
    json: JsonOpt = None,
    dump_recipe: DumpOpt = None,
) -> None:
    """Export to ONNX, run the checker and shape inference, and prove ONNX Runtime matches PyTorch."""
    if (model is None) == (weights is None):
        raise RtkError("give either a checkpoint MODEL or --weights imagenet-v1|imagenet-v2|random")
    settings = build(E, opset=opset, dynamic_batch=dynamic_batch, batch=batch, atol=atol)
    if dump_recipe:
        from toolkit.images import split_dir

        source = model or weights
        return dump(dump_recipe, "export", name=recipe_name("export", source), seed=seed,
                    data={"validation": str(split_dir(data, "val"))} if data else {},   # as the export below reads it
                    model={"source": _source(source), "num_classes": num_classes, "input_size": input_size},
                    export=settings, **({} if settings.dynamic_batch else {"bench": {"batches": [settings.batch]}}))
    from toolkit.export import export_onnx
    from toolkit.models import load_model

    net, meta = load_model(model or weights, num_classes=num_classes, seed=seed, input_size=input_size)
    if data is not None:
        from toolkit.data import split_dir

        data = split_dir(data, "val")
    with ui.progress("exporting and checking parity"):
        result = export_onnx(net, meta, output, settings=settings, data=data, parent=model)
    ui.show_export(result)
    emit_json(json, result)


@app.command()
@command(writes={"output": (".pt",)})
def prune(
    model: Annotated[Path, typer.Argument(help="rtk checkpoint or torchvision state dict (.pt) of a ResNet50.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Pruned checkpoint to write (.pt).")],
    structured: Annotated[bool, typer.Option("--structured", help="Remove whole channels: fewer MACs on every "
                                                                  "runtime (the default).")] = False,
    unstructured: Annotated[bool, typer.Option("--unstructured", help="Zero single weights (nncf.prune); no speed-up "
                                                                      "on dense runtimes.")] = False,
    ratio: Annotated[Optional[float], opt(P, "ratio")] = default(P, "ratio"),
    sparsity: Annotated[Optional[float], opt(P, "sparsity")] = default(P, "sparsity"),
    importance: Annotated[str, opt(P, "importance")] = default(P, "importance"),
    global_pruning: Annotated[Optional[bool], opt(P, "global_pruning", "--global/--uniform")] = default(P, "global_pruning"),
    round_to: Annotated[int, opt(P, "round_to")] = default(P, "round_to"),
    target_latency_ms: Annotated[Optional[float], opt(P, "target_latency_ms")] = default(P, "target_latency_ms"),
    target: Annotated[Optional[str], opt(P, "target")] = default(P, "target"),
    keep_best: Annotated[bool, opt(P, "keep_best")] = default(P, "keep_best"),
    finetune: Annotated[Optional[Path], typer.Option("--finetune", help="ImageFolder (train/ val/) for BN "
                        "adaptation, recovery fine-tuning and val top-1 before/after.")] = None,
    epochs: Annotated[int, opt(P, "epochs")] = default(P, "epochs"),
    lr: Annotated[float, opt(P, "lr")] = default(P, "lr"),
    batch_size: Annotated[int, opt(P, "batch_size")] = default(P, "batch_size"),
    distill: Annotated[bool, opt(P, "distill")] = default(P, "distill"),
    temperature: Annotated[float, opt(P, "temperature")] = default(P, "temperature"),
    augment: Annotated[str, opt(P, "augment")] = default(P, "augment"),
    measure: Annotated[str, typer.Option(help="Runtimes timed before/after, comma-separated, or none (default: "
                                              "onnxruntime; unstructured adds openvino).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for calibration and recovery.", min=0, max=SEED_MAX)] = 0,
    threads: ThreadsOpt = None,
    json: JsonOpt = None,
    dump_recipe: DumpOpt = None,
) -> None:
    """Prune a ResNet50: structured channels (real speed) or unstructured sparsity, then recover accuracy."""
    if structured and unstructured:
        raise RtkError("give --structured or --unstructured, not both")
    timed = None if measure == "auto" else [m.strip() for m in measure.split(",") if m.strip() not in ("", "none")]
    settings = build(P, mode="unstructured" if unstructured else "structured", ratio=ratio, sparsity=sparsity,
                     importance=importance, global_pruning=global_pruning, round_to=round_to,
                     target_latency_ms=target_latency_ms, target=target, keep_best=keep_best, epochs=epochs, lr=lr,
                     batch_size=batch_size, distill=distill, temperature=temperature, augment=augment,
                     measure=timed, threads=threads, flags={"global_pruning": "--global/--uniform"})
    if dump_recipe:
        if finetune is None:
            raise RtkError("a recipe needs data to validate the pruned model; add --finetune DATA")
        return dump(dump_recipe, "prune", name=recipe_name("prune", model), seed=seed, data={"root": str(finetune)},
                    model={"source": _source(model)}, prune=settings)
    from toolkit.prune import prune_model

    with ui.progress("prune") as progress:
        result = prune_model(model, output=output, settings=settings, data=finetune, seed=seed, progress=progress)
    ui.show_prune(result)
    emit_json(json, result)
    if not result:
        raise GateFailed(result.message)


@app.command()
@command(writes={"output": (".onnx", ".xml")})
def quantize(
    model: Annotated[Path, typer.Argument(help="FP32 model: .onnx, or an OpenVINO IR .xml for --target openvino.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="INT8 model to write: .onnx (QDQ), or .xml (INT8 IR) for --target openvino.")],
    calib: Annotated[str, typer.Option(help="Calibration images folder (class sub-folders optional), or 'random' "
                                            "for speed tests only.")],
    target: Annotated[str, typer.Option(help="onnxruntime, openvino or tensorrt: picks the INT8 form.")] = "onnxruntime",
    int8: Annotated[bool, typer.Option("--int8", help="INT8 post-training quantization (the only mode).")] = True,
    subset: Annotated[Optional[int], opt(Q, "subset")] = default(Q, "subset"),
    calib_list: Annotated[Optional[Path], opt(Q, "calib_list")] = default(Q, "calib_list"),
    seed: Annotated[int, typer.Option(help="Seed of the class-balanced calibration pick.", min=0, max=SEED_MAX)] = 0,
    allow_small: Annotated[bool, opt(Q, "allow_small")] = default(Q, "allow_small"),
    max_drop: Annotated[Optional[float], opt(Q, "max_drop")] = default(Q, "max_drop"),
    val: Annotated[Optional[Path], typer.Option(help="Labeled folder for top-1 FP32 vs INT8 (and --max-drop).")] = None,
    bench_runs: Annotated[int, opt(Q, "bench_runs")] = default(Q, "bench_runs"),
    bias_correction: Annotated[str, opt(Q, "bias_correction")] = default(Q, "bias_correction"),
    isa: Annotated[Optional[str], opt(Q, "isa")] = default(Q, "isa"),
    json: JsonOpt = None,
    dump_recipe: DumpOpt = None,
    labels: LabelsOpt = None, resize: ResizeOpt = None, crop: CropOpt = None, mean: MeanOpt = None, std: StdOpt = None,
    interpolation: InterpOpt = None, layout: LayoutOpt = None, channels: ChannelsOpt = None, caffe: CaffeOpt = False,
) -> None:
    """Post-training INT8 for a target (NNCF on CPU, signed QDQ for TensorRT) with size, top-1 and speed vs FP32."""
    if not int8:
        raise RtkError("only --int8 is supported; for FP16 use `rtk compile`")
    settings = build(Q, form="ir" if output.suffix.lower() == ".xml" else "onnx", subset=subset,
                     calib_list=calib_list, allow_small=allow_small, max_drop=max_drop, bench_runs=bench_runs,
                     bias_correction=bias_correction, isa=isa)
    described = _described(model, dump_recipe, labels=labels, resize=resize, crop=crop, mean=mean, std=std,
                           interpolation=interpolation, layout=layout, channels=channels, caffe=caffe)
    if dump_recipe:
        if calib == "random":
            raise RtkError("a recipe calibrates on images; --calib random is for speed tests only")
        targets = ["tensorrt"] if target == "tensorrt" else sorted({"onnxruntime", target})
        return dump(dump_recipe, "quantize", name=recipe_name("quantize", model), seed=seed,
                    data={"calibration": calib, **({"validation": str(val)} if val else {})},
                    model={"source": _source(model)}, quantize=settings, compile={"targets": targets})
    from toolkit.quantize import quantize_int8

    with describing(described), ui.progress("quantize") as progress:
        result = quantize_int8(model, output=output, calib=calib if calib == "random" else Path(calib),
                               target=target, settings=settings, val=val, seed=seed, progress=progress)
    ui.show_quantize(result)
    emit_json(json, result)


def _compiled(kw: dict) -> list:
    """What `rtk compile` writes: the IR `.xml` (+ `.bin`) or the engine (+ sidecar), from -o or beside the source."""
    source, output, target = Path(kw["source"]), kw.get("output"), kw.get("target")
    if kw.get("check_only") or target not in ("openvino", "tensorrt"):
        return []
    if target == "openvino":
        out = output or source.with_suffix(".xml")
        return [("-o", out if out.suffix.lower() == ".xml" else out / "model.xml", (".xml",))]
    return [("-o", output or source.with_suffix(".engine"), (".engine", ".plan"))]


def _timing_cache(kw: dict) -> list:
    """The TensorRT timing cache is read and then rewritten: an output that may not be any input or other output."""
    cache = kw.get("timing_cache")
    return [("--timing-cache", cache, ())] if cache is not None and kw.get("target") == "tensorrt" else []


@app.command("compile")
@command(writes={"output": _compiled, "timing_cache": _timing_cache})
def compile_(
    source: Annotated[Path, typer.Argument(help="ONNX model (FP32, FP16, or INT8 with Q/DQ nodes).")],
    target: Annotated[str, typer.Option(help="openvino (IR .xml + .bin) or tensorrt (.engine + .json sidecar).")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="OpenVINO: a folder (model.xml inside) "
                                                   "or a .xml path; TensorRT: a .engine path.")] = None,
    precision: Annotated[str, opt(C, "precision")] = default(C, "precision"),
    batch: Annotated[Optional[int], opt(C, "batch")] = default(C, "batch"),
    min_batch: Annotated[Optional[int], opt(C, "min_batch")] = default(C, "min_batch"),
    opt_batch: Annotated[Optional[int], opt(C, "opt_batch")] = default(C, "opt_batch"),
    max_batch: Annotated[Optional[int], opt(C, "max_batch")] = default(C, "max_batch"),
    workspace_mb: Annotated[Optional[int], opt(C, "workspace_mb")] = default(C, "workspace_mb"),
    timing_cache: Annotated[Optional[Path], opt(C, "timing_cache")] = default(C, "timing_cache"),
    version_compatible: Annotated[bool, opt(C, "version_compatible")] = default(C, "version_compatible"),
    check_only: Annotated[bool, opt(C, "check_only")] = default(C, "check_only"),
    calibration: Annotated[Optional[Path], typer.Option(help="OpenVINO INT8 with NNCF: image folder for a "
                                                              "model without Q/DQ.")] = None,
    calibration_samples: Annotated[int, opt(C, "calibration_samples")] = default(C, "calibration_samples"),
    embed_preprocess: Annotated[bool, opt(C, "embed_preprocess")] = default(C, "embed_preprocess"),
    json: JsonOpt = None,
    dump_recipe: DumpOpt = None,
    labels: LabelsOpt = None, resize: ResizeOpt = None, crop: CropOpt = None, mean: MeanOpt = None, std: StdOpt = None,
    interpolation: InterpOpt = None, layout: LayoutOpt = None, channels: ChannelsOpt = None, caffe: CaffeOpt = False,
) -> None:
    """Compile ONNX for OpenVINO (IR) or TensorRT (engine); --check-only lists what TensorRT would refuse."""
    settings = build(C, precision=precision, batch=batch, min_batch=min_batch, opt_batch=opt_batch,
                     max_batch=max_batch, workspace_mb=workspace_mb, timing_cache=timing_cache,
                     version_compatible=version_compatible, check_only=check_only,
                     calibration_samples=calibration_samples, embed_preprocess=embed_preprocess)
    described = _described(source, dump_recipe, labels=labels, resize=resize, crop=crop, mean=mean, std=std,
                           interpolation=interpolation, layout=layout, channels=channels, caffe=caffe)
    if dump_recipe:
        targets = ["tensorrt"] if target == "tensorrt" else ["onnxruntime", target]
        return dump(dump_recipe, "compile", name=recipe_name("compile", source),
                    data={"calibration": str(calibration)} if calibration else {},
                    model={"source": _source(source)}, compile={**settings.model_dump(), "targets": targets},
                    **({"bench": {"batches": [settings.batch]}} if settings.batch else {}))   # a fixed-batch artifact
    from toolkit.compile import compile_model

    with describing(described), ui.progress("compiling") as progress:
        result = compile_model(source, target=target, settings=settings, output=output, calibration=calibration,
                               progress=progress)
    ui.show_compile(result)
    emit_json(json, result)
    if not result:
        raise GateFailed(f"TensorRT would refuse {source}: "
                         f"{sum(f.severity == 'error' for f in result.findings)} errors")


__all__ = ["compile_", "data_synth", "export", "finetune", "prune", "quantize"]
