"""ONNX -> a runtime's own artifact: OpenVINO IR (`.xml` + `.bin`) or a TensorRT engine (`.engine` + sidecar).

Precision follows the ONNX: a graph with Q/DQ nodes compiles to INT8 (`auto`), a float graph to FP32 or,
on request, FP16. `--check-only` for TensorRT reports what TensorRT would refuse without building anything
(and without TensorRT installed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, Field

from toolkit.artifact import check_output, load_onnx, read_onnx_meta, sha256_file
from toolkit.errors import RtkError
from toolkit.backends.tensorrt.check import BatchProfile, Finding, check_onnx, has_qdq

CompileTarget = Literal["openvino", "tensorrt"]
PrecisionChoice = Literal["auto", "fp32", "fp16", "int8"]
COMPILE_TARGETS = ("openvino", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
ENGINE_SUFFIXES = (".engine", ".plan")


class OutputFile(BaseModel):
    path: str
    bytes: int
    sha256: str


class CompileResult(BaseModel):
    """What `rtk compile` made (or, with check_only, what it found); truthy when no finding is an error."""

    source: str
    source_sha256: str
    target: str
    precision: str
    check_only: bool
    output: str | None = None
    files: list[OutputFile] = Field(default_factory=list)
    size_mb: float = 0.0
    seconds: float
    batch: str
    profile: BatchProfile | None = None
    findings: list[Finding] = Field(default_factory=list)
    passed: bool = True

    def __bool__(self) -> bool:
        return self.passed


def _resolve_precision(precision: str, qdq: bool, *, target: str, calibration: Path | None, source: Path) -> str:
    if precision not in PRECISIONS:
        raise RtkError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "int8" if qdq else "fp32"
    if qdq and precision != "int8":
        raise RtkError(f"{source} is INT8 (it has Q/DQ nodes); compile it with --precision int8 or auto, "
                       f"or compile the FP32 ONNX for {precision}")
    if precision == "int8" and not qdq:
        if target == "tensorrt":
            raise RtkError(f"{source} has no Q/DQ nodes; run `rtk quantize --int8 --target tensorrt` first and "
                           "compile its output")
        if calibration is None:
            raise RtkError(f"{source} has no Q/DQ nodes; run `rtk quantize --int8` first, or give --calibration "
                           "DIR to quantize it with NNCF here")
    return precision


def _batch_plan(model, *, target: str, batch: int | None, profile: BatchProfile | None,
                source: Path) -> tuple[int | None, BatchProfile | None, str]:
    """(static batch to set, TensorRT profile, label) from the ONNX input and the user's batch options."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    onnx_batch = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
    if batch is not None and profile is not None:
        raise RtkError("give --batch (a fixed batch) or --min-batch/--opt-batch/--max-batch (a range), not both")
    if batch is not None and batch < 1:
        raise RtkError(f"--batch {batch}: give a positive batch size")
    if profile is not None:
        if target != "tensorrt":
            raise RtkError("--min-batch/--opt-batch/--max-batch are TensorRT profiles; for OpenVINO use --batch "
                           "or keep the dynamic batch")
        if not 1 <= profile.min <= profile.opt <= profile.max:
            raise RtkError(f"batch profile {profile.min}/{profile.opt}/{profile.max}: need 1 <= min <= opt <= max")
    if onnx_batch is not None:
        if target == "tensorrt" and batch not in (None, onnx_batch):
            raise RtkError(f"{source} has a static batch of {onnx_batch}; export with a dynamic batch to build "
                           f"for batch {batch}")
        if profile is not None:
            raise RtkError(f"{source} has a static batch of {onnx_batch}; a batch profile needs a dynamic-batch export")
        return (batch if target == "openvino" else None), None, str(batch or onnx_batch)
    if target == "openvino":
        return batch, None, str(batch) if batch else "dynamic"
    if batch is not None:
        return None, BatchProfile(min=batch, opt=batch, max=batch), str(batch)
    profile = profile or BatchProfile()
    return None, profile, f"dynamic {profile.min}-{profile.max} (opt {profile.opt})"


def _default_output(source: Path, target: str) -> Path:
    return source.with_suffix(".xml") if target == "openvino" else source.with_suffix(".engine")


