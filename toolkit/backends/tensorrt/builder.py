"""TensorRT engine from ONNX (`engine_from_onnx`): FP32, FP16 or INT8, strongly typed, over a batch profile.

The network is strongly typed on TensorRT 10 and 11 alike, so the ONNX's tensor types decide the precision and
both majors build the same network: FP32 (TF32 allowed, TensorRT's default) from an FP32 ONNX, FP16 from an FP16
ONNX (`toolkit.fp16` makes it from the FP32 one and checks it on CPU first; TensorRT 11 has no FP16 builder
flag), INT8 from the Q/DQ that `rtk quantize --int8 --target tensorrt` writes (explicit quantization: no INT8
flag, no calibrator). `compile_engine` is what `rtk compile --target tensorrt` runs, `--check-only` included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from toolkit.artifact import ModelMeta
from toolkit.backends.base import CompileJob, Compiled
from toolkit.backends.tensorrt.bindings import import_tensorrt, major_minor, network_flags, new_builder
from toolkit.backends.tensorrt.check import Finding, check_onnx
from toolkit.backends.tensorrt.gpu import cuda_text, gpu_facts, require_gpu
from toolkit.backends.tensorrt.sidecar import sidecar_path, timing_cache_bytes
from toolkit.errors import RtkError
from toolkit.io import atomic_outputs, check_output, json_text, now_iso, sha256_file
from toolkit.onnx_file import input_dims
from toolkit.settings import CompileSettings

ENGINE_SUFFIXES = (".engine", ".plan")


class BatchProfile(BaseModel):
    """A TensorRT optimization profile over the batch axis (min <= opt <= max)."""

    min: int = 1
    opt: int = 1
    max: int = 8


class EngineBuild(BaseModel):
    """How to build: the precision the ONNX carries and TensorRT's own settings."""

    precision: str
    profile: BatchProfile | None = None
    workspace_mb: int | None = None
    timing_cache: Path | None = None
    version_compatible: bool = False


