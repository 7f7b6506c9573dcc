"""What one INT8 run made and bought: the result, the record an INT8 artifact carries, FP32-vs-INT8 facts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from toolkit.artifact import ModelMeta
from toolkit.onnx_file import write_onnx_meta
from toolkit.quantize.calibration import CalibrationFacts

TRT_NOTE = "not measurable on this machine (TensorRT needs an NVIDIA GPU); build an engine with `rtk compile`"


class AccuracyControl(BaseModel):
    """What NNCF's accuracy control did: the layers it put back in float (none when INT8 met the bound)."""

    max_drop_pt: float
    reverted_layers: list[str]
    fp32_layers: list[str] | None
    nncf_drop_pt: float | None
    message: str


@dataclass(frozen=True)
class Quantized:
    """What every INT8 form returns: the quantized model (onnx.ModelProto or ov.Model) and how it was made."""

    model: Any
    method: str
    settings: dict[str, Any]
    control: AccuracyControl | None = None


class QuantizeResult(BaseModel):
    """The INT8 artifact and the three ratios against FP32: size, top-1 drop, speed-up."""

    output: str
    files: list[str]
    sha256: str
    source: str
    target: str
    method: str
    settings: dict[str, Any]
    calibration: CalibrationFacts
    calibration_seconds: float
    size_fp32_mb: float
    size_int8_mb: float
    size_ratio: float
    measured_on: str | None
    measured_isa: str | None = None   # oneDNN ISA tier of measured_on's kernels (toolkit.isa)
    val: str | None = None
    val_images: int | None = None
    top1_fp32: float | None = None
    top1_int8: float | None = None
    drop_pt: float | None = None
    agreement: float | None = None
    latency_fp32_ms: float | None = None
    latency_int8_ms: float | None = None
    speedup: float | None = None
    speed_note: str | None = None
    accuracy_control: AccuracyControl | None = None
    warnings: list[str] = Field(default_factory=list)
    seconds: float


WALL_CLOCK = {"calibration_seconds", "preprocess_seconds"}
"""Facts that differ run to run for the same inputs: in the result JSON, never in the artifact (byte-identical INT8)."""


def quantization_record(*, target: str, method: str, settings: dict[str, Any],
                        calibration: CalibrationFacts) -> dict[str, Any]:
    """How an artifact was quantized, as stored in its metadata (no wall-clock facts: same inputs, same bytes)."""
    return {"target": target, "method": method, "settings": settings,
            "calibration": calibration.model_dump(mode="json", exclude={"skipped"} | WALL_CLOCK)}


def artifact_meta(meta: ModelMeta, *, source: Path, target: str, method: str, settings: dict[str, Any],
                  calibration: CalibrationFacts, facts: dict[str, Any] | None = None,
                  reverted: list[str] | None = None) -> ModelMeta:
    stable = {k: v for k, v in (facts or {}).items() if k not in WALL_CLOCK}
    record = {**quantization_record(target=target, method=method, settings=settings, calibration=calibration),
              "reverted_layers": reverted, "facts": stable}
    out = meta.derived("quantize", parent=source, target=target, method=method)
    return out.model_copy(update={"precision": "int8", "extra": {**out.extra, "quantization": record}})


def save_int8(model: Any, path: Path, meta: ModelMeta) -> list[Path]:
    if hasattr(model, "graph"):
        import onnx

        write_onnx_meta(model, meta)
        onnx.save(model, str(path))
        return [path]
    from toolkit.backends.openvino import META_PATH, bin_path
    from toolkit.backends.openvino.builder import save_model

    model.set_rt_info(meta.to_json(), META_PATH)
    save_model(model, path, compress_to_fp16=False)
    return [path, bin_path(path)]


def size_mb(path: Path) -> float:
    files = [path, path.with_suffix(".bin")] if path.suffix.lower() == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def accuracy(fp32: Path, int8: Path, val: Path, runtime: str) -> dict[str, Any]:
    """Top-1 of FP32 and INT8 on the same runtime and images, exactly as `toolkit.validate` computes it."""
    from toolkit.validate import collect_logits, topk_correct

    labels, (ref, got), _, _, images = collect_logits([fp32, int8], val, targets=[runtime, runtime], batch_size=32,
                                                      measure_latency=False)
    top1_fp32 = 100.0 * float(topk_correct(ref, labels, 1).mean())
    top1_int8 = 100.0 * float(topk_correct(got, labels, 1).mean())
    return {"val_images": images, "top1_fp32": top1_fp32, "top1_int8": top1_int8, "drop_pt": top1_fp32 - top1_int8,
            "agreement": 100.0 * float(np.mean(ref.argmax(1) == got.argmax(1)))}


def latency(paths: list[Path], runtime: str, shape: tuple[int, ...], runs: int, rounds: int = 5) -> list[float]:
    """Median batch-1 latency of each artifact, timed in alternating rounds so machine noise hits both alike."""
    from contextlib import ExitStack

    from toolkit.backends import RunnerOptions, open_runner
    from toolkit.bench import interleaved_p50

    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    with ExitStack() as stack:
        runners = [stack.enter_context(open_runner(p, runtime, options=RunnerOptions(max_batch=1))) for p in paths]
        return interleaved_p50([lambda r=r: r.infer(x) for r in runners], rounds=rounds, runs=max(1, runs // rounds))
