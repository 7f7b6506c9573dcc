"""The `rtk` command line: each command parses options, calls one library function, renders the result."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from toolkit import console as ui
from toolkit.errors import GateFailed, RtkError, missing_extra

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rtk: take a ResNet50 classifier from PyTorch to an edge runtime and prove it still works.")
data_app = typer.Typer(no_args_is_help=True, help="Data sets: the built-in synthetic set.")
app.add_typer(data_app, name="data")

JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Also write the result as JSON to this file.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Inference threads (default: the runtime's choice).")]
TargetOpt = Annotated[Optional[str], typer.Option(help="Runtime: torch, onnxruntime, openvino, tensorrt "
                                                       "(default: by file extension).")]
DumpOpt = Annotated[Optional[Path], typer.Option("--dump-recipe", help="Write the recipe that replays this "
                                                  "command with `rtk run`, and exit without running it.")]
_debug = {"on": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    _debug["on"] = debug


def command(fn: Callable) -> Callable:
    """Turn library errors into one line on stderr and the documented exit codes (2 input, 1 gate).

    An optional package missing from this install (torch for a making command, openvino for an IR) is bad
    input too: the line names the extra to install."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            _check_json_path(kwargs.get("json"))
            try:
                return fn(*args, **kwargs)
            except ImportError as exc:
                raise missing_extra(exc, what=f"rtk {fn.__name__.strip('_').replace('_', ' ')}") or exc
        except (RtkError, GateFailed) as exc:
            if _debug["on"]:
                raise
            ui.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            ui.error("interrupted; nothing was left half-written")
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:    # a bug, not bad input: say so in one line, keep 1 and 2 for gates and input
            if _debug["on"]:
                raise
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            ui.error(f"internal error ({type(exc).__name__}{': ' + first if first else ''}); this is a bug in rtk: "
                     "rerun with `rtk --debug ...` for the traceback and report it")
            raise typer.Exit(3) from None

    return wrapper


def _check_json_path(path: Path | None) -> None:
    """Refuse a --json path that cannot be written before the work, not after it."""
    if not isinstance(path, Path):
        return
    if path.is_dir():
        raise RtkError(f"--json {path} is a folder; give a file name, e.g. {path / 'result.json'}")
    if not path.parent.is_dir():
        raise RtkError(f"--json {path}: folder {path.parent} does not exist; create it first")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (temporary files removed) but exiting 143."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _dump(path: Path, recipe, command: str) -> None:
    from toolkit.replay import write

    write(recipe, path, command)
    ui.ok(f"wrote {path}; replay it with: rtk run {path} -o runs/{recipe.name}")


def _emit_json(path: Path | None, result) -> None:
    if path is not None:
        from toolkit.artifact import write_json

        write_json(path, result)


@app.command()
@command
def doctor(json: JsonOpt = None) -> None:
    """Versions, runtimes that import, CPU model and the ISA features that decide INT8 speed."""
    from toolkit.doctor import doctor as run

    report = run()
    ui.show_doctor(report)
    _emit_json(json, report)


@data_app.command("synth")
@command
def data_synth(
    root: Annotated[Path, typer.Argument(help="Folder to create (train/ and val/ inside).")],
    classes: Annotated[int, typer.Option(help="Number of classes.")] = 10,
    per_class: Annotated[int, typer.Option(help="Training images per class.")] = 200,
    val_per_class: Annotated[int, typer.Option(help="Validation images per class.")] = 50,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same files.")] = 0,
    json: JsonOpt = None,
) -> None:
    """Write the built-in labeled data set of procedurally drawn images (an ImageFolder tree)."""
    from toolkit.synth import synth

    if root.exists() and any(root.iterdir()):
        raise RtkError(f"{root} already exists and is not empty; choose a new folder or delete it")
    if not root.parent.is_dir():
        raise RtkError(f"parent folder {root.parent} does not exist; create it first")
    with ui.progress_bar("drawing images") as advance:
        try:
            summary = synth(root, classes=classes, per_class=per_class, val_per_class=val_per_class, size=size,
                            seed=seed, progress=advance)
        except ValueError as exc:
            raise RtkError(str(exc)) from None
    ui.ok(f"wrote {summary.train} train + {summary.val} val images of {len(summary.classes)} classes to {root}")
    _emit_json(json, {"root": str(root), "classes": summary.classes, "train": summary.train, "val": summary.val,
                      "size": summary.size, "seed": summary.seed})


