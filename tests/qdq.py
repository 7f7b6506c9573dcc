"""A test helper: ONNX Runtime's static QDQ quantizer on a few calibration images of the tiny set."""

from __future__ import annotations

from toolkit.backends import read_meta
from toolkit.quantize.calibration import calibration_set

TRT_FORM = dict(per_channel=True, activation_type="QInt8", weight_type="QInt8",
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})


def ort_quantize(source, output, calib_dir, *, samples=8, **kwargs):
    """quantize_static(QDQ, **kwargs) of `source` into `output`; string QuantType names are resolved."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    xs = [x[None] for x in calibration_set(calib_dir, read_meta(source).preprocess, subset=samples,
                                           allow_small=True).samples]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(xs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    for key in ("activation_type", "weight_type"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = getattr(QuantType, kwargs[key])
    quantize_static(str(source), str(output), Reader(), quant_format=QuantFormat.QDQ, **kwargs)
    return output


def trt_form_qdq(source, output, calib_dir, samples=8):
    """INT8 QDQ ONNX in TensorRT's form (signed, symmetric, per-channel weights)."""
    return ort_quantize(source, output, calib_dir, samples=samples, **TRT_FORM)
