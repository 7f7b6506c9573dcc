"""oneDNN ISA tiers: the tier logic on described CPUs, and rtk's INT8 accuracy under every tier this CPU can emulate.

The per-tier case runs `rtk validate --isa TIER` (a fresh process with ONEDNN_MAX_CPU_ISA) on the INT8 IR and the
QDQ ONNX on OpenVINO; a tier above this CPU is skipped with the reason, so an AMX machine runs all of them.
"""

from __future__ import annotations

import json
import re

import pytest

from toolkit.doctor import ISA_FLAGS, CpuInfo
from toolkit.errors import RtkError
from toolkit.isa import (TIERS, capped_tier, check_tier, effective_tier, has_vnni, native_tier, runnable,
                         saturation_risk)
from toolkit.quantize.nncf_cpu import cpu_settings


def cpu(*flags: str) -> CpuInfo:
    return CpuInfo(model="test", machine="x86_64", cores=2, isa={f: f in flags for f in ISA_FLAGS})


AVX512 = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq")
ZEN4 = cpu(*AVX512, "avx512_vnni", "avx512_bf16", "avx_vnni")
CASCADE_LAKE = cpu(*AVX512, "avx512_vnni")
SAPPHIRE_RAPIDS = cpu(*AVX512, "avx512_vnni", "avx512_bf16", "avx_vnni", "avx512_fp16", "amx_tile", "amx_int8",
                      "amx_bf16")


def test_every_flag_a_tier_needs_is_one_doctor_reads():
    assert set().union(*TIERS.values()) <= set(ISA_FLAGS)


def test_the_isa_setting_is_the_tier_vocabulary_in_cli_and_recipe():
    """`validate.isa` takes exactly the tiers toolkit.isa knows, in any case, from a flag or a recipe."""
    from toolkit.cli.flags import build
    from toolkit.recipe import parse_recipe
    from toolkit.settings import ISA_TIERS, ValidateSettings

    assert tuple(TIERS) == ISA_TIERS
    assert build(ValidateSettings, isa=" avx2 ").isa == "AVX2"
    recipe = parse_recipe("name: t\nmodel: {source: random}\nvalidate:\n  isa: avx512_core\n")
    assert recipe.validate_.isa == "AVX512_CORE"
    with pytest.raises(RtkError, match="^--isa SSE9: unknown tier; choose one of AVX2, AVX2_VNNI"):
        build(ValidateSettings, isa="SSE9")
    with pytest.raises(RtkError, match=r"<recipe>:4: validate.isa: .*unknown tier"):
        parse_recipe("name: t\nmodel: {source: random}\nvalidate:\n  isa: SSE9\n")


def test_native_and_runnable_tiers_follow_the_flags():
    assert runnable(ZEN4) == ["AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16"]
    assert native_tier(ZEN4) == ZEN4.int8_class == "AVX512_CORE_BF16"
    assert runnable(CASCADE_LAKE) == ["AVX2", "AVX512_CORE", "AVX512_CORE_VNNI"]    # no AVX-VNNI before Alder Lake
    assert runnable(SAPPHIRE_RAPIDS) == list(TIERS)
    assert native_tier(cpu("avx2", "fma")) == "AVX2" and native_tier(cpu()) is None and cpu().int8_class == "other"


def test_a_cap_runs_the_highest_tier_at_or_below_it():
    """oneDNN's partial order: AVX2_VNNI is below AMX only, so capping a Cascade Lake there leaves plain AVX2."""
    assert capped_tier("avx512_core", ZEN4) == "AVX512_CORE"
    assert capped_tier("AVX2_VNNI", CASCADE_LAKE) == "AVX2"
    assert capped_tier("AVX512_CORE_AMX", ZEN4) == "AVX512_CORE_BF16"
    assert capped_tier(None, ZEN4) == capped_tier("DEFAULT", ZEN4) == "AVX512_CORE_BF16"
    assert capped_tier("AVX2 ", ZEN4) == "AVX512_CORE_BF16"     # oneDNN ignores a value with a space in it
    assert capped_tier("nonsense", ZEN4) == "AVX512_CORE_BF16"     # oneDNN ignores a value it does not know
    assert capped_tier("SSE41", ZEN4) == "SSE41"
    assert effective_tier("openvino", ZEN4, cap="AVX2") == effective_tier("torch", ZEN4, cap="AVX2") == "AVX2"
    assert effective_tier("onnxruntime", ZEN4, cap="AVX2") == "AVX512_CORE_BF16"     # MLAS ignores the cap
    assert effective_tier("tensorrt", ZEN4, cap="AVX2") is None
    assert [t for t in TIERS if has_vnni(t)] == ["AVX2_VNNI", "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_AMX"]