@app.command()
@command
def finetune(
    data: Annotated[Path, typer.Option(help="ImageFolder root with train/ and val/ (or class folders).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint to write (.pt).")],
    weights: Annotated[str, typer.Option(help="Start from: imagenet-v1, imagenet-v2, none (scratch), or a .pt.")] = "none",
    freeze_backbone: Annotated[bool, typer.Option(help="Train only the new classifier head.")] = False,
    epochs: Annotated[int, typer.Option(help="Passes over the training set.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (default depends on the mode).")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="Training/eval input side (default: the model's, "
                                                             "or the images' size for --weights none).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for init, shuffling and augmentation.")] = 0,
    threads: ThreadsOpt = None,
    json: JsonOpt = None,
    dump_recipe: DumpOpt = None,
) -> None:
    """Transfer-learn a ResNet50 on a folder of images (new head), or train it from scratch."""
    from toolkit.finetune import FinetuneConfig, finetune as run

    if dump_recipe:
        from toolkit.replay import finetune_recipe

        return _dump(dump_recipe, finetune_recipe(data=data, weights=weights, epochs=epochs, batch_size=batch_size,
                                                  lr=lr, freeze_backbone=freeze_backbone, input_size=input_size,
                                                  seed=seed), "finetune")

    cfg = FinetuneConfig(data=data, output=output, weights=weights, freeze_backbone=freeze_backbone, epochs=epochs,
                         batch_size=batch_size, lr=lr, input_size=input_size, seed=seed, threads=threads)
    result = run(cfg, progress=ui.training_progress)
    ui.show_finetune(result)
    _emit_json(json, result)


@app.command()
@command
def export(
    model: Annotated[Optional[Path], typer.Argument(help="rtk checkpoint or torchvision state dict (.pt).")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="ONNX file to write.")] = Path("model.onnx"),
    weights: Annotated[Optional[str], typer.Option(help="Instead of MODEL: imagenet-v1, imagenet-v2 or random.")] = None,
    num_classes: Annotated[Optional[int], typer.Option(help="Classes of a plain state dict or a random model.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch/--static-batch", help="Batch axis dynamic or fixed.")] = True,
    batch: Annotated[int, typer.Option(help="The batch size of a --static-batch export.")] = 1,
    input_size: Annotated[Optional[int], typer.Option(help="Input side (default: the checkpoint's; 224 for torchvision weights).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Images for the parity check (default: built-in drawings).")] = None,
    atol: Annotated[float, typer.Option(help="Largest |ONNX - PyTorch| logit difference accepted.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of a random model.")] = 0,
    json: JsonOpt = None,
    dump_recipe: DumpOpt = None,
) -> None:
    """Export to ONNX, run the checker and shape inference, and prove ONNX Runtime matches PyTorch."""
    from toolkit.export import export_onnx
    from toolkit.models import load_model

    if (model is None) == (weights is None):
        raise RtkError("give either a checkpoint MODEL or --weights imagenet-v1|imagenet-v2|random")
    if dump_recipe:
        from toolkit.replay import export_recipe

        return _dump(dump_recipe, export_recipe(source=model or weights, num_classes=num_classes,
                                                input_size=input_size, opset=opset, dynamic_batch=dynamic_batch,
                                                data=data, seed=seed), "export")
    net, meta = load_model(model or weights, num_classes=num_classes, seed=seed, input_size=input_size)
    if data is not None:
        from toolkit.data import split_dir

        data = split_dir(data, "val")
    with ui.spinner("exporting and checking parity"):
        result = export_onnx(net, meta, output, opset=opset, dynamic_batch=dynamic_batch, batch=batch, data=data,
                             atol=atol, parent=model)
    ui.show_export(result)
    _emit_json(json, result)


