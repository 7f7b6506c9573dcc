"""The pipeline's stages, each a call into the library: data -> model -> prune -> export -> quantize ->
compile -> validate -> bench. Each returns the artifacts it made; `pipeline.Run.stage` caches them."""

from __future__ import annotations

from pathlib import Path
from pydantic import BaseModel

from toolkit.backends import available
from toolkit.data import split_dir
from toolkit.errors import RtkError


class Artifact(BaseModel):
    """One deployable file and where it runs; `role` says what it is in the report."""

    name: str
    path: str
    target: str
    precision: str
    role: str  # reference | fp32 | pruned | int8 | compiled


def _data_paths(ctx) -> tuple[Path | None, Path | None, Path | None]:
    """(data root with train/ and val/, calibration folder, validation folder)."""
    data = ctx.recipe.data
    if data.synth is not None:
        root = ctx.root / "data"
        s = data.synth

        def make():
            from toolkit.synth import synth

            synth(root, classes=s.classes, per_class=s.per_class, val_per_class=s.val_per_class, size=s.size,
                  seed=s.seed)
            return {"root": str(root)}

        if not (root / "val").is_dir():
            ctx.stage("data", s.model_dump(), [], [root], make)
    else:
        root = Path(data.root) if data.root else None
    calib = Path(data.calibration) if data.calibration else (split_dir(root, "train") if root else None)
    val = Path(data.validation) if data.validation else (root / "val" if root and (root / "val").is_dir() else None)
    return root, calib, val


def _model(ctx, root: Path) -> Path:
    """The FP32 checkpoint: fine-tuned when the recipe says so, else the source as an rtk checkpoint."""
    r = ctx.recipe
    out = ctx.root / "model.pt"
    source = r.model.source
    if r.finetune is not None:
        from toolkit.finetune import FinetuneConfig, finetune

        cfg = FinetuneConfig(data=root, output=out, weights=source, epochs=r.finetune.epochs,
                             batch_size=r.finetune.batch_size, lr=r.finetune.lr,
                             freeze_backbone=r.finetune.freeze_backbone, input_size=r.model.input_size, seed=r.seed)
        inputs = [root] + ([Path(source)] if Path(source).is_file() else [])
        ctx.stage("finetune", {**r.finetune.model_dump(), "source": source, "input_size": r.model.input_size},
                  inputs, [out], lambda: finetune(cfg, progress=ctx.training_progress))
        return out
    from toolkit.models import load_model, save_checkpoint

    def load():
        names = None
        if source.lower() == "random" and root is not None and (root / "train").is_dir():
            names = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        model, meta = load_model(source, num_classes=r.model.num_classes or (len(names) if names else None),
                                 class_names=names, input_size=r.model.input_size, seed=r.seed)
        save_checkpoint(out, model, meta)
        return {"source": source, "classes": meta.num_classes}

    inputs = [Path(source)] if Path(source).is_file() else []
    ctx.stage("model", {**r.model.model_dump(), "seed": r.seed}, inputs, [out], load)
    return out


def _export(ctx, checkpoint: Path, name: str, val: Path | None) -> Path:
    from toolkit.export import export_onnx
    from toolkit.models import load_model

    e = ctx.recipe.export
    out = ctx.root / f"{name}.onnx"

    def run():
        model, meta = load_model(checkpoint)
        return export_onnx(model, meta, out, opset=e.opset, dynamic_batch=e.dynamic_batch, data=val, parent=checkpoint)

    ctx.stage(f"export:{name}", e.model_dump(), [checkpoint], [out], run)
    return out


def _prune(ctx, checkpoint: Path, root: Path) -> Path:
    from toolkit.prune import PruneConfig, prune_model

    p = ctx.recipe.prune
    out = ctx.root / "pruned.pt"
    cfg = PruneConfig(mode=p.mode, ratio=p.ratio if p.mode == "structured" else None,
                      sparsity=p.sparsity if p.mode == "unstructured" else None, importance=p.importance,
                      round_to=p.round_to, data=root, epochs=p.epochs, lr=p.lr, distill=p.distill, augment=p.augment,
                      measure=[], seed=ctx.recipe.seed)
    ctx.stage("prune", p.model_dump(), [checkpoint, root], [out],
              lambda: prune_model(checkpoint, output=out, config=cfg))
    return out


