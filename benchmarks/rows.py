"""The rows of the side-by-side table: what each is, which stage makes it, which runtime runs it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    target: str          # runtime that runs it
    precision: str       # fp32 | bf16 | int8: which peak it is compared with
    artifact: str        # file name inside a model's folder (L = latency model, A = accuracy model)
    made_by: str         # stage that makes it ("" = the FP32 export/checkpoint)
    network: str = "full"   # the network it runs, for its MACs: full, pruned (50%) or pruned_target


ROWS: tuple[Row, ...] = (
    Row("torch_fp32", "PyTorch eager FP32", "torch", "fp32", "model.pt", ""),
    Row("ort_fp32", "ONNX Runtime FP32", "onnxruntime", "fp32", "model.onnx", "export"),
    Row("ov_fp32", "OpenVINO FP32", "openvino", "fp32", "model_fp32.xml", "compile_openvino"),
    Row("ov_bf16", "OpenVINO BF16", "openvino", "bf16", "model_bf16.xml", "compile_openvino"),
    Row("rtk_int8_ort", "rtk INT8 on ONNX Runtime", "onnxruntime", "int8", "rtk_int8_ort.onnx", "rtk_int8"),
    Row("rtk_int8_ov", "rtk INT8 on OpenVINO", "openvino", "int8", "rtk_int8_ov.xml", "rtk_int8"),
    Row("ort_qs_defaults", "ORT quantize_static (defaults) on ONNX Runtime", "onnxruntime", "int8",
        "ort_qs_defaults.onnx", "ort_quantize_static"),
    Row("nncf_defaults", "nncf.quantize (defaults) on OpenVINO", "openvino", "int8", "nncf_defaults.xml",
        "nncf_defaults"),
    Row("pruned_fp32", "rtk pruned 50% FP32 on ONNX Runtime", "onnxruntime", "fp32", "pruned.onnx", "prune", "pruned"),
    Row("pruned_int8_ort", "rtk pruned 50% + INT8 on ONNX Runtime", "onnxruntime", "int8", "pruned_int8_ort.onnx",
        "rtk_int8", "pruned"),
    Row("pruned_int8_ov", "rtk pruned 50% + INT8 on OpenVINO", "openvino", "int8", "pruned_int8_ov.xml",
        "rtk_int8", "pruned"),
    Row("pruned_target_int8_ov", "rtk pruned to a latency target + INT8 on OpenVINO", "openvino", "int8",
        "pruned_target_int8_ov.xml", "rtk_int8", "pruned_target"),
)
BY_KEY = {r.key: r for r in ROWS}
REFERENCE = "ort_fp32"