def test_nncf_settings_follow_the_tier():
    """The overflow fix by tier (toolkit.quantize.nncf_cpu): off where VNNI/AMX accumulate in int32, on without VNNI."""
    from toolkit.quantize.nncf_cpu import cpu_settings

    fixes = {c.int8_class: cpu_settings(c).overflow_fix
             for c in (ZEN4, CASCADE_LAKE, SAPPHIRE_RAPIDS, cpu(*AVX512), cpu("avx2", "fma"), cpu())}
    assert fixes == {"AVX512_CORE_BF16": "disable", "AVX512_CORE_VNNI": "disable", "AVX512_CORE_AMX": "disable",
                     "AVX512_CORE": "enable", "AVX2": "enable", "other": "first_layer_only"}
    assert cpu_settings(ZEN4).isa == "AVX512_CORE_BF16"
    for_avx2 = cpu_settings(ZEN4, isa="AVX2")        # quantize --isa: the deployment CPU's tier decides, not this one's
    assert (for_avx2.overflow_fix, for_avx2.isa, for_avx2.built_on) == ("enable", "AVX2", "AVX512_CORE_BF16")
    assert cpu_settings(cpu("avx2", "fma"), isa="AVX512_CORE_AMX").overflow_fix == "disable"


def test_saturation_risk_on_every_tier_without_vnni_and_only_there():
    """validate and bench warn for an artifact with full 8-bit weights on any tier without VNNI, the caps below
    AVX2 included; never for 7-bit weights, a VNNI tier, TensorRT (no tier), or metadata rtk did not write."""
    full = {"quantization": {"settings": {"overflow_fix": "disable", "isa": "AVX512_CORE_VNNI"}}}
    assert "`rtk quantize --isa AVX2` builds for this tier" in saturation_risk(full, "AVX2")
    assert all(saturation_risk(full, t) for t in ("AVX512_CORE", "SSE41", "AVX"))
    assert not any(saturation_risk(full, t) for t in ("AVX2_VNNI", "AVX512_CORE_VNNI", "AVX512_CORE_AMX", None))
    assert saturation_risk({"quantization": {"settings": {"overflow_fix": "DISABLE"}}}, "AVX2")
    for other in ({"quantization": {"settings": {"overflow_fix": "enable"}}}, {}, {"quantization": []},
                  {"quantization": {"settings": "x"}}, {"quantization": {"settings": {"overflow_fix": None}}}):
        assert saturation_risk(other, "AVX2") is None, other


def test_check_tier_refuses_unknown_names_and_tiers_above_the_cpu():
    assert check_tier(" avx2_vnni ", ZEN4) == "AVX2_VNNI"
    with pytest.raises(RtkError, match="unknown tier; choose one of AVX2, AVX2_VNNI"):
        check_tier("AVX", ZEN4)
    with pytest.raises(RtkError, match="lacks amx_bf16 amx_int8 amx_tile avx512_fp16 .*can only go down"):
        check_tier("AVX512_CORE_AMX", ZEN4)
    with pytest.raises(RtkError, match="lacks avx_vnni"):
        check_tier("AVX2_VNNI", CASCADE_LAKE)


def test_doctor_json_names_the_tiers(cli, tmp_path):
    out = tmp_path / "doctor.json"
    assert cli("doctor", "--json", out).exit_code == 0
    report = json.loads(out.read_text())
    tiers = report["isa_tiers"]
    assert tiers["native"] == native_tier() and tiers["runnable"] == runnable() and tiers["native"] in TIERS
    assert tiers["openvino"] == effective_tier("openvino")
    from toolkit.backends.openvino.precision import bf16_refusal

    refused = bf16_refusal()       # bf16 is a plain yes/no, the reason beside it (it was null for "available")
    assert report["bf16"] is (refused is None) and report["bf16_reason"] == refused
    import toolkit

    assert report["packages"]["rtk"] == toolkit.__version__   # what runs, even where pip's metadata is stale


X86 = "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: {name}\n" \
      "stepping\t: {stepping}\nflags\t\t: fpu avx2 fma avx512f\n\nprocessor\t: 1\nmodel\t\t: 999\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: {part}\n\nModel\t\t: {name}\n"


