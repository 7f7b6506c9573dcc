"""The benchmark harness: a tiny smoke run end to end, the goal verdicts, the CPU floor and a failing stage."""

from __future__ import annotations

import json

import pytest

from benchmarks.floor import MAX_GHZ, cpu_peak, fraction_of_peak, gemm_fp32_gmacs, measured_clock_ghz
from benchmarks.goals import goals
from benchmarks.stages import run_stage


def test_smoke_run_writes_results(tmp_path):
    from benchmarks.run import main

    out = tmp_path / "results"
    assert main(["--mode", "smoke", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    [js] = out.glob("*-smoke.json")
    res = json.loads(js.read_text())
    rows = {r["key"]: r for r in res["rows"]}
    ref = rows["ort_fp32"]
    assert ref["speedup_vs_ort_fp32"]["1"] == pytest.approx(1.0)
    assert len(ref["latency_ms"]["1"]["repeats"]) == res["settings"]["table_repeats"]
    assert ref["latency_ms"]["1"]["min"] <= ref["latency_ms"]["1"]["median"] <= ref["latency_ms"]["1"]["max"]
    assert ref["accuracy"]["drop_pt"] == 0.0 and 0.0 <= ref["accuracy"]["top1"] <= 100.0
    assert res["accuracy_images"] == 3 * 7      # scored on the held-out test split, not the 3 x 6 val images
    assert 0.0 < ref["fraction_of_peak"]["1"] < 1.0
    assert rows["torch_fp32"]["latency_ms"]["8"]["median"] > 0
    int8 = rows["rtk_int8_ort"]                 # the INT8 stage ran and its artifact was timed
    assert "latency_error" not in int8, int8.get("latency_error")
    assert int8["latency_ms"]["1"]["min"] <= int8["latency_ms"]["1"]["median"] <= int8["latency_ms"]["1"]["max"]
    assert rows["nncf_defaults"]["latency_error"] == "not measured in smoke mode"
    assert {g["verdict"] for g in res["goals"]} <= {"met", "not met", "not measured", "not applicable (no AMX)"}
    assert len(res["goals"]) == 16   # THROUGHPUT hints for the FP32 and INT8 IR; 12 MP, 500x375 and bf16 of #21
    assert res["end_to_end"] == {"error": "not measured in smoke mode"}
    assert res["machine"]["cpu"]["cores"] >= 1 and res["machine"]["packages"]["onnxruntime"]
    assert "benchmarks.run" in res["command"]
    md = js.with_suffix(".md").read_text()
    assert "## Goals" in md and "ONNX Runtime FP32 | " in md
    assert res["cpu_peak"]["gemm_fp32_gmacs"] > 0 and "Measured ceiling: a 2048x2048 f32 GEMM" in md
    assert not (out / "LATEST.md").exists(), "only a full run replaces LATEST.md"


def _result(mcnemar: dict | None = None, **speed: float) -> dict:
    rows = []
    for key, sp in speed.items():
        ms = 100 / sp   # repeats spread +-5% around the median
        rows.append({"key": key, "label": key, "latency_ms": {"1": {"median": ms, "min": 0.95 * ms, "max": 1.05 * ms}},
                     "speedup_vs_ort_fp32": {"1": sp}, "accuracy": {"top1": 90.0, "drop_pt": 0.0}})
        if key == "rtk_int8_ov" and mcnemar:
            rows[-1]["accuracy"]["mcnemar"] = mcnemar
    return {"rows": rows, "stages": [], "settings": {"subset": 300, "latency_size": 224, "recovery_epochs": 2},
            "openvino_hints": {"fp32": {"ratio": 1.197, "latency_b1": {"median": 20.0, "repeats": [20.0, 25.0, 20.0]},
                                        "throughput_b8": {"median": 22.0},
                                        "ceiling_gmacs": {"median": 100.0, "repeats": [100.0, 100.0, 125.0]},
                                        "benchmark_app": {"ratio": 1.05, "latency_b1": {"median": 21.0},
                                                          "throughput_b8": {"median": 22.0}}},
                               "int8": {"ratio": 2.5, "latency_b1": {"median": 80.0}, "throughput_b8": {"median": 200.0}}},
            "benchmark_app": {"ratio": 1.02}, "macs": {"full": 4e9}}


LEVEL = {"only_mine": 7, "only_other": 3, "p": 0.34, "images": 1500}     # a raw +4 images: not a lead
AHEAD = {"only_mine": 30, "only_other": 12, "p": 0.0081, "images": 1500}
BEHIND = {"only_mine": 12, "only_other": 30, "p": 0.0081, "images": 1500}


def test_mcnemar_exact_test():
    from benchmarks.goals import mcnemar

    same = mcnemar([True] * 10, [True] * 10)
    assert same["p"] == 1.0 and same["only_mine"] == same["only_other"] == 0
    t = mcnemar([True] * 10 + [False] * 2, [False] * 10 + [True] * 2)   # 10 vs 2 discordant pairs
    assert (t["only_mine"], t["only_other"]) == (10, 2) and t["p"] == pytest.approx(0.03857, abs=1e-4)
    assert mcnemar([True] * 7 + [False] * 3, [False] * 7 + [True] * 3)["p"] > 0.05


def test_goal_verdicts_follow_the_numbers():
    res = _result(ort_fp32=1.0, ov_fp32=0.8, rtk_int8_ort=2.0, rtk_int8_ov=2.4, ort_qs_defaults=0.6,
                  nncf_defaults=2.5, pruned_fp32=3.0, pruned_int8_ov=6.0,
                  mcnemar={"ort_qs_defaults": LEVEL, "nncf_defaults": AHEAD})
    by = {g["goal"]: g for g in goals(res)}
    first = next(g for g in by.values() if g["goal"].startswith("INT8 on the best"))
    assert first["verdict"] == "met" and "2.40x" in first["measured"]
    assert next(g for g in by.values() if g["goal"].startswith("OpenVINO FP32"))["verdict"] == "not met"
    fp32_hint = next(g for g in by.values() if "THROUGHPUT" in g["goal"] and "FP32" in g["goal"])
    assert "benchmark_app's own ratio" in fp32_hint["goal"]
    assert fp32_hint["verdict"] == "met" and "benchmark_app on the same IR: 1.05x" in fp32_hint["measured"]
    assert fp32_hint["measured"].startswith("rtk 1.197x")   # not "1.20x"
    slow_app = _result(ort_fp32=1.0)
    slow_app["openvino_hints"]["fp32"]["benchmark_app"]["ratio"] = 1.30            # 1.197 < 0.95 x 1.30
    assert next(g for g in goals(slow_app) if "benchmark_app's own ratio" in g["goal"])["verdict"] == "not met"
    # 4 GMAC x 20, 25, 20 images/s = 80, 100, 80 GMAC/s against GEMMs of 100, 100, 125 right after each window:
    # 80%, 100%, 64% of the ceiling, so batching could add at most 1.25x (median of 1.25, 1.0, 1.5625)
    assert "ran at 80% (median, 64-100%)" in fp32_hint["measured"] and "at most about 1.25x" in fp32_hint["measured"]
    assert next(g for g in by.values() if "THROUGHPUT" in g["goal"] and "INT8" in g["goal"])["verdict"] == "met"
    assert next(g for g in by.values() if g["goal"].startswith("rtk's OpenVINO latency"))["verdict"] == "met"
    qs = next(g for g in by.values() if "ort_qs_defaults" in g["goal"])      # ahead on speed, level on accuracy
    assert qs["verdict"] == "met" and "speed ahead" in qs["measured"] and "accuracy level" in qs["measured"]
    nncf = next(g for g in by.values() if "nncf_defaults" in g["goal"])      # a speed tie, ahead on accuracy
    assert nncf["verdict"] == "met" and "speed a tie" in nncf["measured"] and "accuracy ahead" in nncf["measured"]
    assert next(g for g in by.values() if ">= 7x" in g["goal"])["verdict"] == "not met"
    assert next(g for g in by.values() if "calibration" in g["goal"])["verdict"] == "not measured"
    # a lower median whose repeats overlap the alternative's is a tie, not a lead
    tie = {g["goal"]: g for g in goals(_result(ort_fp32=1.0, rtk_int8_ov=2.4, nncf_defaults=2.3, ort_qs_defaults=0.6,
                                               mcnemar={"nncf_defaults": LEVEL, "ort_qs_defaults": BEHIND}))}
    nncf = next(g for g in tie.values() if "nncf_defaults" in g["goal"])
    assert nncf["verdict"] == "not met" and "a tie" in nncf["measured"]
    qs = next(g for g in tie.values() if "ort_qs_defaults" in g["goal"])     # faster, but behind on accuracy
    assert qs["verdict"] == "not met" and "accuracy behind" in qs["measured"]


@pytest.mark.parametrize("isa, says", [({}, "(this CPU: no bf16)"),
                                       ({"avx512_bf16": True}, "(this CPU: AVX512_BF16 without AMX, the figure to report)")])
def test_bf16_goal_names_what_this_cpu_has(isa, says):
    """Without AMX the bf16 goal is not applicable, and says whether the CPU has bf16 at all (an Emerald Rapids VM
    without AVX512_BF16 was said to have it)."""
    res = _result(ort_fp32=1.0, ov_fp32=1.0) | {"machine": {"cpu": {"isa": isa}}}
    bf16 = next(g for g in goals(res) if g["goal"].startswith("bf16"))
    assert bf16["verdict"] == "not applicable (no AMX)" and bf16["measured"].endswith(says)


def test_fraction_of_peak_is_mac_rate_over_peak():
    assert fraction_of_peak(macs=4e9, batch=2, ms=100.0, peak_gmacs=160.0) == pytest.approx(0.5)
    peak = cpu_peak()
    assert peak.int8_gmacs >= peak.fp32_gmacs > 0 and str(peak.cores) in peak.assumption
    assert peak.gemm_fp32_gmacs is None   # measured only when asked (a full run does)


def test_gemm_ceiling_is_a_real_rate():
    assert 0 < gemm_fp32_gmacs(n=512, repeats=3, threads=1) < 1000   # one core can't do a tera-MAC/s of f32


def test_measured_clock_is_a_clock_the_peak_bounds_a_gemm():
    """The clock the floor measures where cpufreq is absent (VMs) is one a core runs at, and one core's peak from it
    is above what one core's GEMM does. A chain of `add rax, 1` read 7.9-12.4 GHz on an Emerald Rapids Xeon
    (Golden Cove folds such adds at rename), which made every "% of peak" a quarter of the truth."""
    ghz = measured_clock_ghz()
    if ghz is None:
        pytest.skip("the clock is measured on x86-64 only")
    assert 0.5 < ghz < MAX_GHZ
    assert gemm_fp32_gmacs(n=1024, repeats=3, threads=1) < ghz * cpu_peak().fp32_macs_per_cycle


def test_failed_stage_is_a_reason_not_a_crash(tmp_path):
    out = run_stage("export", {"ckpt": str(tmp_path / "missing.pt"), "onnx": str(tmp_path / "m.onnx")}, tmp_path)
    assert out["ok"] is False and out["reason"].startswith("failed: ")
    assert not (tmp_path / "m.onnx").exists()


def test_end_to_end_rows_run_both_paths(random_onnx, tmp_path):
    """The photo-to-label harness on the tiny model: both paths run over the same JPEGs it makes, every number is
    filled in, and the goals read them."""
    from benchmarks import e2e
    from benchmarks.goals import end_to_end_goals

    big = e2e.make_photos(tmp_path / "12mp", count=2, size=e2e.SIZES["12mp"])
    small = e2e.make_photos(tmp_path / "small", count=6, size=e2e.SIZES["500x375"])
    assert all(p.stat().st_size > 0 for p in big + small)
    rows = e2e.end_to_end({"rtk_int8_ov": (random_onnx, "onnxruntime")}, photos={"12mp": big, "500x375": small},
                          repeats=1, batched=2, say=lambda _: None)
    row = rows["rtk_int8_ov"]
    assert "error" not in row, row
    assert row["12mp"]["naive_ms"] > 0 and row["12mp"]["rtk_ms"] > 0 and row["12mp"]["photos"] == 2
    assert row["500x375"]["naive_ips"] > 0 and row["500x375"]["network_only_ips"] > 0
    res = {"end_to_end": {"rows": rows}, "rows": [], "machine": {"cpu": {"isa": {}}}}
    verdicts = {g["goal"][:20]: g for g in end_to_end_goals(res)}
    assert verdicts["500x375 JPEGs, a fol"]["met"] is not None
    batched = row["500x375"]["batched"]     # the folder again at --batch-size 2, against the network at batch 2
    assert batched["batch"] == 2 and batched["rtk_ips"] > 0 and batched["network_only_ips"] > 0
    assert "with rtk predict --batch-size 2: " in verdicts["500x375 JPEGs, a fol"]["measured"]
    assert verdicts["12 MP JPEG, batch 1,"]["met"] is None   # the decode-accuracy half was not measured


def test_interleaved_turns_start_from_an_idle_cpu():
    """When items alternate, each turn starts `settle` seconds after the previous item's last call (a runtime's
    threads keep spinning after a call returns); one item alone is timed back to back."""
    import time

    from toolkit.bench import Timed, interleaved

    calls: list[tuple[str, float, float]] = []

    def call(name):
        def fn():
            t0 = time.perf_counter()
            calls.append((name, t0, time.perf_counter()))
        return fn

    interleaved([Timed(call=call("a"), runs=2, warmup=1, rewarm=0), Timed(call=call("b"), runs=2, warmup=1,
                                                                           rewarm=0)], rounds=2, settle=0.05)
    switches = [(prev, cur) for prev, cur in zip(calls, calls[1:]) if prev[0] != cur[0]]
    assert [c[0] for c in calls] == list("aaabbbaabb") and len(switches) == 3
    assert all(cur[1] - prev[2] >= 0.05 for prev, cur in switches), switches
    calls.clear()
    started = time.perf_counter()
    interleaved([Timed(call=call("a"), runs=3, warmup=0, rewarm=0)], rounds=3, settle=10.0)
    assert len(calls) == 9 and time.perf_counter() - started < 5.0


def test_each_row_is_held_to_the_peak_with_its_own_networks_macs():
    """The row pruned to a latency target runs another network than the 50%-pruned rows: its % of peak is its own
    MACs' (2026-12-05 it was given the 50%-pruned model's, and read 27% instead of 35%)."""
    from types import SimpleNamespace

    from benchmarks.report import assemble
    from benchmarks.settings import Settings

    one = {"median": 4.0, "min": 4.0, "max": 4.0, "repeats": [4.0]}
    table = {k: {1: one} for k in ("ort_fp32", "pruned_int8_ov", "pruned_target_int8_ov")}
    macs = {"full": 4e9, "pruned": 1e9, "pruned_target": 1.5e9}
    res = assemble(settings=Settings(), builder=SimpleNamespace(missing={}, stages=[]), table=table, scaling=[],
                   hints={}, app={}, accuracy={}, macs=macs, peak=cpu_peak(), command="x", seconds=0.0, trained=None)
    rows = {r["key"]: r for r in res["rows"]}
    assert [rows[k]["macs"] for k in table] == [4e9, 1e9, 1.5e9]
    share = rows["pruned_target_int8_ov"]["fraction_of_peak"]["1"] / rows["pruned_int8_ov"]["fraction_of_peak"]["1"]
    assert share == pytest.approx(1.5)
