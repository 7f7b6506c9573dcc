"""Post-training INT8 that is fast and accurate on each target: NNCF for the CPU targets, signed QDQ for TensorRT.

| target      | input | tool                                    | output                                         |
|-------------|-------|-----------------------------------------|------------------------------------------------|
| onnxruntime | ONNX  | nncf.quantize                           | QDQ ONNX (u8 activations, s8 per-channel weights)|
| openvino    | ONNX  | nncf.quantize                           | QDQ ONNX (`-o *.onnx`), which OpenVINO reads,  |
|             |       |                                         | or INT8 IR (`-o *.xml`, NNCF's OpenVINO backend)|
| openvino    | IR    | nncf.quantize                           | INT8 IR (FakeQuantize)                         |
| tensorrt    | ONNX  | onnxruntime quantize_static (QDQ, S8S8, | QDQ ONNX: all int8, zero-point 0, per-channel  |
|             |       | symmetric, bias not quantized)          | weights (`tensorrt.check.qdq_form` proves it) |

This module is the story: check the request, pick the calibration set (calibration.py), make the INT8 form
the target runs (nncf_cpu.py or trt_qdq.py, one signature, chosen by the backends registry's `int8` column),
measure it against FP32 and write it (result.py). CPU settings (preset, overflow fix by ISA tier, activation
ranges) and the NNCF calls are in nncf_cpu.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Literal

from toolkit.artifact import ModelMeta
from toolkit.backends import BACKENDS, load, open_runner, read_meta, targets_with
from toolkit.backends.base import finite
from toolkit.backends.tensorrt.check import REFUSED_OPS
from toolkit.errors import GateFailed, RtkError
from toolkit.io import atomic_outputs, check_output, sha256_file
from toolkit.isa import effective_tier
from toolkit.onnx_file import input_dims, load_onnx
from toolkit.progress import Progress, silent
from toolkit.quantize.calibration import CalibrationSet, calibration_set
from toolkit.quantize.result import (TRT_NOTE, QuantizeResult, accuracy, artifact_meta, latency, save_int8,
                                     size_mb)
from toolkit.settings import QuantizeSettings

QUANTIZED_OPS = REFUSED_OPS | {"QuantizeLinear", "DequantizeLinear"}   # QDQ and ONNX Runtime's integer operators
FORMS = {"nncf": "toolkit.quantize.nncf_cpu:quantize", "trt_qdq": "toolkit.quantize.trt_qdq:quantize"}


def is_quantized_onnx(model: Any) -> bool:
    return any(n.op_type in QUANTIZED_OPS for n in model.graph.node)


def quantize_int8(source: Path, *, output: Path, calib: Path | Literal["random"], target: str,
                  settings: QuantizeSettings | None = None, val: Path | None = None, seed: int = 0,
                  progress: Progress = silent) -> QuantizeResult:
    """INT8 `source` (.onnx, or .xml for openvino) for `target`, calibrated on `calib`; facts measured vs FP32.

    `settings.subset` images (default 300, or the whole `calib_list`) are picked seeded and class-balanced. With
    `max_drop` (top-1 points) and `val`, NNCF's accuracy control keeps the most sensitive layers in float
    until the drop on `val` is within the bound. `bias_correction` "full" runs NNCF's full bias correction
    (OpenVINO backend, IR output only): about 0.2-0.3 pt back for twice the calibration time (calibration/README.md).
    Nothing is written unless every step succeeds.
    """
    started = time.perf_counter()
    cfg = settings or QuantizeSettings()
    say = progress
    source, output = Path(source), Path(output)
    if target not in targets_with("int8"):
        raise RtkError(f"unknown target {target!r}; choose one of {', '.join(targets_with('int8'))}")
    max_drop = cfg.max_drop
    if max_drop is not None and val is None:
        raise RtkError("--max-drop needs a labeled validation folder to measure the drop on; add --val DIR")
    if max_drop is not None and target == "tensorrt":
        raise RtkError("--max-drop uses NNCF's accuracy control, which makes the CPU form; for tensorrt quantize "
                       "without it and gate with `rtk validate --max-drop`")
    if cfg.isa is not None and target == "tensorrt":
        raise RtkError(f"--isa {cfg.isa} picks NNCF's settings for a CPU; tensorrt's INT8 runs on a GPU: drop --isa")
    if val is not None and not Path(val).is_dir():
        raise RtkError(f"--val {val}: folder not found; pass a labeled folder with one sub-folder per class")
    suffix = source.suffix.lower()
    if suffix not in (".onnx", ".xml"):
        raise RtkError(f"{source}: quantize takes an ONNX model (.onnx) or an OpenVINO IR (.xml); "
                       "export a checkpoint first with `rtk export`")
    if suffix == ".xml" and target != "openvino":
        raise RtkError(f"{source}: an OpenVINO IR can only be quantized for --target openvino; give the ONNX model")
    meta = read_meta(source)
    if meta.precision == "int8":
        raise RtkError(f"{source} is already INT8 (metadata precision int8); quantize the FP32 model")
    if meta.precision == "fp16":
        raise RtkError(f"{source} is FP16; quantize the FP32 ONNX")
    out_suffix = Path(output).suffix.lower()
    if out_suffix not in (".onnx", ".xml") or (suffix == ".xml" and out_suffix != ".xml"):
        form = "*.xml (INT8 IR)" if suffix == ".xml" else "*.onnx (QDQ ONNX) or, for --target openvino, *.xml (INT8 IR)"
        raise RtkError(f"-o {output}: name the output {form}")
    if out_suffix == ".xml" and target != "openvino":
        raise RtkError(f"-o {output}: an INT8 IR is for --target openvino; name the output *.onnx for {target}")
    if cfg.form is not None and cfg.form != ("ir" if out_suffix == ".xml" else "onnx"):
        raise RtkError(f"-o {output}: the {cfg.form} form is written as " + ("*.xml" if cfg.form == "ir" else "*.onnx"))
    if cfg.bias_correction == "full" and out_suffix != ".xml":
        raise RtkError("--bias-correction full runs on NNCF's OpenVINO backend only (its ONNX backend fails with it): "
                       "use --target openvino -o model.xml, or keep the fast one")
    if output.parent.exists():      # else -o runs/x/int8/model.xml: atomic_outputs creates the folders
        output = check_output(output)
    if output.resolve() == source.resolve():
        raise RtkError(f"-o {output} is the input model; choose another output name")
    model, input_shape = _load_fp32(source)
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
    calset = calibration_set(calib, meta.preprocess, subset=cfg.subset, seed=seed, allow_small=cfg.allow_small,
                             list_file=cfg.calib_list)
    with open_runner(source, meta=meta) as fp32:       # a model that outputs NaN cannot be calibrated, only refused
        finite(fp32.infer(calset.samples[:1]), source)
    return run_quantize(source=source, output=output, model=model, meta=meta, calset=calset, target=target,
                        settings=cfg, val=Path(val) if val else None, say=say, started=started)


def _load_fp32(source: Path) -> tuple[Any, tuple[int, ...] | None]:
    """The FP32 model (onnx.ModelProto or ov.Model) and its static C, H, W; refuse an already quantized one."""
    if source.suffix.lower() == ".onnx":
        model = load_onnx(source)
        if is_quantized_onnx(model):
            raise RtkError(f"{source} already has QuantizeLinear/DequantizeLinear nodes; quantize the FP32 model")
        from toolkit.fp16 import is_fp16_onnx

        if is_fp16_onnx(model):   # an FP16 ONNX another converter made (no rtk metadata saying so)
            raise RtkError(f"{source} is FP16; quantize the FP32 ONNX")
        dims = [d or 0 for d in input_dims(model)]
    else:
        from toolkit.backends.openvino import read_model

        model = read_model(source)
        if any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ops()):
            raise RtkError(f"{source} already has FakeQuantize nodes (INT8 IR); quantize the FP32 model")
        shape = model.input(0).get_partial_shape()
        dims = [d.get_length() if d.is_static else 0 for d in shape]
    static = tuple(dims[1:]) if len(dims) == 4 and all(dims[1:]) else None
    return model, static


def run_quantize(*, source: Path, output: Path, model: Any, meta: ModelMeta, calset: CalibrationSet, target: str,
                 settings: QuantizeSettings, val: Path | None, say: Callable[[str], None],
                 started: float) -> QuantizeResult:
    """Quantize into a staging folder, measure FP32 vs INT8 there, then move the finished files into place."""
    max_drop = settings.max_drop
    runtime = "openvino" if target == "openvino" else "onnxruntime"
    val_items = None
    if max_drop is not None:
        from toolkit.quantize.nncf_cpu import labeled_items

        val_items = labeled_items(val, meta)
    form = load(FORMS[BACKENDS[target].int8])
    outputs = [output, output.with_suffix(".bin")] if output.suffix.lower() == ".xml" else [output]
    with atomic_outputs(*outputs, make_folder=not output.parent.exists()) as staged_files:
        staged = staged_files[0]
        t0 = time.perf_counter()
        made = form(model, calset, source=source, settings=settings, val_items=val_items, workdir=staged.parent,
                    say=say)
        calib_seconds = time.perf_counter() - t0
        control = made.control
        reverted = control.reverted_layers if control else None
        quant_meta = artifact_meta(meta, source=source, target=target, method=made.method, settings=made.settings,
                                   calibration=calset.facts, reverted=reverted)
        save_int8(made.model, staged, quant_meta)
        size32, size8 = size_mb(source), size_mb(staged)
        facts: dict[str, Any] = {"size_fp32_mb": size32, "size_int8_mb": size8, "size_ratio": size32 / size8,
                                 "calibration_seconds": calib_seconds, "measured_on": runtime,
                                 "measured_isa": effective_tier(runtime)}
        if val is not None:
            say(f"top-1 on {val}: FP32 vs INT8 on {runtime}")
            facts.update(accuracy(source, staged, val, runtime))
        if target == "tensorrt":
            facts["speed_note"] = TRT_NOTE
        elif settings.bench_runs > 0:
            say(f"latency at batch 1 on {runtime}: FP32 vs INT8")
            fp32_ms, int8_ms = latency([source, staged], runtime, meta.preprocess.input_shape, settings.bench_runs)
            facts.update(latency_fp32_ms=fp32_ms, latency_int8_ms=int8_ms, speedup=fp32_ms / int8_ms)
        if control is not None and facts.get("drop_pt") is not None and facts["drop_pt"] > max_drop + 1e-9:
            raise GateFailed(f"INT8 top-1 drop {facts['drop_pt']:.2f} pt on {runtime} exceeds --max-drop {max_drop} "
                             f"with {len(control.reverted_layers)} layers reverted to float; nothing written")
        quant_meta = artifact_meta(meta, source=source, target=target, method=made.method, settings=made.settings,
                                   calibration=calset.facts, facts=facts, reverted=reverted)
        save_int8(made.model, staged, quant_meta)
    return QuantizeResult(output=str(output), files=[str(f) for f in outputs], sha256=sha256_file(output),
                          source=str(source), target=target, method=made.method, settings=made.settings,
                          calibration=calset.facts, val=str(val) if val else None, accuracy_control=control,
                          warnings=list(calset.facts.warnings), seconds=time.perf_counter() - started,
                          **{k: v for k, v in facts.items() if k in QuantizeResult.model_fields})


__all__ = ["QuantizeResult", "is_quantized_onnx", "quantize_int8"]
