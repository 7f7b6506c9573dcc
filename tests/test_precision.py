"""The precision OpenVINO executes: bf16 where the CPU has it (refused where not), read back, not assumed; and a
bare `core.compile_model(path, "CPU")` of an rtk IR gives what rtk reported, or rtk's report names the difference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.backends.openvino.precision import (HINT, RUNTIME_PATH, bf16_refusal, executed, summary)
from toolkit.backends import open_runner
from toolkit.validate import validate

HAS_BF16 = bf16_refusal() is None
ROOT = Path(__file__).resolve().parents[1]


def _rtk(*args, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_extra}
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_bf16_tiers():
    assert bf16_refusal("AVX512_CORE_BF16") is None and bf16_refusal("AVX512_CORE_AMX") is None
    for tier in ("AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"):
        assert "AVX512_BF16 or AMX" in bf16_refusal(tier)


def test_bf16_refused_on_a_cpu_without_it(random_onnx, tmp_path):
    """Under ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI oneDNN has no native bf16 (OpenVINO's own capability list ignores
    the cap and would emulate bf16 with jit_avx512_bf16 kernels): compile and bench refuse, one line, exit 2."""
    out = tmp_path / "bf16" / "model.xml"
    done = _rtk("compile", random_onnx, "--target", "openvino", "--precision", "bf16", "-o", out,
                env_extra={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"})
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "AVX512_BF16 or AMX" in done.stderr
    assert not out.parent.exists()
    done = _rtk("compile", random_onnx, "--target", "tensorrt", "--precision", "bf16", "--check-only",
                env_extra={})
    assert done.returncode == 2 and "--target openvino" in done.stderr


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has neither AVX512_BF16 nor AMX")
def test_bf16_compiles_validates_and_benches(random_onnx, tiny_data, tmp_path, cli):
    out = tmp_path / "bf16" / "model.xml"
    assert cli("compile", random_onnx, "--target", "openvino", "--precision", "bf16", "-o", out).exit_code == 0
    report = validate([out], tiny_data / "val", reference=random_onnx, measure_latency=False)
    score = report.artifacts[0]
    assert score.precision == "bf16" and score.executed_precision == "bf16" and score.bare_compile_differs is None
    assert abs(score.drop_pt) <= 25.0 and score.agreement is not None
    result = cli("bench", out, "--runs", "3", "--warmup", "1", "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "b.json").read_text())["executed_precision"] == "bf16"
    done = _rtk("bench", out, "--runs", "2", env_extra={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"})
    assert done.returncode == 2 and "AVX512_BF16 or AMX" in done.stderr


def test_bare_compile_model_runs_what_rtk_reported_or_rtk_names_the_difference(random_ir, tiny_data, tmp_path):
    """A plain OpenVINO application compiles the rtk IR with no settings: where that computes in another precision
    than rtk validated (bf16 instead of f32 on a CPU with AVX512_BF16/AMX), the report says so and names the
    setting; compiled with the settings the IR carries, it runs exactly what rtk reported."""
    import openvino as ov

    score = validate([random_ir], tiny_data / "val", measure_latency=False).artifacts[0]
    core = ov.Core()
    bare = summary(executed(core.compile_model(str(random_ir), "CPU")))
    model = core.read_model(str(random_ir))
    config = {HINT: str(model.get_rt_info([*RUNTIME_PATH, HINT]).astype(str))}
    assert config[HINT] == "f32" and score.executed_precision == "f32"
    assert summary(executed(core.compile_model(model, "CPU", config))) == score.executed_precision
    if bare == score.executed_precision:
        assert score.bare_compile_differs is None
    else:
        assert score.bare_compile_differs and bare in score.bare_compile_differs
        assert f"{HINT}=f32 (the IR's rt_info rtk/runtime_config records it)" in score.bare_compile_differs
        edited = tmp_path / "edited.xml"      # the record emptied by hand: the advice no longer points at it
        copy = core.read_model(str(random_ir))
        copy.set_rt_info("", [*RUNTIME_PATH, HINT])
        ov.save_model(copy, str(edited), compress_to_fp16=False)
        with open_runner(edited, "openvino") as runner:
            advice = runner.describe()["bare_compile_differs"]
        assert advice.endswith(f"{HINT}=f32"), advice
