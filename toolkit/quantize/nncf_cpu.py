"""NNCF post-training quantization for the CPU targets (ONNX Runtime, OpenVINO): settings, calls, accuracy control.

CPU settings by the oneDNN ISA tier `toolkit.isa` finds on this CPU (`cpu_settings`; measured numbers are in
calibration/README.md):

| ISA tier              | preset      | overflow fix | why                                                          |
|-----------------------|-------------|--------------|--------------------------------------------------------------|
| *_VNNI, *_BF16, *_AMX | performance | disable      | VPDPBUSD/TDPBUSD add u8*s8 products straight into int32:     |
|                       |             |              | nothing saturates, so weights keep all 8 bits                |
| AVX512_CORE, AVX2     | performance | enable       | without VNNI, VPMADDUBSW sums u8*s8 pairs in int16 and can   |
|                       |             |              | saturate; NNCF's overflow fix gives every weight 7 bits      |
| other                 | performance | first_layer_only | NNCF's default                                           |

The tier is the deployment CPU's: `rtk quantize --isa` (a recipe's quantize.isa), by default the build machine's.
An artifact made for a VNNI tier and run on one without saturates in its first convolution (signed input); on a
trained ResNet50 that quadrupled the logits error but did not lower top-1, while the first-layer fix that prevents
it cost about 0.5 pt on every tier (calibration/README.md). `rtk validate --isa` checks a deployment tier.

Activation ranges on every tier: the min and max over all calibration images (`activations_range=minmax`, as
ONNX Runtime's MinMax and PyTorch's MinMaxObserver), not NNCF's default mean of per-image min/max, which clips
the largest activations: on the benchmark's trained ResNet50, top-1 drop 0.07 -> -0.2 pt on its val split and
0.53 -> 0.07 pt on 1,500 fresh images (calibration/README.md).

`preset=performance` is symmetric (activations after ReLU as u8 with zero-point 0); `model_type` stays unset
because TRANSFORMER is for attention models, not CNNs. ORT's own quantize_static defaults (U8S8 QDQ) are
not used for CPU targets: slower than FP32 on AVX2 and prone to the saturation above.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from pydantic import BaseModel

from toolkit.artifact import ModelMeta
from toolkit.doctor import CpuInfo, cpu_info
from toolkit.errors import GateFailed
from toolkit.isa import has_vnni
from toolkit.onnx_file import input_dims, input_name
from toolkit.quantize.calibration import CalibrationSet
from toolkit.quantize.result import AccuracyControl, Quantized, quantization_record
from toolkit.settings import QuantizeSettings


class CpuSettings(BaseModel):
    preset: str = "performance"
    overflow_fix: str
    target_device: str = "CPU"
    fast_bias_correction: bool = True   # NNCF's default; see calibration/README.md for the full one's cost
    activations_range: str = "minmax"
    isa: str             # the INT8 tier of the CPU the model is for
    built_on: str        # this machine's, where NNCF ran
    reason: str


def cpu_settings(cpu: CpuInfo | None = None, isa: str | None = None) -> CpuSettings:
    """NNCF settings for a CPU target, chosen by the INT8 ISA tier of the CPU that will run the model: `isa`
    (`QuantizeSettings.isa`), by default this one's (see the module docstring)."""
    here = (cpu or cpu_info()).int8_class
    tier = isa or here
    if has_vnni(tier):
        fix, why = "disable", "u8*s8 products accumulate in int32 (VNNI/AMX), no saturation, so full 8-bit weights"
    elif tier in ("AVX512_CORE", "AVX2"):
        fix, why = "enable", "VPMADDUBSW sums u8*s8 pairs in int16 and can saturate; 7-bit weights avoid it"
    else:
        fix, why = "first_layer_only", "NNCF's default overflow fix"
    return CpuSettings(overflow_fix=fix, isa=tier, built_on=here, reason=f"{tier}: {why}"
                       + ("" if tier == here else f" (for that CPU; built on {here})"))


def float_layers(model: Any) -> list[str]:
    """Layers of a quantized graph that run in float: Conv/Gemm/MatMul (Convolution/MatMul in an ov.Model) whose
    weight is not dequantized, and residual Adds none of whose inputs is. NNCF's CPU preset quantizes every one of
    them in a ResNet, so in its output these are the layers accuracy control reverted."""
    if not hasattr(model, "graph"):
        return _float_layers_ov(model)
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in model.graph.node
            if (n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1 and n.input[1] not in dq_out)
            or (n.op_type == "Add" and not any(i in dq_out for i in n.input))]