@app.command()
@command
def validate(
    artifacts: Annotated[list[Path], typer.Argument(help="One or more artifacts (.pt, .onnx, .xml, .engine).")],
    data: Annotated[Path, typer.Option(help="Labeled ImageFolder (class folders), e.g. data/shapes/val.")],
    reference: Annotated[Optional[Path], typer.Option(help="The FP32 reference to compare against (.pt or .onnx).")] = None,
    max_drop: Annotated[Optional[float], typer.Option(help="Gate: largest top-1 drop in points vs the reference.")] = None,
    min_agreement: Annotated[Optional[float], typer.Option(help="Gate: smallest top-1 agreement (%) with the reference.")] = None,
    target: Annotated[Optional[list[str]], typer.Option(help="Runtime per artifact (repeat), default by extension.")] = None,
    batch_size: Annotated[int, typer.Option(help="Inference batch size.")] = 32,
    threads: ThreadsOpt = None,
    json: JsonOpt = None,
) -> None:
    """Top-1/top-5 on a labeled folder, drop and agreement vs a reference; --max-drop makes it a CI gate."""
    from toolkit.backends import RunnerOptions
    from toolkit.validate import validate as run

    targets = list(target or [])
    if len(targets) == 1 and len(artifacts) > 1:
        targets = targets * len(artifacts)
    with ui.progress_bar("validating") as advance:
        report = run(artifacts, data, reference=reference, targets=targets or None, max_drop=max_drop,
                     min_agreement=min_agreement, batch_size=batch_size,
                     options=RunnerOptions(threads=threads, max_batch=batch_size), progress=advance)
    ui.show_validation(report)
    _emit_json(json, report)
    if not report:
        raise GateFailed("; ".join(str(g) for g in report.gates if not g.passed))


@app.command()
@command
def bench(
    artifact: Annotated[Path, typer.Argument(help="Artifact to time (.pt, .onnx, .xml, .engine).")],
    target: TargetOpt = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1",
    warmup: Annotated[int, typer.Option(help="Untimed calls before timing.")] = 10,
    runs: Annotated[Optional[int], typer.Option(help="Timed calls per batch size (default 50).")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Time each batch size for this long instead of --runs.")] = None,
    threads: ThreadsOpt = None,
    hint: Annotated[str, typer.Option(help="OpenVINO performance hint: latency or throughput.")] = "latency",
    remote: Annotated[Optional[str], typer.Option(help="Time it on this SSH device (user@host, an ~/.ssh/config "
                                                       "alias, ssh://user@host:port) with the rtk installed there.")] = None,
    json: JsonOpt = None,
) -> None:
    """Latency percentiles (p50/p90/p99) and throughput per batch size, on one runtime."""
    from toolkit.backends import RunnerOptions
    from toolkit.bench import BenchResult, bench as run, parse_batches

    batches = parse_batches(batch)
    if runs is not None and seconds is not None:
        raise RtkError("give --runs or --seconds, not both")
    if remote:
        from toolkit.remote import Device, remote_run

        flags = {"--target": target, "--batch": batch, "--warmup": warmup, "--runs": runs, "--seconds": seconds,
                 "--threads": threads, "--hint": hint}
        argv = ["bench", artifact, *[str(x) for k, v in flags.items() if v is not None for x in (k, v)]]
        with ui.spinner("benchmarking") as status:
            done = remote_run(Device(dest=remote), argv, say=status)
        ui.show_bench(BenchResult.model_validate(done.result))
        ui.ok(f"on {done.device.name}: {done.device.hostname}, {done.device.cpu} ({done.device.cores} cores)")
        return _emit_json(json, done.as_json())
    with ui.spinner("benchmarking") as status:
        result = run(artifact, target=target, batches=batches, warmup=warmup, runs=runs, seconds=seconds,
                     options=RunnerOptions(threads=threads, hint=hint, max_batch=max(batches)), progress=status)
    ui.show_bench(result)
    _emit_json(json, result)


@app.command()
@command
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    model: Annotated[Path, typer.Option(help="Artifact to run (.pt, .onnx, .xml, .engine).")],
    top: Annotated[int, typer.Option(help="How many classes to show per image.")] = 5,
    target: TargetOpt = None,
    json: JsonOpt = None,
) -> None:
    """Classify images: the top-K class names with probabilities."""
    from toolkit.predict import predict as run

    results = run(images, model, top=top, target=target)
    ui.show_predictions(results)
    _emit_json(json, results)


