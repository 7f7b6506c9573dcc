"""`rtk compile`: ONNX -> a runtime's own artifact, through that runtime's builder in `toolkit.backends`.

This module holds only what every target shares: the source checks, the precision rule and the result.
Precision follows the ONNX: a graph with Q/DQ nodes compiles to INT8 (`auto`), an FP16 graph to FP16, an FP32
graph to FP32 or, on request, FP16. The builders (`backends/openvino/builder.py`: IR `.xml` + `.bin`;
`backends/tensorrt/builder.py`: engine + sidecar, and `--check-only` without TensorRT) do the rest.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, Field, computed_field

from toolkit.io import sha256_file
from toolkit.onnx_file import load_onnx, read_onnx_meta
from toolkit.backends import BACKENDS, CompileJob, compiler, load, targets_with
from toolkit.backends.tensorrt.builder import BatchProfile
from toolkit.backends.tensorrt.check import Finding, has_qdq
from toolkit.errors import RtkError
from toolkit.fp16 import is_fp16_onnx
from toolkit.progress import Progress, silent
from toolkit.settings import CompileSettings



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
    batch: str = Field(description='The batch in words: "1" (static), "dynamic", "dynamic 1-8 (opt 1)".')
    input: str = Field("", description="What the artifact takes, in words (uint8 pixels where the preprocessing is "
                       "embedded).")
    profile: BatchProfile | None = None
    findings: list[Finding] = Field(default_factory=list)
    passed: bool = True

    @computed_field(description="The artifact's fixed batch size; null where the batch is dynamic (see profile).")
    @property
    def static_batch(self) -> int | None:
        return int(self.batch) if self.batch.isdigit() else None

    def __bool__(self) -> bool:
        return self.passed


def _resolve_precision(precision: str, qdq: bool, fp16: bool, *, target: str, calibration: Path | None,
                       source: Path) -> str:
    if precision == "auto":
        return "int8" if qdq else ("fp16" if fp16 else "fp32")
    if fp16 and precision != "fp16":
        raise RtkError(f"{source} is FP16; compile it with --precision fp16 or auto, or compile the FP32 ONNX for "
                       f"{precision}")
    if qdq and precision != "int8":
        raise RtkError(f"{source} is INT8 (it has Q/DQ nodes); compile it with --precision int8 or auto, "
                       f"or compile the FP32 ONNX for {precision}")
    if precision == "bf16":
        if target != "openvino":
            raise RtkError(f"--precision bf16 is OpenVINO's CPU bf16; compile with --target openvino (not {target})")
        from toolkit.backends.openvino.precision import require_bf16

        require_bf16()
    if precision == "int8" and not qdq:
        if not BACKENDS[target].calibrates:
            raise RtkError(f"{source} has no Q/DQ nodes; run `rtk quantize --int8 --target {target}` first and "
                           "compile its output")
        if calibration is None:
            raise RtkError(f"{source} has no Q/DQ nodes; run `rtk quantize --int8` first, or give --calibration "
                           "DIR to quantize it with NNCF here")
    return precision


def compile_model(source: str | Path, *, target: str, settings: CompileSettings | None = None,
                  output: str | Path | None = None, calibration: str | Path | None = None,
                  progress: Progress = silent) -> CompileResult:
    """Compile an ONNX model for `target`; every bad input is refused before anything is written.

    `settings.batch` fixes the batch size; min/opt/max_batch (TensorRT) set a dynamic batch's profile (default
    1/1/8). `calibration` (OpenVINO only) is an image folder for NNCF INT8 when the ONNX has no Q/DQ nodes.
    """
    started = time.perf_counter()
    settings = settings or CompileSettings()
    source = Path(source)
    backend = compiler(target)
    if source.suffix.lower() != ".onnx":
        raise RtkError(f"{source}: rtk compile takes an ONNX file; make one with `rtk export`")
    if settings.check_only and not backend.check_only:
        raise RtkError(f"--check-only reports what TensorRT would refuse; use it with --target "
                       f"{' or '.join(targets_with('check_only'))}")
    if settings.embed_preprocess and target != "openvino":
        raise RtkError(f"--embed-preprocess puts the preprocessing in an OpenVINO IR; compile with --target openvino "
                       f"(not {target}), or feed {target} the preprocessed input")
    if calibration is not None and not backend.calibrates:
        raise RtkError(f"--calibration is for OpenVINO (NNCF); for {target} run `rtk quantize --int8 --target "
                       f"{target}` and compile its output")
    model = load_onnx(source, load_external_data=False)
    meta = read_onnx_meta(source, model)
    qdq = has_qdq(model)
    precision = _resolve_precision(settings.precision, qdq, is_fp16_onnx(model), target=target,
                                   calibration=Path(calibration) if calibration else None, source=source)
    if calibration is not None and (qdq or precision != "int8"):     # it would be read for nothing
        raise RtkError(f"--calibration quantizes an FP32 ONNX to INT8; {source} is INT8 already (Q/DQ): drop it" if qdq
                       else f"--calibration quantizes to INT8, and this compiles {precision}: add --precision int8, "
                       "or drop --calibration")
    job = CompileJob(source=source, source_sha256=sha256_file(source), model=model, meta=meta, settings=settings,
                     precision=precision, qdq=qdq, output=Path(output) if output is not None else None,
                     calibration=Path(calibration) if calibration else None, say=progress)
    built = load(backend.compiler)(job)
    outs = [OutputFile(path=str(p), bytes=p.stat().st_size, sha256=sha256_file(p)) for p in built.files]
    pre = (built.meta or meta).preprocess
    return CompileResult(source=str(source), source_sha256=job.source_sha256, target=target, precision=precision,
                         input=pre.describe_input(built.batch),
                         check_only=settings.check_only, batch=built.batch, profile=built.profile,
                         output=str(built.main) if built.main else None, files=outs,
                         size_mb=sum(f.bytes for f in outs) / 1e6, findings=built.findings,
                         passed=not any(f.severity == "error" for f in built.findings),
                         seconds=time.perf_counter() - started)
