"""TensorRT engine from ONNX (`engine_from_onnx`): FP32, FP16, INT8 from Q/DQ, over a batch profile.

INT8 is explicit quantization: the ONNX carries Q/DQ nodes (`rtk quantize --int8 --target tensorrt`) and
the network is built strongly typed, so no INT8 flag or calibrator is set (TensorRT 10's documented path).
`compile_engine` is what `rtk compile --target tensorrt` runs, `--check-only` included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from toolkit.artifact import ModelMeta, atomic_path, check_output, now_iso, sidecar_path, write_json
from toolkit.backends.base import CompileJob, Compiled
from toolkit.backends.tensorrt.bindings import gpu_facts, import_tensorrt
from toolkit.backends.tensorrt.check import check_onnx
from toolkit.errors import RtkError

ENGINE_SUFFIXES = (".engine", ".plan")


class BatchProfile(BaseModel):
    """A TensorRT optimization profile over the batch axis (min <= opt <= max)."""

    min: int = 1
    opt: int = 1
    max: int = 8


def engine_from_onnx(source: Path, output: Path, *, meta: ModelMeta, precision: str, profile: BatchProfile | None,
                     workspace_mb: int | None, timing_cache: Path | None, source_sha256: str) -> dict[str, Any]:
    """Build and write a serialized engine and its sidecar; returns the sidecar's content.

    `precision` is fp32 (TF32 allowed, TensorRT's default), fp16 (FP16 kernels allowed) or int8 (the ONNX
    has Q/DQ; the network is strongly typed). `profile` covers a dynamic batch axis.
    """
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if precision == "int8" else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise RtkError(f"{source}: TensorRT's ONNX parser refused it ({errors[:300]}); "
                       "run `rtk compile --target tensorrt --check-only` for details")
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    inp = network.get_input(0)
    shapes = None
    if any(d < 0 for d in inp.shape):
        if profile is None:
            raise RtkError(f"{source}: dynamic batch needs a profile; give --min-batch/--opt-batch/--max-batch")
        rest = tuple(inp.shape)[1:]
        shapes = {k: (getattr(profile, k), *rest) for k in ("min", "opt", "max")}
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(inp.name, shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RtkError(f"{source}: TensorRT could not build an engine (see the log above); try a larger "
                       "--workspace-mb or --check-only")
    sidecar = {"tensorrt": trt.__version__, **gpu_facts(), "precision": precision, "input": inp.name,
               "input_shape": list(inp.shape), "profile": shapes and {k: list(v) for k, v in shapes.items()},
               "workspace_mb": workspace_mb, "source": Path(source).name, "source_sha256": source_sha256,
               "built_at": now_iso(), "meta": meta.model_dump(mode="json")}
    with atomic_path(output) as tmp:
        tmp.write_bytes(bytes(serialized))
        write_json(sidecar_path(output), sidecar)
    if timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return sidecar


def _batch_plan(job: CompileJob) -> tuple[BatchProfile | None, str]:
    """(profile, label): a static ONNX batch builds as it is; a dynamic one over `--batch` or the profile."""
    profile = job.profile
    if profile is not None and not 1 <= profile.min <= profile.opt <= profile.max:
        raise RtkError(f"batch profile {profile.min}/{profile.opt}/{profile.max}: need 1 <= min <= opt <= max")
    dim = job.model.graph.input[0].type.tensor_type.shape.dim[0]
    onnx_batch = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
    if onnx_batch is not None:
        if job.batch not in (None, onnx_batch):
            raise RtkError(f"{job.source} has a static batch of {onnx_batch}; export with a dynamic batch to build "
                           f"for batch {job.batch}")
        if profile is not None:
            raise RtkError(f"{job.source} has a static batch of {onnx_batch}; a batch profile needs a dynamic-batch "
                           "export")
        return None, str(job.batch or onnx_batch)
    if job.batch is not None:
        return BatchProfile(min=job.batch, opt=job.batch, max=job.batch), str(job.batch)
    profile = profile or BatchProfile()
    return profile, f"dynamic {profile.min}-{profile.max} (opt {profile.opt})"


def compile_engine(job: CompileJob) -> Compiled:
    """`rtk compile --target tensorrt`: the CPU-side check, then (unless `check_only`) the engine and its sidecar."""
    profile, batch_label = _batch_plan(job)
    if job.check_only:
        job.say("checking the graph against TensorRT's rules")
        return Compiled(batch=batch_label, profile=profile, findings=check_onnx(job.model, profile=profile))
    output = check_output(job.output if job.output is not None else job.source.with_suffix(".engine"))
    if output.suffix.lower() not in ENGINE_SUFFIXES:
        raise RtkError(f"-o {output}: a TensorRT engine is written as .engine or .plan")
    timing_cache = check_output(Path(job.timing_cache)) if job.timing_cache is not None else None
    import_tensorrt()
    findings = check_onnx(job.model, profile=profile)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise RtkError(f"{job.source}: TensorRT would refuse it ({len(errors)} problems, first: {errors[0].node}: "
                       f"{errors[0].message}); see `rtk compile --target tensorrt --check-only`")
    job.say(f"building a TensorRT {job.precision} engine (minutes for ResNet50)")
    engine_from_onnx(job.source, output, meta=job.output_meta(target="tensorrt", batch=batch_label),
                     precision=job.precision, profile=profile, workspace_mb=job.workspace_mb,
                     timing_cache=timing_cache, source_sha256=job.source_sha256)
    return Compiled(batch=batch_label, profile=profile, files=[output, sidecar_path(output)], main=output,
                    findings=findings)