@app.command("compile")
@command
def compile_(
    source: Annotated[Path, typer.Argument(help="ONNX model (FP32, or INT8 with Q/DQ nodes).")],
    target: Annotated[str, typer.Option(help="openvino (IR .xml + .bin) or tensorrt (.engine + .json sidecar).")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="OpenVINO: a folder (model.xml inside) "
                                                   "or a .xml path; TensorRT: a .engine path.")] = None,
    precision: Annotated[str, typer.Option(help="auto (INT8 when the ONNX has Q/DQ, else FP32), fp32, fp16, int8.")] = "auto",
    batch: Annotated[Optional[int], typer.Option(help="Fix the batch size (default: keep the ONNX's).")] = None,
    min_batch: Annotated[Optional[int], typer.Option(help="TensorRT profile: smallest batch (default 1).")] = None,
    opt_batch: Annotated[Optional[int], typer.Option(help="TensorRT profile: batch to tune for (default 1).")] = None,
    max_batch: Annotated[Optional[int], typer.Option(help="TensorRT profile: largest batch (default 8).")] = None,
    workspace_mb: Annotated[Optional[int], typer.Option(help="TensorRT workspace memory limit in MiB.")] = None,
    timing_cache: Annotated[Optional[Path], typer.Option(help="TensorRT timing cache file (read, then updated).")] = None,
    check_only: Annotated[bool, typer.Option(help="Only report what TensorRT would refuse (no TensorRT needed); "
                                                  "exit 1 on errors.")] = False,
    calibration: Annotated[Optional[Path], typer.Option(help="OpenVINO INT8 with NNCF: image folder for a "
                                                              "model without Q/DQ.")] = None,
    calibration_samples: Annotated[int, typer.Option(help="Calibration images used with --calibration.")] = 300,
    json: JsonOpt = None,
    dump_recipe: DumpOpt = None,
) -> None:
    """Compile ONNX for OpenVINO (IR) or TensorRT (engine); --check-only lists what TensorRT would refuse."""
    from toolkit.compile import compile_model

    if dump_recipe:
        from toolkit.replay import compile_recipe

        return _dump(dump_recipe, compile_recipe(source=source, target=target, precision=precision), "compile")
    from toolkit.trt_check import BatchProfile

    given = {k: v for k, v in (("min", min_batch), ("opt", opt_batch), ("max", max_batch)) if v is not None}
    profile = None
    if given:
        lo = given.get("min", 1)
        profile = BatchProfile(min=lo, opt=given.get("opt", lo), max=given.get("max", max(8, given.get("opt", lo))))
    with ui.spinner("compiling") as status:
        result = compile_model(source, target=target, output=output, precision=precision, batch=batch,
                               profile=profile, workspace_mb=workspace_mb, timing_cache=timing_cache,
                               check_only=check_only, calibration=calibration,
                               calibration_samples=calibration_samples, progress=status)
    ui.show_compile(result)
    _emit_json(json, result)
    if not result:
        raise GateFailed(f"TensorRT would refuse {source}: "
                         f"{sum(f.severity == 'error' for f in result.findings)} errors")