def compile_model(source: str | Path, *, target: CompileTarget, output: str | Path | None = None,
                  precision: PrecisionChoice = "auto", batch: int | None = None, profile: BatchProfile | None = None,
                  workspace_mb: int | None = None, timing_cache: str | Path | None = None,
                  check_only: bool = False, calibration: str | Path | None = None, calibration_samples: int = 300,
                  progress: Callable[[str], None] | None = None) -> CompileResult:
    """Compile an ONNX model for `target`; every bad input is refused before anything is written.

    `batch` fixes the batch size; `profile` (TensorRT) sets min/opt/max of a dynamic batch (default 1/1/8).
    `calibration` (OpenVINO only) is an image folder for NNCF INT8 when the ONNX has no Q/DQ nodes.
    """
    started = time.perf_counter()
    source = Path(source)
    say = progress or (lambda _msg: None)
    if target not in COMPILE_TARGETS:
        raise RtkError(f"--target {target!r}: rtk compiles for {' or '.join(COMPILE_TARGETS)}")
    if source.suffix.lower() != ".onnx":
        raise RtkError(f"{source}: rtk compile takes an ONNX file; make one with `rtk export`")
    if check_only and target != "tensorrt":
        raise RtkError("--check-only reports what TensorRT would refuse; use it with --target tensorrt")
    if calibration is not None and target != "openvino":
        raise RtkError("--calibration is for OpenVINO (NNCF); for TensorRT run `rtk quantize --int8 --target "
                       "tensorrt` and compile its output")
    model = load_onnx(source, load_external_data=False)
    meta = read_onnx_meta(source, model)
    qdq = has_qdq(model)
    precision = _resolve_precision(precision, qdq, target=target,
                                   calibration=Path(calibration) if calibration else None, source=source)
    static_batch, profile, batch_label = _batch_plan(model, target=target, batch=batch, profile=profile,
                                                     source=source)
    source_sha = sha256_file(source)

    def result(**fields) -> CompileResult:
        return CompileResult(source=str(source), source_sha256=source_sha, target=target, precision=precision,
                             check_only=check_only, batch=batch_label, profile=profile,
                             seconds=time.perf_counter() - started, **fields)

    if check_only:
        say("checking the graph against TensorRT's rules")
        findings = check_onnx(model, profile=profile)
        return result(findings=findings, passed=not any(f.severity == "error" for f in findings))

    output = Path(output) if output is not None else _default_output(source, target)
    out_meta = meta.derived("compile", parent=source, target=target, precision=precision, batch=batch_label)
    out_meta = out_meta.model_copy(update={"precision": precision})
    findings: list[Finding] = []
    if target == "openvino":
        from toolkit.backends.openvino import ir_from_onnx, ir_output

        xml = ir_output(output)
        quantize = None
        if precision == "int8" and not qdq:
            from toolkit.calibration import calibration_set
            from toolkit.nncf_ptq import calibration_batch
            from toolkit.quantize import openvino_int8

            say("reading calibration images")
            calset = calibration_set(Path(calibration), meta.preprocess, subset=calibration_samples, allow_small=True)
            quantize, record = openvino_int8(calset, calibration_batch(model))
            out_meta = out_meta.model_copy(update={"extra": {**out_meta.extra, "quantization": record}})
        say("converting to OpenVINO IR" + (" and quantizing with NNCF" if quantize else ""))
        files = ir_from_onnx(source, xml, meta=out_meta, compress_to_fp16=precision == "fp16", batch=static_batch,
                             quantize=quantize)
        main = xml
    else:
        from toolkit.artifact import sidecar_path
        from toolkit.backends.tensorrt import engine_from_onnx, import_tensorrt

        output = check_output(output)
        if output.suffix.lower() not in ENGINE_SUFFIXES:
            raise RtkError(f"-o {output}: a TensorRT engine is written as .engine or .plan")
        if timing_cache is not None:
            timing_cache = check_output(Path(timing_cache))
        import_tensorrt()
        findings = check_onnx(model, profile=profile)
        errors = [f for f in findings if f.severity == "error"]
        if errors:
            raise RtkError(f"{source}: TensorRT would refuse it ({len(errors)} problems, first: {errors[0].node}: "
                           f"{errors[0].message}); see `rtk compile --target tensorrt --check-only`")
        say(f"building a TensorRT {precision} engine (minutes for ResNet50)")
        engine_from_onnx(source, output, meta=out_meta, precision=precision, profile=profile,
                         workspace_mb=workspace_mb, timing_cache=timing_cache, source_sha256=source_sha)
        files, main = [output, sidecar_path(output)], output
    outs = [OutputFile(path=str(p), bytes=p.stat().st_size, sha256=sha256_file(p)) for p in files]
    return result(output=str(main), files=outs, size_mb=sum(f.bytes for f in outs) / 1e6, findings=findings)