def _float_layers_ov(model: Any) -> list[str]:
    def quantized(node: Any) -> bool:
        for _ in range(8):           # Constant(i8) -> Convert -> Subtract -> Multiply, or a FakeQuantize
            kind = node.get_type_name()
            if kind in ("FakeQuantize", "FakeConvert"):
                return True
            if kind == "Constant":
                return node.get_element_type().is_integral()
            if node.get_input_size() == 0:
                return False
            node = node.input_value(0).get_node()
        return False

    found = []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        sources = [op.input_value(i).get_node() for i in range(op.get_input_size())]
        if kind in ("Convolution", "MatMul") and not quantized(sources[1]):
            found.append(op.get_friendly_name())
        elif kind == "Add" and all(s.get_type_name() != "Constant" for s in sources) and not any(
                s.get_type_name() == "FakeQuantize" for s in sources):
            found.append(op.get_friendly_name())
    return found


@contextmanager
def nncf_log() -> Iterator[list[str]]:
    """Collect NNCF's log messages instead of letting them print to stdout."""
    import nncf  # noqa: F401  (sets up the "nncf" logger)

    logger = logging.getLogger("nncf")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    saved = list(logger.handlers)
    handler = Collect(level=logging.INFO)
    for h in saved:
        logger.removeHandler(h)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        for h in saved:
            logger.addHandler(h)


# Images per call in NNCF's statistics pass. NNCF's batchwise statistics keep per-image minima, maxima and means,
# so the ranges equal batch 1's (bit-identical on the benchmark's ResNet50); 300 images at 224x224 on 2 cores took
# 24.4 s against 28.0 s at batch 1 (NNCF's per-call bookkeeping, and OpenVINO runs a batch a little faster).
CALIB_BATCH = 8


def calibration_batch(model: Any) -> int:
    """CALIB_BATCH for an ONNX model or ov.Model whose batch dimension is dynamic; 1 when it is fixed."""
    if hasattr(model, "graph"):
        dynamic = input_dims(model)[0] is None
    else:
        dynamic = model.input(0).get_partial_shape()[0].is_dynamic
    return CALIB_BATCH if dynamic else 1


def settings_record(cpu: CpuSettings, calset: CalibrationSet, batch: int) -> dict[str, Any]:
    """The NNCF settings as recorded in the artifact and the result: images counted as images, not NNCF items."""
    return {**cpu.model_dump(), "subset_size": len(calset), "calibration_batch": batch}


def _nncf_args(cpu: CpuSettings, calset: CalibrationSet, batch: int) -> dict[str, Any]:
    import nncf

    return {"preset": nncf.QuantizationPreset(cpu.preset), "target_device": nncf.TargetDevice(cpu.target_device),
            "subset_size": -(-len(calset) // batch), "fast_bias_correction": cpu.fast_bias_correction}


def _calib_dataset(model: Any, calset: CalibrationSet, batch: int) -> Any:
    """The calibration images in batches of `batch` (NNCF counts its subset_size in these items)."""
    import nncf

    stacked = np.stack(calset.samples)
    items = [stacked[i:i + batch] for i in range(0, len(stacked), batch)]
    if hasattr(model, "graph"):
        name = input_name(model)
        return nncf.Dataset(items, lambda x: {name: x})
    return nncf.Dataset(items)


def _advanced(cpu: CpuSettings, *, batchwise_statistics: bool) -> Any:
    import nncf
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    ranges = {"minmax": RangeEstimatorParametersSet.MINMAX, "mean_minmax": RangeEstimatorParametersSet.MEAN_MINMAX}
    return nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(cpu.overflow_fix),
                                               activations_range_estimator_params=ranges[cpu.activations_range],
                                               batchwise_statistics=batchwise_statistics)


def quantize_cpu(model: Any, calset: CalibrationSet, cpu: CpuSettings, batch: int) -> Any:
    import nncf

    advanced = _advanced(cpu, batchwise_statistics=batch > 1)
    return nncf.quantize(model, _calib_dataset(model, calset, batch), advanced_parameters=advanced,
                         **_nncf_args(cpu, calset, batch))


def labeled_items(val: Path, meta: ModelMeta) -> list[tuple[np.ndarray, int]]:
    """The validation images as (batch-1 tensor, label) pairs, the items of NNCF's validation dataset."""
    from toolkit.data import batches, check_classes, image_folder

    data = image_folder(val, meta.preprocess)
    check_classes(meta.class_names, data, what="the model")
    return [(x[None], int(y)) for xs, ys in batches(data, 32) for x, y in zip(xs, ys)]


def _run_any(model: Any, x: np.ndarray, cache: dict) -> np.ndarray:
    """Logits from what NNCF hands a validation function: an onnx.ModelProto or an ov.CompiledModel."""
    if hasattr(model, "graph"):
        if cache.get("model") is not model:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            cache.update(model=model, session=ort.InferenceSession(model.SerializeToString(), opts,
                                                                   providers=["CPUExecutionProvider"]))
        return cache["session"].run(None, {input_name(model): x})[0]
    return np.asarray(model(x)[0])


def quantize_with_accuracy(model: Any, calset: CalibrationSet, cpu: CpuSettings, val_items: list,
                           max_drop: float, metrics: list[tuple[int, float]]) -> Any:
    """nncf.quantize_with_accuracy_control with top-1 as a fraction, so max_drop points / 100 is its unit.

    Layers are ranked by how much reverting them helps: on an IR by the logits' normalised MSE (per-item logits),
    on ONNX by per-item correctness, since NNCF 3.4 implements the MSE ranking for its OpenVINO backend only.
    `metrics` receives (images, top-1) of every validation call: NNCF's first two calls on the whole set are the
    FP32 model and the plain INT8 one (a one-image call to learn the metric's form comes before them).
    """
    import nncf

    cache: dict = {}
    is_onnx = hasattr(model, "graph")

    def validation_fn(compiled: Any, items: Any) -> tuple[float, list]:
        items = list(items)
        logits = np.concatenate([_run_any(compiled, np.concatenate([x for x, _ in items[i:i + 32]]), cache)
                                 for i in range(0, len(items), 32)])
        correct = logits.argmax(1) == np.array([y for _, y in items])
        per_item = [float(c) for c in correct] if is_onnx else [[row[None]] for row in logits]
        metrics.append((len(items), float(np.mean(correct))))
        return metrics[-1][1], per_item

    if is_onnx:
        name = input_name(model)
        val_ds = nncf.Dataset(val_items, lambda item: {name: item[0]})
    else:
        val_ds = nncf.Dataset(val_items, lambda item: item[0])
    advanced = _advanced(cpu, batchwise_statistics=False)
    return nncf.quantize_with_accuracy_control(
        model, _calib_dataset(model, calset, 1), val_ds, validation_fn, max_drop=max_drop / 100.0,
        drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced, **_nncf_args(cpu, calset, 1))


def accuracy_control(qmodel: Any, max_drop: float, metrics: list[tuple[int, float]],
                     images: int) -> AccuracyControl:
    """What accuracy control did, read from the graph it returned (the layers left in float) and from the top-1
    NNCF measured through rtk's validation function on all `images` (FP32 first, then plain INT8)."""
    reverted = float_layers(qmodel)
    whole = [top1 for n, top1 in metrics if n == images]
    start = 100.0 * (whole[0] - whole[1]) if len(whole) >= 2 else None
    began = f" (INT8 started {start:.2f} pt below FP32)" if start is not None else ""
    message = (f"{len(reverted)} layers reverted to float to keep the top-1 drop within {max_drop} pt{began}"
               if reverted else f"INT8 met the bound; no layer needed to be reverted{began}")
    return AccuracyControl(max_drop_pt=max_drop, reverted_layers=reverted, nncf_drop_pt=start,
                           fp32_layers=reverted if hasattr(qmodel, "graph") else None, message=message)


def fully_reverted(qmodel: Any) -> bool:
    """No quantizer left: accuracy control put every layer back in float."""
    if hasattr(qmodel, "graph"):
        return not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in qmodel.graph.node)
    return not any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in qmodel.get_ops())