@app.command()
@command
def prune(
    model: Annotated[Path, typer.Argument(help="rtk checkpoint or torchvision state dict (.pt) of a ResNet50.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Pruned checkpoint to write (.pt).")],
    structured: Annotated[bool, typer.Option("--structured", help="Remove whole channels: fewer MACs on every "
                                                                  "runtime (the default).")] = False,
    unstructured: Annotated[bool, typer.Option("--unstructured", help="Zero single weights (nncf.prune); no speed-up "
                                                                      "on dense runtimes.")] = False,
    ratio: Annotated[Optional[float], typer.Option(help="Structured: fraction of channels removed (default 0.5).")] = None,
    sparsity: Annotated[Optional[float], typer.Option(help="Unstructured: fraction of conv/linear weights zeroed "
                                                           "(default 0.5).")] = None,
    importance: Annotated[str, typer.Option(help="Channel importance: l1, l2 (magnitude), bn (batch-norm scale), "
                                                 "taylor (needs --finetune).")] = "l2",
    global_pruning: Annotated[Optional[bool], typer.Option("--global/--uniform", help="Rank across all layers or "
                              "prune each layer alike (default: uniform structured, global unstructured).")] = None,
    round_to: Annotated[int, typer.Option(help="Keep channel counts a multiple of this (8 suits CPU SIMD and "
                                               "tensor cores).")] = 8,
    target_latency_ms: Annotated[Optional[float], typer.Option(help="Search the smallest ratio whose batch-1 "
                                                                    "latency on --target is at most this.")] = None,
    target: Annotated[Optional[str], typer.Option(help="Runtime for --target-latency-ms: onnxruntime, openvino, "
                                                       "torch.")] = None,
    keep_best: Annotated[bool, typer.Option(help="Write the best model even if the latency target is missed.")] = False,
    finetune: Annotated[Optional[Path], typer.Option("--finetune", help="ImageFolder (train/ val/) for BN "
                        "adaptation, recovery fine-tuning and val top-1 before/after.")] = None,
    epochs: Annotated[int, typer.Option(help="Recovery epochs with --finetune (0: BN adaptation only).")] = 2,
    lr: Annotated[float, typer.Option(help="Peak recovery learning rate (AdamW, one-cycle).")] = 5e-4,
    batch_size: Annotated[int, typer.Option(help="Recovery and calibration batch size.")] = 32,
    distill: Annotated[bool, typer.Option(help="Distil from the unpruned model: KL on softened logits + CE.")] = False,
    temperature: Annotated[float, typer.Option(help="Distillation temperature.")] = 4.0,
    augment: Annotated[str, typer.Option(help="Recovery augmentation: none (the eval transform; best in 2-epoch "
                                              "recovery), flip, or full (random-resized crop + flip).")] = "none",
    measure: Annotated[str, typer.Option(help="Runtimes timed before/after, comma-separated, or none (default: "
                                              "onnxruntime; unstructured adds openvino).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for calibration and recovery.")] = 0,
    threads: ThreadsOpt = None,
    json: JsonOpt = None,
    dump_recipe: DumpOpt = None,
) -> None:
    """Prune a ResNet50: structured channels (real speed) or unstructured sparsity, then recover accuracy."""
    from toolkit.prune import PruneConfig, prune_model

    if structured and unstructured:
        raise RtkError("give --structured or --unstructured, not both")
    if dump_recipe:
        from toolkit.replay import prune_recipe

        return _dump(dump_recipe, prune_recipe(
            model=model, mode="unstructured" if unstructured else "structured", ratio=ratio, sparsity=sparsity,
            importance=importance, round_to=round_to, data=finetune, epochs=epochs, lr=lr, distill=distill,
            seed=seed, augment=augment), "prune")
    timed = None if measure == "auto" else [m.strip() for m in measure.split(",") if m.strip() not in ("", "none")]
    cfg = PruneConfig(mode="unstructured" if unstructured else "structured", ratio=ratio, sparsity=sparsity,
                      importance=importance, global_pruning=global_pruning, round_to=round_to,
                      target_latency_ms=target_latency_ms, target=target, keep_best=keep_best, data=finetune,
                      epochs=epochs if finetune else 0, lr=lr, batch_size=batch_size, distill=distill,
                      temperature=temperature, augment=augment, measure=timed, seed=seed, threads=threads)
    with ui.stage_progress() as update:
        result = prune_model(model, output=output, config=cfg, progress=update)
    ui.show_prune(result)
    _emit_json(json, result)
    if not result:
        raise GateFailed(result.message)


recipe_app = typer.Typer(no_args_is_help=True, help="Recipes: print the schema, check a recipe.")
app.add_typer(recipe_app, name="recipe")


def _run_recipe(recipe, output: Path, *, resume: bool, force: bool, json: Path | None) -> None:
    from toolkit.pipeline import run as run_pipeline

    with ui.spinner(f"running {recipe.name}") as status:
        report = run_pipeline(recipe, output, resume=resume, force=force, say=status,
                              training_progress=ui.training_progress)
    ui.show_report(report)
    ui.ok(f"report: {output / 'report.md'} · manifest: {output / 'manifest.json'}")
    _emit_json(json, report)
    if not report:
        raise GateFailed("gate failed: " + "; ".join(str(g) for g in report.gates if not g.passed))


@app.command("run")
@command
def run_(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder (artifacts, manifest, report).")],
    resume: Annotated[bool, typer.Option(help="Continue a run in this folder, skipping unchanged stages.")] = False,
    force: Annotated[bool, typer.Option(help="Redo every stage in a folder that holds another run.")] = False,
    json: JsonOpt = None,
) -> None:
    """Run a recipe: every stage, then validate, bench, gates and the report. Exit 0 pass, 1 gate failed, 2 bad input."""
    from toolkit.recipe import load_recipe

    _run_recipe(load_recipe(recipe), output, resume=resume, force=force, json=json)


@app.command()
@command
def demo(
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder.")] = Path("runs/demo"),
    force: Annotated[bool, typer.Option(help="Redo every stage instead of reusing unchanged ones.")] = False,
    json: JsonOpt = None,
) -> None:
    """The built-in default: synthetic data -> train -> prune -> INT8 -> OpenVINO -> validate, bench, report."""
    from toolkit.recipe import demo_recipe

    output.parent.mkdir(parents=True, exist_ok=True)
    _run_recipe(demo_recipe(), output, resume=not force, force=force, json=json)