def _quantize(ctx, onnx_path: Path, calib: Path, val: Path | None) -> Path:
    from toolkit.quantize import quantize_int8

    q, target = ctx.recipe.quantize, ctx.recipe.quantize_target
    out = ctx.root / ("model.trt-int8.onnx" if target == "tensorrt" else "model.int8.onnx")
    if q.max_drop is not None and val is None:
        raise RtkError("quantize.max_drop needs validation images; set data.validation or use data with val/")
    ctx.stage("quantize", {**q.model_dump(), "target": target, "seed": ctx.recipe.seed}, [onnx_path, calib], [out],
              lambda: quantize_int8(onnx_path, output=out, calib=calib, target=target, subset=q.subset,
                                    seed=ctx.recipe.seed, allow_small=q.allow_small, max_drop=q.max_drop, val=val))
    return out


def _compile(ctx, onnx_path: Path, target: str) -> Path | None:
    from toolkit.compile import compile_model

    c = ctx.recipe.compile
    if target == "openvino":
        out = ctx.root / "openvino" / "model.xml"
        ctx.stage("compile:openvino", c.model_dump(), [onnx_path], [out, out.with_suffix(".bin")],
                  lambda: compile_model(onnx_path, target="openvino", output=out.parent, precision=c.precision))
        return out
    if not available("tensorrt"):
        ctx.say("compile:tensorrt: TensorRT is not installed here; running the CPU-side check only")
        ctx.stage("check:tensorrt", c.model_dump(), [onnx_path], [],
                  lambda: compile_model(onnx_path, target="tensorrt", check_only=True))
        return None
    out = ctx.root / "model.engine"
    ctx.stage("compile:tensorrt", c.model_dump(), [onnx_path], [out],
              lambda: compile_model(onnx_path, target="tensorrt", output=out, precision=c.precision))
    return out


def run_stages(ctx) -> list[Artifact]:
    """Make every artifact the recipe asks for; validation and bench run in `report`."""
    r = ctx.recipe
    root, calib, val = _data_paths(ctx)
    arts: list[Artifact] = []
    if Path(r.model.source).suffix.lower() == ".onnx":
        if r.prune or r.finetune:
            raise RtkError("model.source is an ONNX file: prune and finetune need a .pt checkpoint")
        fp32_onnx = Path(r.model.source)
        reference = fp32_onnx
        arts.append(Artifact(name="fp32", path=str(fp32_onnx), target="onnxruntime", precision="fp32", role="fp32"))
    else:
        reference = _model(ctx, root)
        arts.append(Artifact(name="reference", path=str(reference), target="torch", precision="fp32", role="reference"))
        fp32_onnx = _export(ctx, reference, "model", val)
        arts.append(Artifact(name="fp32", path=str(fp32_onnx), target="onnxruntime", precision="fp32", role="fp32"))
    deploy = fp32_onnx
    if r.prune:
        pruned = _prune(ctx, reference, root)
        deploy = _export(ctx, pruned, "pruned", val)
        arts.append(Artifact(name="pruned", path=str(deploy), target="onnxruntime", precision="fp32", role="pruned"))
    if r.quantize:
        deploy = _quantize(ctx, deploy, calib, val)
        name = "int8-trt-form" if r.quantize_target == "tensorrt" else "int8"
        arts.append(Artifact(name=name, path=str(deploy), target="onnxruntime", precision="int8", role="int8"))
    for target in r.compile.targets:
        if target == "onnxruntime":
            continue
        compiled = _compile(ctx, deploy, target)
        if compiled is not None:
            precision = "int8" if r.quantize else ("fp16" if r.compile.precision == "fp16" else "fp32")
            arts.append(Artifact(name=target, path=str(compiled), target=target, precision=precision, role="compiled"))
    ctx.paths = {"root": root, "calibration": calib, "validation": val, "reference": reference}
    return arts
