"""TensorRT's INT8 form: signed, symmetric Q/DQ with per-channel weights and float biases (explicit quantization),
made by ONNX Runtime's quantize_static and proven by `backends.tensorrt.check.qdq_form` before it is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from toolkit.backends.tensorrt.check import qdq_form
from toolkit.errors import RtkError
from toolkit.onnx_file import input_name, load_onnx
from toolkit.quantize.calibration import CalibrationSet
from toolkit.quantize.result import Quantized
from toolkit.settings import QuantizeSettings

TRT_SETTINGS: dict[str, Any] = {
    "tool": "onnxruntime.quantization.quantize_static", "quant_format": "QDQ", "activation_type": "QInt8",
    "weight_type": "QInt8", "per_channel": True, "calibrate_method": "MinMax",
    "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
}


def quantize(model: Any, calset: CalibrationSet, *, source: Path, settings: QuantizeSettings, val_items: list | None,
             workdir: Path, say: Callable[[str], None]) -> Quantized:
    """The TensorRT Q/DQ form of `source` (ONNX only; `model`, `settings` and `val_items` are not needed by it)."""
    say(f"calibrating {len(calset)} images (onnxruntime quantize_static, TensorRT QDQ form)")
    qmodel = _trt_qdq(source, calset, workdir)
    problems = qdq_form(qmodel)
    if problems:
        raise RtkError(f"the TensorRT QDQ form check failed: {problems[0].node}: {problems[0].message} "
                       f"(+{len(problems) - 1} more)")
    return Quantized(qmodel, "onnxruntime.quantize_static", TRT_SETTINGS)


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