@app.command()
@command
def compare(
    a: Annotated[Path, typer.Argument(help="Baseline report.json.")],
    b: Annotated[Path, typer.Argument(help="Candidate report.json.")],
    tolerance: Annotated[float, typer.Option(help="Latency change within this fraction counts as noise.")] = 0.2,
    max_drop: Annotated[float, typer.Option(help="Top-1 loss in points that counts as a regression.")] = 0.5,
    json: JsonOpt = None,
) -> None:
    """Compare two run reports: latency beyond the noise, top-1 changes. Exit 1 on a regression."""
    from toolkit.compare import compare as run

    result = run(a, b, tolerance=tolerance, max_drop=max_drop)
    ui.show_comparison(result)
    _emit_json(json, result)
    if not result:
        raise GateFailed("regression beyond noise: " + ", ".join(result.regressions))


@recipe_app.command("schema")
@command
def recipe_schema() -> None:
    """Print the recipe JSON Schema."""
    import json as _json

    from toolkit.recipe import schema

    print(_json.dumps(schema(), indent=2))


@recipe_app.command("check")
@command
def recipe_check(recipe: Annotated[Path, typer.Argument(help="Recipe YAML.")]) -> None:
    """Validate a recipe against the schema without running it."""
    from toolkit.recipe import load_recipe

    r = load_recipe(recipe)
    ui.ok(f"{recipe}: recipe {r.name!r} is valid")


@app.command()
@command
def quantize(
    model: Annotated[Path, typer.Argument(help="FP32 model: .onnx, or an OpenVINO IR .xml for --target openvino.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="INT8 model to write: .onnx (QDQ), or .xml (INT8 IR) for --target openvino.")],
    calib: Annotated[str, typer.Option(help="Calibration images folder (class sub-folders optional), or 'random' "
                                            "for speed tests only.")],
    target: Annotated[str, typer.Option(help="onnxruntime, openvino or tensorrt: picks the INT8 form.")] = "onnxruntime",
    int8: Annotated[bool, typer.Option("--int8", help="INT8 post-training quantization (the only mode).")] = True,
    subset: Annotated[Optional[int], typer.Option(help="Calibration images (default 300, or all of --calib-list).")] = None,
    calib_list: Annotated[Optional[Path], typer.Option(help="File of image paths relative to --calib, one per line.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the class-balanced calibration pick.")] = 0,
    allow_small: Annotated[bool, typer.Option(help="Accept fewer calibration images than asked for.")] = False,
    max_drop: Annotated[Optional[float], typer.Option(help="Accuracy control: largest top-1 drop in points on --val.")] = None,
    val: Annotated[Optional[Path], typer.Option(help="Labeled folder for top-1 FP32 vs INT8 (and --max-drop).")] = None,
    bench_runs: Annotated[int, typer.Option(help="Timed batch-1 runs per model for the speed-up (0 skips).")] = 30,
    bias_correction: Annotated[str, typer.Option(help="NNCF bias correction: fast (its default) or full (INT8 IR "
                                                      "only; ~0.2-0.3 pt better, calibration ~2x longer).")] = "fast",
    json: JsonOpt = None,
    dump_recipe: DumpOpt = None,
) -> None:
    """Post-training INT8 for a target (NNCF on CPU, signed QDQ for TensorRT) with size, top-1 and speed vs FP32."""
    from toolkit.quantize import quantize_int8

    if not int8:
        raise RtkError("only --int8 is supported; for FP16 use `rtk compile`")
    if dump_recipe:
        from toolkit.replay import quantize_recipe

        if bias_correction != "fast":
            raise RtkError("recipes calibrate with NNCF's fast bias correction; drop --bias-correction to dump one")

        return _dump(dump_recipe, quantize_recipe(model=model, calib=calib, target=target, subset=subset,
                                                  allow_small=allow_small, max_drop=max_drop, val=val, seed=seed),
                     "quantize")
    result = quantize_int8(model, output=output, calib=calib if calib == "random" else Path(calib), target=target,
                           subset=subset, seed=seed, allow_small=allow_small, max_drop=max_drop, val=val,
                           calib_list=calib_list, bench_runs=bench_runs, bias_correction=bias_correction,
                           progress=lambda msg: ui.err.print(f"[dim]·[/] {msg}", highlight=False))
    ui.show_quantize(result)
    _emit_json(json, result)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    app(prog_name="rtk")


if __name__ == "__main__":
    sys.exit(main())
