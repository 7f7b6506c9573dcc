"""Post-training INT8 that is fast and accurate on each target: NNCF for the CPU targets, signed QDQ for TensorRT.

| target      | input | tool                                    | output                                         |
|-------------|-------|-----------------------------------------|------------------------------------------------|
| onnxruntime | ONNX  | nncf.quantize                           | QDQ ONNX (u8 activations, s8 per-channel weights)|
| openvino    | ONNX  | nncf.quantize                           | QDQ ONNX (`-o *.onnx`), which OpenVINO reads,  |
|             |       |                                         | or INT8 IR (`-o *.xml`, NNCF's OpenVINO backend)|
| openvino    | IR    | nncf.quantize                           | INT8 IR (FakeQuantize)                         |
| tensorrt    | ONNX  | onnxruntime quantize_static (QDQ, S8S8, | QDQ ONNX: all int8, zero-point 0, per-channel  |
|             |       | symmetric, bias not quantized)          | weights (`tensorrt.check.qdq_form` proves it) |

CPU settings (preset, overflow fix by ISA tier, activation ranges) and the NNCF calls are in
`toolkit.nncf_ptq`.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
from pydantic import BaseModel, Field

from toolkit.artifact import (ModelMeta, check_output, fresh_temp_name, load_onnx, read_meta, sha256_file,
                              write_onnx_meta)
from toolkit.calibration import CalibrationFacts, CalibrationSet, calibration_set
from toolkit.errors import RtkError
from toolkit.nncf_ptq import (AccuracyControl, calibration_batch, control_report, cpu_settings, input_name,
                              labeled_items, nncf_log, quantize_cpu, quantize_with_accuracy, settings_record)
from toolkit.backends.tensorrt.check import REFUSED_OPS, qdq_form

QUANT_TARGETS = ("onnxruntime", "openvino", "tensorrt")
QUANTIZED_OPS = REFUSED_OPS | {"QuantizeLinear", "DequantizeLinear"}   # QDQ and ONNX Runtime's integer operators
TRT_NOTE = "not measurable on this machine (TensorRT needs an NVIDIA GPU); build an engine with `rtk compile`"


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


def is_quantized_onnx(model: Any) -> bool:
    return any(n.op_type in QUANTIZED_OPS for n in model.graph.node)


def quantize_int8(source: Path, *, output: Path, calib: Path | Literal["random"], target: str,
                  subset: int | None = None, seed: int = 0, allow_small: bool = False, max_drop: float | None = None,
                  val: Path | None = None, calib_list: Path | None = None, bench_runs: int = 30,
                  bias_correction: str = "fast", progress: Callable[[str], None] | None = None) -> QuantizeResult:
    """INT8 `source` (.onnx, or .xml for openvino) for `target`, calibrated on `calib`; facts measured vs FP32.

    `subset` images (default 300, or the whole `calib_list`) are picked seeded and class-balanced. With
    `max_drop` (top-1 points) and `val`, NNCF's accuracy control keeps the most sensitive layers in float
    until the drop on `val` is within the bound. `bias_correction` "full" runs NNCF's full bias correction
    (OpenVINO backend, IR output only): about 0.2-0.3 pt back for twice the calibration time (calibration/README.md).
    Nothing is written unless every step succeeds.
    """
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    source, output = Path(source), Path(output)
    if target not in QUANT_TARGETS:
        raise RtkError(f"unknown target {target!r}; choose one of {', '.join(QUANT_TARGETS)}")
    if max_drop is not None and val is None:
        raise RtkError("--max-drop needs a labeled validation folder to measure the drop on; add --val DIR")
    if max_drop is not None and max_drop < 0:
        raise RtkError(f"--max-drop {max_drop}: give a non-negative number of top-1 points")
    if max_drop is not None and target == "tensorrt":
        raise RtkError("--max-drop uses NNCF's accuracy control, which makes the CPU form; for tensorrt quantize "
                       "without it and gate with `rtk validate --max-drop`")
    if val is not None and not Path(val).is_dir():
        raise RtkError(f"--val {val}: folder not found; pass a labeled folder with one sub-folder per class")
    suffix = source.suffix.lower()
    if suffix not in (".onnx", ".xml"):
        raise RtkError(f"{source}: quantize takes an ONNX model (.onnx) or an OpenVINO IR (.xml); "
                       "export a checkpoint first with `rtk export`")
    if suffix == ".xml" and target != "openvino":
        raise RtkError(f"{source}: an OpenVINO IR can only be quantized for --target openvino; give the ONNX model")
    out_suffix = Path(output).suffix.lower()
    if out_suffix not in (".onnx", ".xml") or (suffix == ".xml" and out_suffix != ".xml"):
        form = "*.xml (INT8 IR)" if suffix == ".xml" else "*.onnx (QDQ ONNX) or, for --target openvino, *.xml (INT8 IR)"
        raise RtkError(f"-o {output}: name the output {form}")
    if out_suffix == ".xml" and target != "openvino":
        raise RtkError(f"-o {output}: an INT8 IR is for --target openvino; name the output *.onnx for {target}")
    if bias_correction not in ("fast", "full"):
        raise RtkError(f"--bias-correction {bias_correction!r}: choose fast or full")
    if bias_correction == "full" and out_suffix != ".xml":
        raise RtkError("--bias-correction full runs on NNCF's OpenVINO backend only (its ONNX backend fails with it): "
                       "use --target openvino -o model.xml, or keep the fast one")
    output = check_output(output)
    if output.resolve() == source.resolve():
        raise RtkError(f"-o {output} is the input model; choose another output name")
    meta = read_meta(source)
    model, input_shape = _load_fp32(source)
    if meta.precision == "int8":
        raise RtkError(f"{source} is already INT8 (metadata precision int8); quantize the FP32 model")
    if suffix == ".onnx" and out_suffix == ".xml":
        from toolkit.backends.openvino import convert_onnx

        model = convert_onnx(source)  # NNCF's OpenVINO backend, for an IR output
    if input_shape and tuple(input_shape) != meta.preprocess.input_shape:
        raise RtkError(f"{source} takes input {'x'.join(map(str, input_shape))} but its preprocessing gives "
                       f"{'x'.join(map(str, meta.preprocess.input_shape))}; these images cannot be fed to it, "
                       "re-export the model with rtk")
    if val is not None:
        from toolkit.data import check_classes, image_folder

        check_classes(meta.class_names, image_folder(val, meta.preprocess), what=str(source))
    say("preparing calibration images")
    calset = calibration_set(calib, meta.preprocess, subset=subset, seed=seed, allow_small=allow_small,
                             list_file=calib_list)
    return run_quantize(source=source, output=output, model=model, meta=meta, calset=calset, target=target,
                        max_drop=max_drop, val=Path(val) if val else None, bench_runs=bench_runs, say=say,
                        started=started, fast_bias_correction=bias_correction == "fast")


def _load_fp32(source: Path) -> tuple[Any, tuple[int, ...] | None]:
    """The FP32 model (onnx.ModelProto or ov.Model) and its static C, H, W; refuse an already quantized one."""
    if source.suffix.lower() == ".onnx":
        model = load_onnx(source)
        if is_quantized_onnx(model):
            raise RtkError(f"{source} already has QuantizeLinear/DequantizeLinear nodes; quantize the FP32 model")
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    else:
        from toolkit.backends.openvino import read_model

        model = read_model(source)
        if any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ops()):
            raise RtkError(f"{source} already has FakeQuantize nodes (INT8 IR); quantize the FP32 model")
        shape = model.input(0).get_partial_shape()
        dims = [d.get_length() if d.is_static else 0 for d in shape]
    static = tuple(dims[1:]) if len(dims) == 4 and all(dims[1:]) else None
    return model, static


@contextmanager
def staging(output: Path) -> Iterator[Path]:
    """A temporary folder beside `output`, removed afterwards whatever happens."""
    tmp = fresh_temp_name(output.parent, f".{output.name}.")
    try:
        tmp.mkdir()
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(files: list[Path], folder: Path) -> list[Path]:
    """Move staged files into `folder`, weights before the file that names them (.bin before .xml)."""
    moved = []
    for f in sorted(files, key=lambda p: p.suffix != ".bin"):
        os.replace(f, folder / f.name)
        moved.append(folder / f.name)
    return moved


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


def run_quantize(*, source: Path, output: Path, model: Any, meta: ModelMeta, calset: CalibrationSet, target: str,
                 max_drop: float | None, val: Path | None, bench_runs: int, say: Callable[[str], None],
                 started: float, fast_bias_correction: bool = True) -> QuantizeResult:
    """Quantize into a staging folder, measure FP32 vs INT8 there, then move the finished files into place."""
    is_ir = output.suffix.lower() == ".xml"
    runtime = "openvino" if target == "openvino" else "onnxruntime"
    val_items = labeled_items(val, meta) if max_drop is not None else None
    with staging(output) as tmp:
        staged = tmp / output.name
        t0 = time.perf_counter()
        control = None
        with nncf_log() as log:
            if target == "tensorrt":
                say(f"calibrating {len(calset)} images (onnxruntime quantize_static, TensorRT QDQ form)")
                method, settings, qmodel = "onnxruntime.quantize_static", TRT_SETTINGS, _trt_qdq(source, calset, tmp)
                problems = qdq_form(qmodel)
                if problems:
                    raise RtkError(f"the TensorRT QDQ form check failed: {problems[0].node}: {problems[0].message} "
                                   f"(+{len(problems) - 1} more)")
            else:
                cpu = cpu_settings().model_copy(update={"fast_bias_correction": fast_bias_correction})
                batch = calibration_batch(model) if max_drop is None else 1
                settings = settings_record(cpu, calset, batch)
                say(f"calibrating {len(calset)} images with NNCF ({cpu.isa}: overflow fix {cpu.overflow_fix})")
                if max_drop is None:
                    method, qmodel = "nncf.quantize", quantize_cpu(model, calset, cpu, batch)
                else:
                    method = "nncf.quantize_with_accuracy_control"
                    qmodel = quantize_with_accuracy(model, calset, cpu, val_items, max_drop)
        calib_seconds = time.perf_counter() - t0
        if max_drop is not None:
            control = control_report(log, qmodel, max_drop, is_ir)
            if any("All layers have been checked" in m for m in log):
                from toolkit.errors import GateFailed

                start = f" (INT8 started {control.nncf_drop_pt:.1f} pt below FP32)" if control.nncf_drop_pt else ""
                raise GateFailed(f"NNCF's accuracy control reverted every quantized layer to float and still missed "
                                 f"--max-drop {max_drop}{start}: loosen the bound or check the FP32 model; "
                                 "nothing written")
        quant_meta = artifact_meta(meta, source=source, target=target, method=method, settings=settings,
                                   calibration=calset.facts, reverted=control.reverted_layers if control else None)
        files = _save(qmodel, staged, quant_meta)
        size32, size8 = _size_mb(source), _size_mb(staged)
        facts: dict[str, Any] = {"size_fp32_mb": size32, "size_int8_mb": size8, "size_ratio": size32 / size8,
                                 "calibration_seconds": calib_seconds, "measured_on": runtime}
        if val is not None:
            say(f"top-1 on {val}: FP32 vs INT8 on {runtime}")
            facts.update(_accuracy(source, staged, val, runtime))
        if target == "tensorrt":
            facts["speed_note"] = TRT_NOTE
        elif bench_runs > 0:
            say(f"latency at batch 1 on {runtime}: FP32 vs INT8")
            fp32_ms, int8_ms = _latency([source, staged], runtime, meta.preprocess.input_shape, bench_runs)
            facts.update(latency_fp32_ms=fp32_ms, latency_int8_ms=int8_ms, speedup=fp32_ms / int8_ms)
        if control is not None and facts.get("drop_pt") is not None and facts["drop_pt"] > max_drop + 1e-9:
            from toolkit.errors import GateFailed

            raise GateFailed(f"INT8 top-1 drop {facts['drop_pt']:.2f} pt on {runtime} exceeds --max-drop {max_drop} "
                             f"with {len(control.reverted_layers)} layers reverted to float; nothing written")
        quant_meta = artifact_meta(meta, source=source, target=target, method=method, settings=settings,
                                   calibration=calset.facts, facts=facts,
                                   reverted=control.reverted_layers if control else None)
        files = _save(qmodel, staged, quant_meta)
        final = publish(files, output.parent)
    warnings = list(calset.facts.warnings)
    return QuantizeResult(output=str(output), files=[str(f) for f in final], sha256=sha256_file(output),
                          source=str(source), target=target, method=method, settings=settings,
                          calibration=calset.facts, val=str(val) if val else None, accuracy_control=control,
                          warnings=warnings, seconds=time.perf_counter() - started,
                          **{k: v for k, v in facts.items() if k in QuantizeResult.model_fields})


TRT_SETTINGS: dict[str, Any] = {
    "tool": "onnxruntime.quantization.quantize_static", "quant_format": "QDQ", "activation_type": "QInt8",
    "weight_type": "QInt8", "per_channel": True, "calibrate_method": "MinMax",
    "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
}


def openvino_int8(calset: CalibrationSet, batch: int) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """(ov.Model -> INT8 ov.Model by NNCF with rtk's CPU settings for this machine, the record of how).

    `rtk compile --precision int8 --calibration DIR` uses it, so it gives the same IR as `rtk quantize
    --target openvino -o *.xml` for the same images. `batch`: `calibration_batch` of the model to quantize."""
    cpu = cpu_settings()
    record = quantization_record(target="openvino", method="nncf.quantize", calibration=calset.facts,
                                 settings=settings_record(cpu, calset, batch))
    return (lambda model: quantize_cpu(model, calset, cpu, batch)), record


def _trt_qdq(source: Path, calset: CalibrationSet, tmp: Path) -> Any:
    """Signed, symmetric, per-channel QDQ (TensorRT's explicit quantization) with ONNX Runtime's quantize_static."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    name = input_name(load_onnx(source, load_external_data=False))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calset.samples)

        def get_next(self) -> dict | None:
            x = next(self.items, None)
            return None if x is None else {name: x[None]}

    out = tmp / "trt-qdq.onnx"
    opts = TRT_SETTINGS["extra_options"]
    quantize_static(str(source), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, extra_options=dict(opts))
    model = load_onnx(out)
    out.unlink()
    return model


def _save(model: Any, path: Path, meta: ModelMeta) -> list[Path]:
    if hasattr(model, "graph"):
        import onnx

        write_onnx_meta(model, meta)
        onnx.save(model, str(path))
        return [path]
    import openvino as ov

    from toolkit.backends.openvino import META_PATH, bin_path

    model.set_rt_info(meta.to_json(), META_PATH)
    ov.save_model(model, str(path), compress_to_fp16=False)
    return [path, bin_path(path)]


def _size_mb(path: Path) -> float:
    files = [path, path.with_suffix(".bin")] if path.suffix.lower() == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def _accuracy(fp32: Path, int8: Path, val: Path, runtime: str) -> dict[str, Any]:
    """Top-1 of FP32 and INT8 on the same runtime and images, exactly as `toolkit.validate` computes it."""
    from toolkit.validate import collect_logits, topk_correct

    labels, (ref, got), _, _, images = collect_logits([fp32, int8], val, targets=[runtime, runtime], batch_size=32,
                                                      measure_latency=False)
    top1_fp32 = 100.0 * float(topk_correct(ref, labels, 1).mean())
    top1_int8 = 100.0 * float(topk_correct(got, labels, 1).mean())
    return {"val_images": images, "top1_fp32": top1_fp32, "top1_int8": top1_int8, "drop_pt": top1_fp32 - top1_int8,
            "agreement": 100.0 * float(np.mean(ref.argmax(1) == got.argmax(1)))}


def _latency(paths: list[Path], runtime: str, shape: tuple[int, ...], runs: int, rounds: int = 5) -> list[float]:
    """Median batch-1 latency of each artifact, timed in alternating rounds so machine noise hits both alike."""
    from contextlib import ExitStack

    from toolkit.backends import RunnerOptions, open_runner
    from toolkit.bench import Latency, time_calls

    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    samples: list[list[float]] = [[] for _ in paths]
    with ExitStack() as stack:
        runners = [stack.enter_context(open_runner(p, runtime, options=RunnerOptions(max_batch=1))) for p in paths]
        for r in range(rounds):
            for out, runner in zip(samples, runners):
                out.extend(time_calls(lambda: runner.infer(x), warmup=5 if r == 0 else 1,
                                      runs=max(1, runs // rounds)))
    return [Latency.from_ms(s).p50 for s in samples]
