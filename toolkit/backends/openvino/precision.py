"""What OpenVINO's CPU plugin computes in: the settings an rtk IR needs, bf16's requirement, and the fact.

OpenVINO 2026.4 runs float layers in bf16 by default on a CPU with AVX512_BF16 or AMX, whatever the IR stores.
rtk validates an FP32 IR in f32 and a BF16 artifact in bf16, so each IR carries the compile settings that
reproduce its numbers in its rt_info (`rtk/runtime_config`, e.g. {"INFERENCE_PRECISION_HINT": "f32"}): a plain
`core.compile_model(path, "CPU")` does not read them (its rt_info `runtime_options` honours only a short list
of LLM keys such as KV_CACHE_PRECISION and DYNAMIC_QUANTIZATION_GROUP_SIZE; INFERENCE_PRECISION_HINT there was
measured to be ignored on 2026.4), so the deploying code passes them, as the README's snippet does.

The precision that ran is read back from the compiled model, never assumed: `executed` counts the runtime
model's compute layers by their `runtimePrecision`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from toolkit.errors import RtkError

RUNTIME_PATH = ["rtk", "runtime_config"]
HINT = "INFERENCE_PRECISION_HINT"
RUNTIME_CONFIG = {"fp32": {HINT: "f32"}, "bf16": {HINT: "bf16"}}   # by ModelMeta.precision; others: the defaults
COMPUTE = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution")
BF16_TIERS = ("AVX512_CORE_BF16", "AVX512_CORE_AMX")


def runtime_config(precision: str) -> dict[str, str]:
    """The compile_model properties that reproduce what rtk validated for an artifact of this precision."""
    return dict(RUNTIME_CONFIG.get(precision, {}))


def bf16_refusal(tier: str | None = None) -> str | None:
    """Why bf16 is refused here, or None when the oneDNN tier in effect (native, or capped by ONEDNN_MAX_CPU_ISA)
    has native bf16 (AVX512_BF16 or AMX). Below that OpenVINO still plans bf16 and oneDNN emulates it (measured
    on Zen 4 under AVX512_CORE_VNNI: jit_avx512_bf16 kernels instead of brgconv_avx512_bf16), which is slower
    than f32: nothing to deploy."""
    from toolkit.isa import STARTED_WITH, capped_tier

    tier = tier if tier is not None else capped_tier(STARTED_WITH)
    if tier in BF16_TIERS:
        return None
    return (f"bf16 needs a CPU with AVX512_BF16 or AMX (this one runs oneDNN tier {tier or 'below AVX2'}; "
            "`rtk doctor` lists it); use fp32, fp16 or int8")


def require_bf16(tier: str | None = None) -> None:
    reason = bf16_refusal(tier)
    if reason:
        raise RtkError(reason)


def executed(compiled: Any) -> dict[str, int]:
    """Compute layers of the compiled model by the precision they run in, e.g. {"bf16": 53, "f32": 1}."""
    counts: Counter = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in COMPUTE:
            counts[info["runtimePrecision"].astype(str)] += 1
    return dict(counts.most_common())


def summary(counts: dict[str, int]) -> str:
    """"bf16" when one precision ran everything, else e.g. "i8 52 + f32 2" (layers per precision)."""
    if len(counts) == 1:
        return next(iter(counts))
    return " + ".join(f"{p} {n}" for p, n in counts.items()) or "unknown"


def bare_default(device: str = "CPU") -> str:
    """What a bare `core.compile_model(path, device)` computes float layers in on this machine."""
    from toolkit.backends.openvino.loader import core

    return core().get_property(device, HINT).get_type_name()