@pytest.mark.parametrize("text, name", [
    (X86.format(vendor="AuthenticAMD", family=25, model=17, name="AMD EPYC", stepping=1),
     "AMD EPYC (Zen 4, family 25 model 17)"),          # a VM's model name alone cannot tell Zen 3, 4 and 5 apart
    (X86.format(vendor="AuthenticAMD", family=25, model=1, name="AMD EPYC 7B13", stepping=1),
     "AMD EPYC 7B13 (Zen 3, family 25 model 1)"),
    (X86.format(vendor="AuthenticAMD", family=26, model=2, name="AMD EPYC", stepping=0),
     "AMD EPYC (Zen 5, family 26 model 2)"),
    (X86.format(vendor="GenuineIntel", family=6, model=143, name="Intel(R) Xeon(R) Platinum 8481C", stepping=8),
     "Intel(R) Xeon(R) Platinum 8481C (Sapphire Rapids, family 6 model 143)"),
    (X86.format(vendor="GenuineIntel", family=6, model=85, name="Intel(R) Xeon(R) CPU @ 2.80GHz", stepping=7),
     "Intel(R) Xeon(R) CPU @ 2.80GHz (Cascade Lake, family 6 model 85)"),
    (X86.format(vendor="GenuineIntel", family=6, model=1, name="Future", stepping=0),
     "Future (family 6 model 1)"),                     # not in rtk's table: the numbers, no guess
    (ARM.format(part="0xd0b", name="Raspberry Pi 5 Model B Rev 1.0"),
     "Raspberry Pi 5 Model B Rev 1.0 (Cortex-A76, part 0xd0b)"),
    (ARM.format(part="0xd42", name="NVIDIA Jetson AGX Orin"), "NVIDIA Jetson AGX Orin (Cortex-A78AE, part 0xd42)"),
])
def test_doctor_names_the_core_a_speed_claim_was_measured_on(text, name, tmp_path):
    """/proc/cpuinfo's first processor gives the vendor, family, model and stepping (x86) or implementer and part
    (ARM); the name every benchmark header, device block and doctor table prints carries them."""
    from toolkit.doctor import cpu_info

    (tmp_path / "cpuinfo").write_text(text)
    info = cpu_info(tmp_path / "cpuinfo")
    assert info.name == name
    assert info.isa["avx512f"] is ("avx512f" in text)
    from benchmarks.report import cpu_slug
    from toolkit.doctor import cpu_name

    assert cpu_name(info.model_dump()) == name and cpu_name({"model": "AMD EPYC", "cores": 2, "machine": "x86_64",
                                                             "isa": {}}) == "AMD EPYC"      # a file from before
    assert cpu_slug(info.model_dump()).startswith(cpu_slug({"model": info.model}))


@pytest.mark.parametrize("tier", list(TIERS))
def test_int8_accuracy_holds_on_every_isa_tier(tier, accurate_int8, tiny_data, cli, tmp_path, monkeypatch):
    """rtk's INT8 IR and QDQ ONNX on OpenVINO keep FP32's top-1 and logits under `tier`, and the capped process
    really ran convolutions of that tier: oneDNN's verbose log names each one's kernel, e.g. brg_conv_fwd:avx2_vnni
    (VNNI or not, AVX-512 or not).

    Built on a VNNI CPU, the artifacts keep full 8-bit weights (overflow fix `disable`, toolkit.quantize.nncf_cpu),
    so a tier without VNNI saturates in the first convolution: top-1 holds, the logits error grows several times
    (calibration/README.md). Its cosine bound is looser for that case alone: 1 - cosine measured 0.0008 on an AMD
    EPYC Zen 4 and 0.0012 on an Intel Xeon (Emerald Rapids, AVX-512 VNNI), 0.0002-0.0003 with VNNI; a broken
    calibration or kernel gives 0.5 and more. Validate warns in exactly that case (`saturation_risk`)."""
    if tier not in runnable():
        pytest.skip(f"{tier} is above this CPU (native tier {native_tier()}); a CPU that has it runs this case")
    saturates = cpu_settings().overflow_fix == "disable" and not has_vnni(tier)
    fp32, qdq, ir = accurate_int8
    monkeypatch.setenv("ONEDNN_VERBOSE", "profile_create")
    out = tmp_path / "v.json"
    res = cli("validate", ir, qdq, "--target", "openvino", "--data", tiny_data / "val", "--reference", fp32,
              "--max-drop", "0.1", "--isa", tier, "--json", out)
    assert res.exit_code == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["reference"]["isa"] == native_tier() and report["reference"]["target"] == "onnxruntime"
    for score in report["artifacts"]:
        assert score["target"] == "openvino" and score["isa"] == tier
        assert score["drop_pt"] <= 0.1 and score["cosine"] > (0.995 if saturates else 0.999), score
        assert (score["saturation_risk"] is not None) == saturates, score     # and validate says so, naming the fix
    assert saturates == (f"`rtk quantize --isa {tier}` builds for this tier" in " ".join(res.stderr.split()))
    kernels = {m.rsplit(":", 1)[-1] for m in re.findall(r",convolution,([^,]+),", res.stderr)}
    assert kernels, res.stderr[-2000:]
    for isa in kernels:
        assert (("vnni" in isa) or ("amx" in isa)) == has_vnni(tier), kernels
        assert (("avx512" in isa) or ("avx10" in isa)) == tier.startswith("AVX512"), kernels