def quantize(model: Any, calset: CalibrationSet, *, source: Path, settings: QuantizeSettings, val_items: list | None,
             workdir: Path, say: Callable[[str], None]) -> Quantized:
    """NNCF INT8 for a CPU target (ONNX or ov.Model in, the same kind out), with accuracy control when
    `settings.max_drop` is set (`val_items`: the labeled validation images)."""
    cpu = cpu_settings(isa=settings.isa).model_copy(update={"fast_bias_correction": settings.bias_correction == "fast"})
    batch = calibration_batch(model) if settings.max_drop is None else 1
    record = settings_record(cpu, calset, batch)
    say(f"calibrating {len(calset)} images with NNCF for the {cpu.isa} tier (overflow fix {cpu.overflow_fix})")
    with nncf_log():
        if settings.max_drop is None:
            return Quantized(quantize_cpu(model, calset, cpu, batch), "nncf.quantize", record)
        metrics: list[tuple[int, float]] = []
        qmodel = quantize_with_accuracy(model, calset, cpu, val_items, settings.max_drop, metrics)
    control = accuracy_control(qmodel, settings.max_drop, metrics, len(val_items))
    if fully_reverted(qmodel):
        start = f" (INT8 started {control.nncf_drop_pt:.1f} pt below FP32)" if control.nncf_drop_pt else ""
        raise GateFailed(f"NNCF's accuracy control reverted every quantized layer to float and still missed "
                         f"--max-drop {settings.max_drop}{start}: loosen the bound or check the FP32 model; "
                         "nothing written")
    return Quantized(qmodel, "nncf.quantize_with_accuracy_control", record, control)


def openvino_int8(calset: CalibrationSet, batch: int) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """(ov.Model -> INT8 ov.Model by NNCF with rtk's CPU settings for this machine, the record of how).

    `rtk compile --precision int8 --calibration DIR` uses it, so it gives the same IR as `rtk quantize
    --target openvino -o *.xml` for the same images. `batch`: `calibration_batch` of the model to quantize."""
    cpu = cpu_settings()
    record = quantization_record(target="openvino", method="nncf.quantize", calibration=calset.facts,
                                 settings=settings_record(cpu, calset, batch))
    return (lambda model: quantize_cpu(model, calset, cpu, batch)), record