def engine_from_onnx(source: Path, output: Path, *, meta: ModelMeta, build: EngineBuild,
                     provenance: dict[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
    """Build and write a serialized engine and its sidecar; returns the sidecar's content and warnings.

    `source` already carries the precision (FP32, FP16 tensors or Q/DQ); `provenance` (the user's ONNX and its
    sha256, the FP16 ONNX made from it) goes into the sidecar.
    """
    trt = import_tensorrt()
    state = require_gpu()
    facts = {"tensorrt": trt.__version__, **gpu_facts()}
    builder, logger = new_builder(trt)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = []
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            errors.append(str(error.desc()))
        raise RtkError(f"{source}: TensorRT's ONNX parser refused it ({'; '.join(errors)[:300]}); "
                       "run `rtk compile --target tensorrt --check-only` for details")
    config = builder.create_builder_config()
    if build.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, build.workspace_mb << 20)
    if build.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    start, warning = timing_cache_bytes(build.timing_cache, facts)
    cache = config.create_timing_cache(start)
    config.set_timing_cache(cache, False)
    inp = network.get_input(0)
    shapes = None
    if any(d < 0 for d in inp.shape):
        if build.profile is None:
            raise RtkError(f"{source}: dynamic batch needs a profile; give --min-batch/--opt-batch/--max-batch")
        rest = tuple(inp.shape)[1:]
        shapes = {k: (getattr(build.profile, k), *rest) for k in ("min", "opt", "max")}
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(inp.name, shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RtkError(f"{source}: TensorRT could not build an engine (see the log above); try a larger "
                       "--workspace-mb or --check-only")
    major, minor = major_minor(trt)
    sidecar = {**facts, "tensorrt_major": major, "tensorrt_minor": minor,
               "version_compatible": build.version_compatible, "strongly_typed": True,
               "tf32": bool(config.get_flag(trt.BuilderFlag.TF32)), "cuda_driver": cuda_text(state.driver),
               "cuda_runtime": cuda_text(state.runtime), "precision": build.precision, "input": inp.name,
               "input_shape": list(inp.shape), "profile": shapes and {k: list(v) for k, v in shapes.items()},
               "workspace_mb": build.workspace_mb, **provenance, "built_at": now_iso(),
               "meta": meta.json_dict()}
    with atomic_outputs(output, sidecar_path(output)) as (plan, side):
        plan.write_bytes(bytes(serialized))
        side.write_text(json_text(sidecar))
    if build.timing_cache is not None:
        cache = config.get_timing_cache()
        with atomic_outputs(build.timing_cache, sidecar_path(build.timing_cache)) as (tmp, side):
            tmp.write_bytes(bytes(cache.serialize()))
            side.write_text(json_text(facts))
    warnings = [Finding(severity="warning", node=build.timing_cache.name, message=warning)] if warning else []
    return sidecar, warnings


def batch_profile(settings: CompileSettings) -> BatchProfile | None:
    """The profile min/opt/max_batch ask for, the missing ones filled in (min 1, opt min, max 8 or opt)."""
    s = settings
    if (s.min_batch, s.opt_batch, s.max_batch) == (None, None, None):
        return None
    lo = s.min_batch or 1
    opt = s.opt_batch or lo
    return BatchProfile(min=lo, opt=opt, max=s.max_batch or max(8, opt))


def _batch_plan(job: CompileJob) -> tuple[BatchProfile | None, str]:
    """(profile, label): a static ONNX batch builds as it is; a dynamic one over `--batch` or the profile."""
    profile, batch = batch_profile(job.settings), job.settings.batch
    if profile is not None and not 1 <= profile.min <= profile.opt <= profile.max:
        raise RtkError(f"batch profile {profile.min}/{profile.opt}/{profile.max}: need 1 <= min <= opt <= max")
    onnx_batch = input_dims(job.model)[0]
    if onnx_batch is not None:
        if batch not in (None, onnx_batch):
            raise RtkError(f"{job.source} has a static batch of {onnx_batch}; export with a dynamic batch to build "
                           f"for batch {batch}")
        if profile is not None:
            raise RtkError(f"{job.source} has a static batch of {onnx_batch}; a batch profile needs a dynamic-batch "
                           "export")
        return None, str(batch or onnx_batch)
    if batch is not None:
        return BatchProfile(min=batch, opt=batch, max=batch), str(batch)
    profile = profile or BatchProfile()
    return profile, f"dynamic {profile.min}-{profile.max} (opt {profile.opt})"


def _fp16_path(output: Path, source: Path) -> Path:
    """Where the FP16 ONNX an FP16 engine is built from goes: beside the engine, `<name>.fp16.onnx`."""
    path = output.with_name(output.stem.removesuffix(".fp16") + ".fp16.onnx")
    if path.resolve() == source.resolve():
        raise RtkError(f"-o {output}: its FP16 ONNX would be written over the source {source}; choose another -o")
    return check_output(path)


def compile_engine(job: CompileJob) -> Compiled:
    """`rtk compile --target tensorrt`: the CPU-side checks, then (unless `check_only`) the engine and its sidecar.

    For fp16 from an FP32 ONNX, the FP16 ONNX is made and checked on CPU first (`toolkit.fp16`); with
    `check_only` in memory, otherwise written beside the engine, which is built from it.
    """
    from toolkit.fp16 import MIN_COSINE, fp16_model, fp16_onnx_from_onnx, is_fp16_onnx

    profile, batch_label = _batch_plan(job)
    convert = job.precision == "fp16" and not is_fp16_onnx(job.model)
    if job.settings.check_only:
        job.say("checking the graph against TensorRT's rules")
        findings = check_onnx(job.model, profile=profile)
        if convert:
            job.say("making the FP16 ONNX and comparing it with the FP32 one on CPU")
            fp16, made = fp16_model(job.model, source=job.source)
            findings = check_onnx(fp16, profile=profile)
            if not made.check:
                findings.insert(0, Finding(severity="error", node="(FP16 ONNX)", message=(
                    f"differs from the FP32 ONNX on CPU (logits cosine {made.check.cosine:.5f}, finite: "
                    f"{made.check.finite}; needs >= {MIN_COSINE}); build this model in FP32")))
        return Compiled(batch=batch_label, profile=profile, findings=findings)
    output = check_output(job.output if job.output is not None else job.source.with_suffix(".engine"))
    if output.suffix.lower() not in ENGINE_SUFFIXES:
        raise RtkError(f"-o {output}: a TensorRT engine is written as .engine or .plan")
    cache = job.settings.timing_cache
    timing_cache = check_output(Path(cache)) if cache is not None else None
    fp16_path = _fp16_path(output, job.source) if convert else None
    import_tensorrt()
    require_gpu()
    findings = check_onnx(job.model, profile=profile)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise RtkError(f"{job.source}: TensorRT would refuse it ({len(errors)} problems, first: {errors[0].node}: "
                       f"{errors[0].message}); see `rtk compile --target tensorrt --check-only`")
    provenance: dict[str, Any] = {"source": job.source.name, "source_sha256": job.source_sha256}
    onnx_path, files = job.source, [output, sidecar_path(output)]
    if fp16_path is not None:
        job.say("making the FP16 ONNX and comparing it with the FP32 one on CPU")
        made = fp16_onnx_from_onnx(job.source, fp16_path)
        provenance["fp16_onnx"] = {"file": fp16_path.name, "sha256": sha256_file(fp16_path),
                                   "converter": made.converter, "cpu_check": made.check.model_dump()}
        onnx_path, files = fp16_path, [*files, fp16_path]
    job.say(f"building a TensorRT {job.precision} engine (minutes for ResNet50)")
    build = EngineBuild(precision=job.precision, profile=profile, workspace_mb=job.settings.workspace_mb,
                        timing_cache=timing_cache, version_compatible=job.settings.version_compatible)
    out_meta = job.output_meta(target="tensorrt", batch=batch_label)
    _, warnings = engine_from_onnx(onnx_path, output, meta=out_meta, build=build, provenance=provenance)
    return Compiled(batch=batch_label, profile=profile, files=files, main=output, findings=[*findings, *warnings],
                    meta=out_meta)
