"""The pipeline's stages, each one call into the library with the recipe's settings model for it:
data -> model (or finetune) -> export -> prune -> quantize -> compile -> validate -> bench.

`run_stages` returns everything the report needs (`Outcome`); `Run.stage` (run.py) caches each stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from toolkit.errors import GateFailed, RtkError
from toolkit.isa import effective_tier
from toolkit.settings import REMOTE_FIELDS, BenchSettings, CompileSettings, Gates, ValidateSettings

if TYPE_CHECKING:
    from toolkit.photos import FastDecodeCheck


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
            import shutil

            from toolkit.synth import synth

            shutil.rmtree(root, ignore_errors=True)     # the run's own copy, drawn for other settings or half drawn
            synth(root, classes=s.classes, per_class=s.per_class, val_per_class=s.val_per_class, size=s.size,
                  seed=s.seed)
            return {"root": str(root)}

        ctx.stage("data", s.model_dump(), [], [root], make)     # drawn again when data.synth changes
    else:
        root = Path(data.root) if data.root else None
    train = root / "train" if root is not None and (root / "train").is_dir() else root
    calib = Path(data.calibration) if data.calibration else train
    val = Path(data.validation) if data.validation else (root / "val" if root and (root / "val").is_dir() else None)
    return root, calib, val


def _model(ctx, root: Path) -> Path:
    """The FP32 checkpoint: fine-tuned when the recipe says so, else the source as an rtk checkpoint."""
    r = ctx.recipe
    out = ctx.root / "model.pt"
    source = r.model.source
    if r.finetune is not None:
        from toolkit.finetune import finetune

        inputs = [root] + ([Path(source)] if Path(source).is_file() else [])
        ctx.stage("finetune", {**r.finetune.model_dump(), "source": source, "input_size": r.model.input_size},
                  inputs, [out], lambda: finetune(r.finetune, data=root, output=out, weights=source,
                                                  input_size=r.model.input_size, seed=r.seed,
                                                  progress=ctx.progress))
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
        return export_onnx(model, meta, out, settings=e, data=val, parent=checkpoint)

    ctx.stage(f"export:{name}", e.model_dump(), [checkpoint], [out], run)
    return out


def _prune(ctx, checkpoint: Path, root: Path) -> Path:
    from toolkit.prune import prune_model

    p = ctx.recipe.prune
    out = ctx.root / "pruned.pt"

    def run():
        result = prune_model(checkpoint, output=out, settings=p, data=root, seed=ctx.recipe.seed)
        if not result:
            raise GateFailed(result.message)
        return result

    # the latency-targeted search times its candidates: like bench, it gets its machine to itself
    ctx.stage("prune", p.model_dump(), [checkpoint, root], [out], run,
              timing="node" if p.target_latency_ms is not None else None)
    return out


def _quantize(ctx, onnx_path: Path, calib: Path, val: Path | None) -> Path:
    from toolkit.quantize import quantize_int8

    q, target = ctx.recipe.quantize, ctx.recipe.quantize_target
    if q.form == "ir":
        out = ctx.root / "openvino" / "model.xml"
        out.parent.mkdir(exist_ok=True)
    else:
        out = ctx.root / ("model.trt-int8.onnx" if target == "tensorrt" else "model.int8.onnx")
    if q.max_drop is not None and val is None:
        raise RtkError("quantize.max_drop needs validation images; set data.validation or use data with val/")
    inputs = [onnx_path, calib] + ([q.calib_list] if q.calib_list else [])
    outputs = [out, out.with_suffix(".bin")] if q.form == "ir" else [out]
    ctx.stage("quantize", {**q.model_dump(mode="json"), "target": target, "seed": ctx.recipe.seed}, inputs, outputs,
              lambda: quantize_int8(onnx_path, output=out, calib=calib, target=target, settings=q, val=val,
                                    seed=ctx.recipe.seed))
    return out


def _compile(ctx, onnx_path: Path, target: str, calib: Path | None) -> Path | None:
    from toolkit.compile import compile_model

    c = ctx.recipe.compile
    settings = CompileSettings(**c.model_dump(exclude={"targets"}))
    config = c.model_dump(mode="json", exclude={"targets"})
    if target == "openvino":
        out = ctx.root / "openvino" / "model.xml"
        calibration = calib if c.precision == "int8" and not ctx.recipe.quantize else None
        ctx.stage("compile:openvino", config, [onnx_path] + ([calibration] if calibration else []),
                  [out, out.with_suffix(".bin")],
                  lambda: compile_model(onnx_path, target="openvino", settings=settings, output=out.parent,
                                        calibration=calibration))
        return out
    settings = settings.model_copy(update={"embed_preprocess": False})     # an OpenVINO IR's, not an engine's
    config = {**config, "embed_preprocess": False}      # so a sweep of it builds the one engine once
    if c.check_only:   # asked for in the recipe (run.check_machine refuses a TensorRT target it cannot build)
        def check():
            result = compile_model(onnx_path, target="tensorrt", settings=settings)
            if not result:
                raise GateFailed(f"TensorRT would refuse {onnx_path}: "
                                 f"{sum(f.severity == 'error' for f in result.findings)} errors")
            return result

        ctx.stage("check:tensorrt", config, [onnx_path], [], check)
        return None
    out = ctx.root / "model.engine"
    ctx.stage("compile:tensorrt", config, [onnx_path], [out, Path(f"{out}.json")],
              lambda: compile_model(onnx_path, target="tensorrt", settings=settings, output=out))
    return out


def _artifacts(ctx) -> tuple[list[Artifact], Path | None, Path]:
    """Make every artifact the recipe asks for: (artifacts in order, validation folder, FP32 reference)."""
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
    if r.quantize and r.quantize.form == "ir":
        deploy = _quantize(ctx, deploy, calib, val)
        arts.append(Artifact(name="openvino", path=str(deploy), target="openvino", precision="int8", role="compiled"))
    elif r.quantize:
        deploy = _quantize(ctx, deploy, calib, val)
        name = "int8-trt-form" if r.quantize_target == "tensorrt" else "int8"
        arts.append(Artifact(name=name, path=str(deploy), target="onnxruntime", precision="int8", role="int8"))
    for target in r.compile.targets:
        if target == "onnxruntime" or deploy.suffix == ".xml":
            continue
        compiled = _compile(ctx, deploy, target, calib)
        if compiled is not None:
            precision = "int8" if r.quantize or r.compile.precision == "int8" else (
                r.compile.precision if r.compile.precision in ("fp16", "bf16") else "fp32")
            arts.append(Artifact(name=target, path=str(compiled), target=target, precision=precision, role="compiled"))
    return arts, val, reference


def devices_of(recipe) -> dict:
    """The recipe's devices by name (toolkit.remote.Device): its devices: block, or bench.remote's one device."""
    from toolkit.remote import Device

    if recipe.devices:
        return {n: Device(dest=d.dest, rtk=d.rtk or "rtk", label=n) for n, d in recipe.devices.items()}
    b = recipe.bench
    return {b.remote: Device(dest=b.remote, rtk=b.remote_rtk or "rtk")} if b.remote else {}


def _validate(ctx, arts: list[Artifact], val: Path | None, reference: Path) -> dict[str, Any] | None:
    """Every artifact against the FP32 reference on the validation images, in one pass over them."""
    from toolkit.validate import validate

    if val is None:
        ctx.say("validate: no validation images; accuracy is not reported")
        return None
    rows = [a for a in arts if a.role != "reference"]
    v = ctx.recipe.validate_
    settings = ValidateSettings(**v.model_dump(exclude={"on_devices"}))
    return ctx.stage("validate", {"artifacts": [a.path for a in rows], "targets": [a.target for a in rows],
                                  **settings.model_dump(), "tier": effective_tier("openvino")},
                     [Path(a.path) for a in arts] + [val], [],
                     lambda: validate([a.path for a in rows], val, reference=reference,
                                      targets=[a.target for a in rows], settings=settings, measure_latency=False))


def fast_decode_check(validation: dict[str, Any] | None) -> FastDecodeCheck | None:
    """The fast decode's check (toolkit.photos.FastDecodeCheck) of the deployed artifact in the validate stage's
    result, if it was checked. The deployed artifact is the stage's last one: found by place, not by the path it had
    then (a run resumed with another -o spelling, or moved, keeps that result)."""
    from toolkit.photos import FastDecodeCheck

    scores = (validation or {}).get("artifacts") or [{}]
    check = scores[-1].get("fast_decode")
    return FastDecodeCheck.model_validate(check) if check else None


def _deploy(ctx, arts: list[Artifact], validation: dict[str, Any] | None, val: Path | None) -> dict | None:
    """validate.fast_decode: where the fast JPEG decode passed on the deployed artifact, that artifact again under
    deploy/ with the check in its metadata, so predict and bench --images default to the fast decode for it
    (toolkit.deploy). None where it was not checked, changed no image, or failed (its gate fails the run)."""
    from toolkit.deploy import check_deploy_folder, clear_deploy
    from toolkit.io import artifact_files

    deployed = arts[-1]
    folder = ctx.root / "deploy"
    out = folder / Path(deployed.path).name
    check = fast_decode_check(validation) if ctx.recipe.validate_.fast_decode else None
    deploying = check is not None and val is not None and check.deployable
    if deploying:
        check_deploy_folder(ctx.root)
    clear_deploy(folder, keep=artifact_files(out) if deploying else [])
    if check is not None and not check.scaled:
        ctx.say("deploy: no validation image is a JPEG large enough for the fast decode to change it, so it was not "
                "tested; the deployed artifact keeps the exact decode")
    elif check is not None and not check.passed:
        ctx.say(f"deploy: {check}; the deployed artifact keeps the exact decode")
    if not deploying:
        return None

    def write():
        from toolkit.deploy import with_fast_decode

        with_fast_decode(Path(deployed.path), out, check, data=val.name)
        return {"artifact": str(out), "source": deployed.path, "decode": "fast", "check": check.model_dump()}

    return ctx.stage("deploy", {"artifact": deployed.path, "check": check.model_dump(), "data": val.name},
                     [Path(deployed.path)], artifact_files(out), write)


def _validate_on_devices(ctx, arts: list[Artifact], val: Path | None) -> dict[str, dict]:
    """validate.on_devices: the artifacts against the FP32 ONNX (the device has no PyTorch) on every device, on its
    own copy of the validation images (or its devices.NAME.data), devices in parallel."""
    from toolkit.remote.commands import validate_on_device
    from toolkit.remote.devices import on_devices

    r = ctx.recipe
    if not r.validate_.on_devices:
        return {}
    fp32 = next(a for a in arts if a.role == "fp32")
    rows = [a for a in arts if a.role not in ("reference", "fp32")]
    base = r.validate_.model_dump(exclude={"on_devices", *REMOTE_FIELDS})

    def job(name: str, device) -> dict | None:
        spec = r.devices[name]
        if val is None and spec.data is None:
            ctx.say(f"validate@{name}: no validation images; set devices.{name}.data")
            return None
        settings = ValidateSettings(**base, remote=device.dest, remote_rtk=spec.rtk, remote_data=spec.data)
        config = {"artifacts": [a.path for a in rows], "reference": fp32.path, "dest": device.dest, "rtk": spec.rtk,
                  "data": spec.data, **base}
        inputs = [Path(fp32.path)] + [Path(a.path) for a in rows] + ([val] if spec.data is None else [])
        return ctx.stage(f"validate@{name}", config, inputs, [], lambda: validate_on_device(
            [a.path for a in rows] or [fp32.path], None if spec.data else val, reference=fp32.path,
            targets=[a.target for a in rows] or [fp32.target], settings=settings, gates=Gates(), device=device,
            say=lambda m: ctx.say(f"{name}: {m}")), timing=f"device:{device.dest}")

    found = on_devices({n: (d.dest, lambda n=n, d=d: job(n, d)) for n, d in devices_of(r).items()})
    return {n: v for n, v in found.items() if v is not None}


def _bench(ctx, arts: list[Artifact]) -> dict[str, dict[str, list[dict]]]:
    """Every artifact but the PyTorch reference, `repeats` times, interleaved so drift hits all alike: here (each a
    fresh `rtk bench` process, `bench_process`), or on every device (devices in parallel, one job per device at a
    time). {device name, "" here: {artifact: runs}}."""
    from toolkit.bench import bench_process
    from toolkit.remote.commands import bench_on_device
    from toolkit.remote.devices import on_devices

    b = ctx.recipe.bench
    settings = BenchSettings(**b.model_dump(exclude={"repeats", *REMOTE_FIELDS}))
    timed = [a for a in arts if a.role != "reference"]
    config = {**settings.model_dump(), "repeats": b.repeats, "artifacts": [a.path for a in timed]}

    def runs(device=None):
        def run():
            out: dict[str, list[dict]] = {a.name: [] for a in timed}
            where = f" on {device.name}" if device else ""
            for repeat in range(b.repeats):
                for a in timed:
                    ctx.say(f"bench: {a.name} on {a.target}{where}, repeat {repeat + 1}/{b.repeats}")
                    done = (bench_on_device(a.path, target=a.target, settings=settings, device=device,
                                            say=lambda m: ctx.say(f"{device.name}: {m}")) if device
                            else bench_process(a.path, target=a.target, settings=settings))
                    out[a.name].append(done.model_dump(mode="json"))
            return out
        return run

    devices = devices_of(ctx.recipe)
    if not devices:
        return {"": ctx.stage("bench", {**config, "tier": effective_tier("openvino")}, [Path(a.path) for a in timed],
                              [], runs(), timing="node")}
    return on_devices({n: (d.dest, lambda n=n, d=d: ctx.stage(
        f"bench@{n}", {**config, "dest": d.dest, "rtk": d.rtk}, [Path(a.path) for a in timed], [], runs(d),
        timing=f"device:{d.dest}")) for n, d in devices.items()})


@dataclass(frozen=True)
class Outcome:
    """What a run made and measured: the artifacts in order (the deployed one last), the validation result here
    (None without validation images) and on each device (validate.on_devices), and the bench results per device
    ("" here) and artifact name, one per repeat."""

    artifacts: list[Artifact]
    validation: dict[str, Any] | None
    benches: dict[str, dict[str, list[dict]]]
    device_validation: dict[str, dict] = field(default_factory=dict)
    deploy: dict[str, Any] | None = None    # the deployed artifact again with its validated decode (_deploy)


def run_stages(ctx) -> Outcome:
    """Every stage of the recipe, in order."""
    arts, val, reference = _artifacts(ctx)
    validation = _validate(ctx, arts, val, reference)
    deploy = _deploy(ctx, arts, validation, val)
    on_devices = _validate_on_devices(ctx, arts, val)
    return Outcome(artifacts=arts, validation=validation, benches=_bench(ctx, arts), device_validation=on_devices,
                   deploy=deploy)
