"""Recipes (schema, strictness, safety), `rtk run` end to end on a tiny recipe, gates, resume and compare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from toolkit.errors import RtkError
from toolkit.recipe import Recipe, demo_recipe, parse_recipe

from tiny_recipe import TINY

RECIPES = sorted(Path(__file__).resolve().parents[1].joinpath("recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipes_validate(path):
    text = path.read_text()
    recipe = parse_recipe(text, path)
    assert text.startswith("#"), "each shipped recipe is documented at its top"
    assert recipe.name == path.stem


def test_shipped_set_is_complete():
    assert {p.stem for p in RECIPES} >= {"demo", "resnet50-int8-openvino", "resnet50-int8-tensorrt",
                                         "resnet50-pruned-int8-openvino", "transfer-learning"}
    assert demo_recipe().prune and demo_recipe().quantize and "openvino" in demo_recipe().compile.targets


def test_schema_is_json_schema(cli):
    result = cli("recipe", "schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "Recipe" and "gates" in schema["properties"]


@pytest.mark.parametrize("text, fragment", [
    (TINY.replace("runs: 5", "runz: 5"), ":11: unknown key 'bench.runz'"),
    (TINY.replace("runs: 5", "runs: many"), ":11: bench.runs"),
    (TINY + "extra: {a: [1, 2}\n", "YAML syntax error"),
    (TINY.replace("onnxruntime: 100000", "openvino: 5"), ":16: recipe: gates.max_p99_ms names ['openvino'], which "
                                                          "compile.targets does not build"),     # the gate's line
    (TINY.replace("targets: [onnxruntime]", "targets: [tflite]"), "compile.targets.0"),
    (TINY.replace("targets: [onnxruntime]", "targets: [onnxruntime]\n  embed_preprocess: true"),
     ":10: recipe: compile.embed_preprocess puts the preprocessing in the OpenVINO IR"),  # the line it names
    (TINY + "sweep:\n  values:\n    compile.embed_preprocess: [false, true]\n", "compile.targets builds none"),
    ("- just\n- a list\n", "a recipe is a YAML mapping"),
    (TINY.replace("max_drop_pt: 0.5", "max_drop_pt: -1"), "gates.max_drop_pt"),
    (TINY + "quantize: {max_drop: 2.0}\n", "allows more than gates.max_drop_pt"),
    (TINY + "quantize: {isa: avx3}\n", "quantize.isa: unknown tier; choose one of AVX2"),
    (TINY.replace("targets: [onnxruntime]", "targets: [tensorrt]") + "quantize: {isa: AVX2}\n",
     "quantize.isa picks NNCF's settings for a CPU; tensorrt's INT8 runs on a GPU: drop it"),
    (TINY.replace("runs: 5", "runs: 5\n  seconds: 1"), ":10: bench: give runs or seconds, not both; fix"),
    # a key that YAML reads as a date, true or null is named as the recipe writes it, not as Python's repr
    (TINY.replace("onnxruntime: 100000", "2026-01-01: 5"), ":16: gates.max_p99_ms: key 2026-01-01: Input should be"),
    (TINY.replace("onnxruntime: 100000", "true: 5"), "gates.max_p99_ms: key true: Input should be a valid string"),
    (TINY.replace("onnxruntime: 100000", "~: 5"), "gates.max_p99_ms: key null: Input should be a valid string"),
    (TINY + "devices: {nuc: 2026-01-01}\n", "devices.nuc: Input should be a valid dictionary; fix"),   # no class
    (TINY.replace("onnxruntime: 100000", "onnxruntime: yes"), ":16: gates.max_p99_ms: true/false is not a number"),
])
def test_bad_recipes_name_the_problem(text, fragment):
    with pytest.raises(RtkError) as err:
        parse_recipe(text, Path("r.yaml"))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value) and "Value error" not in str(err.value)


def test_choice_and_dump_path_messages(cli, random_onnx, tmp_path):
    result = cli("compile", random_onnx, "--target", "tensorrt", "--precision", "FP16")
    assert result.exit_code == 2 and "'auto', 'fp32', 'fp16', 'bf16' or 'int8'" in result.stderr, result.stderr
    result = cli("compile", random_onnx, "--target", "openvino", "--dump-recipe", tmp_path)
    assert result.exit_code == 2 and f"e.g. {tmp_path / 'recipe.yaml'}" in result.stderr, result.stderr
    result = cli("compile", random_onnx, "--target", "openvino", "--dump-recipe", tmp_path / "no" / "r.yaml")
    assert result.exit_code == 2 and "--dump-recipe" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cross_field_errors_name_the_flags(cli, random_onnx):
    result = cli("bench", random_onnx, "--runs", "5", "--seconds", "1")
    assert result.exit_code == 2 and "give --runs or --seconds, not both" in result.stderr, result.stderr
    result = cli("compile", random_onnx, "--target", "tensorrt", "--check-only", "--batch", "2", "--max-batch", "4")
    assert result.exit_code == 2 and "give --batch (a fixed batch) or --min-batch/--opt-batch/--max-batch" in \
        result.stderr, result.stderr


def test_alias_bombs_are_refused():
    bomb = "name: x\na: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    with pytest.raises(RtkError, match="aliases"):
        parse_recipe(bomb, Path("bomb.yaml"))


def test_missing_files_named_in_recipe(cli, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(TINY.replace("synth: {classes: 4, per_class: 12, val_per_class: 8, size: 64}",
                                 f"root: {tmp_path / 'nowhere'}"))
    result = cli("run", path, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "nowhere" in result.stderr
    assert not (tmp_path / "out").exists()


def test_dump_round_trips():
    recipe = parse_recipe(TINY)
    from toolkit.recipe import dump_recipe

    assert parse_recipe(dump_recipe(recipe)) == recipe
    assert Recipe.model_validate(yaml.safe_load(dump_recipe(recipe))) == recipe


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real `rtk run` of the tiny recipe (random ResNet50, synthetic data, ONNX Runtime). Shared and never
    written to by the tests: one that runs into a run folder again copies it first or makes its own."""
    from typer.testing import CliRunner

    from toolkit.cli import app

    folder = tmp_path_factory.mktemp("run")
    recipe = folder / "tiny.yaml"
    recipe.write_text(TINY)
    result = CliRunner().invoke(app, ["run", str(recipe), "-o", str(folder / "out"), "--json", str(folder / "r.json")])
    return folder, result


def test_run_writes_artifacts_manifest_and_report(tiny_run):
    folder, result = tiny_run
    assert result.exit_code == 0, result.stderr
    out = folder / "out"
    for name in ("model.pt", "model.onnx", "manifest.json", "report.json", "report.md", "latency.png", "pareto.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is True and {g["name"] for g in report["gates"]} == {"max_drop_pt", "max_p99_ms"}
    assert report["headline"]["accuracy_drop_pt"] == 0.0
    fp32 = next(r for r in report["rows"] if r["name"] == "fp32")
    assert len(fp32["p50_repeats"]) == 2 and fp32["latency_ms"]["runs"] == 10
    manifest = json.loads((out / "manifest.json").read_text())
    from toolkit.io import sha256_file

    made = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and ".rtk" not in p.parts and p.name != "manifest.json")
    assert "report.json" in made and "report.md" in made and "latency.png" in made
    assert manifest["outputs"] == {name: sha256_file(out / name) for name in made}   # written last: every output
    assert manifest["packages"]["onnxruntime"] and "isa" in manifest["machine"]["cpu"]
    from toolkit.isa import effective_tier, native_tier

    assert manifest["machine"]["isa_tiers"]["native"] == native_tier()
    for r in report["rows"]:   # every row, measured; uncapped, so accuracy and latency ran on the same tier
        assert r["latency_isa"] == effective_tier(r["target"]) or r["role"] == "reference", r
        assert r["accuracy_isa"] == effective_tier(r["target"]), r
    assert manifest["measured_isa"]["latency"]["onnxruntime"] == effective_tier("onnxruntime")
    assert "validate" in manifest["recipe"] and "validate_" not in manifest["recipe"]   # the recipe's own key
    assert [s["name"] for s in manifest["stages"]][:3] == ["data", "model", "export:model"]
    md = (out / "report.md").read_text()
    assert "accuracy drop" in md and "speed-up" in md and "`max_drop_pt`" in md
    assert "ISA tier (oneDNN) per runtime for accuracy" in md and "ISA tier (oneDNN) per runtime for latency" in md
    from toolkit.doctor import cpu_info

    assert fp32["machine"] == cpu_info().name and f"Latency measured here, on {cpu_info().name}." in md   # which CPU


def test_report_names_the_tier_each_number_ran_on():
    """validate.isa caps the accuracy check only: the row's latency keeps the tier bench ran on."""
    from toolkit.bench import BenchPoint, BenchResult, Latency
    from toolkit.pipeline.report import build_report, markdown
    from toolkit.pipeline.stages import Artifact, Outcome

    recipe = parse_recipe(TINY.replace("gates:", "validate: {isa: avx2}\ngates:"))
    art = Artifact(name="fp32", path="m.onnx", target="openvino", precision="fp32", role="fp32")
    score = {"artifact": "m.onnx", "top1": 50.0, "drop_pt": 0.0, "isa": "AVX2"}
    point = BenchPoint(batch=1, latency_ms=Latency.from_ms([2.0, 3.0]), throughput_ips=400.0, samples_ms=[2.0, 3.0])
    timed = BenchResult(artifact="m.onnx", sha256="0", target="openvino", precision="fp32", input_size=64, runtime={},
                        warmup=1, results=[point], isa="AVX512_CORE").model_dump(mode="json")
    outcome = Outcome(artifacts=[art], validation={"reference": {"artifact": "ref"}, "artifacts": [score], "images": 8},
                      benches={"": {"fp32": [timed]}})
    report = build_report(recipe, outcome, [])
    assert (report.rows[0].accuracy_isa, report.rows[0].latency_isa) == ("AVX2", "AVX512_CORE")
    md = markdown(report)
    assert "for accuracy: openvino AVX2." in md and "for latency: openvino AVX512_CORE." in md


def test_report_interval_stays_positive_and_names_the_saturation_risk():
    """Three repeats as far apart as a noisy VM gives (hostile pass: a Student-t interval on the p50s reached below
    0 ms) keep a positive interval around their geometric mean; a device bench's saturation_risk is a report line."""
    from toolkit.bench import BenchPoint, BenchResult, Latency
    from toolkit.pipeline.report import build_report, markdown
    from toolkit.pipeline.stages import Artifact, Outcome

    art = Artifact(name="int8", path="q.onnx", target="onnxruntime", precision="int8", role="fp32")
    runs = [BenchResult(artifact="q.onnx", sha256="0", target="onnxruntime", precision="int8", input_size=64,
                        runtime={}, warmup=1, isa="AVX2", saturation_risk="quantized with full 8-bit weights",
                        results=[BenchPoint(batch=1, latency_ms=Latency.from_ms([ms]), throughput_ips=1e3 / ms,
                                            samples_ms=[ms])]).model_dump(mode="json") for ms in (0.2, 0.2, 3.0)]
    report = build_report(parse_recipe(TINY), Outcome(artifacts=[art], validation=None,
                                                      benches={"": {"int8": runs}}), [])
    low, high = report.rows[0].p50_ci95
    assert 0 < low < 0.2 * 15 ** (1 / 3) < high, (low, high)     # around the geometric mean of the three
    assert "- ⚠ int8: quantized with full 8-bit weights" in markdown(report)


def _copy_run(tiny_run, tmp_path: Path) -> Path:
    """A private copy of the shared run, for a test that runs into it again (the shared one stays as made; stages
    whose cache names the old folder's paths run again in the copy)."""
    folder, _ = tiny_run
    shutil.copytree(folder, tmp_path / "copy")
    return tmp_path / "copy"


def test_rerun_refuses_then_resumes(cli, tmp_path):
    folder = tmp_path
    (folder / "tiny.yaml").write_text(TINY)
    assert cli("run", folder / "tiny.yaml", "-o", folder / "out").exit_code == 0
    refused = cli("run", folder / "tiny.yaml", "-o", folder / "out")
    assert refused.exit_code == 2 and "--resume" in refused.stderr
    resumed = cli("run", folder / "tiny.yaml", "-o", folder / "out", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    stages = json.loads((folder / "out" / "manifest.json").read_text())["stages"]
    assert all(s["skipped"] for s in stages), stages
    (folder / "tiny.yaml").write_text(TINY.replace("val_per_class: 8", "val_per_class: 2"))    # other data
    resumed = cli("run", folder / "tiny.yaml", "-o", folder / "out", "--resume")
    report = json.loads((folder / "out" / "report.json").read_text())
    assert resumed.exit_code == 0 and report["validation_images"] == 4 * 2, resumed.stderr
    assert len(list((folder / "out" / "data" / "val").rglob("*.png"))) == 4 * 2
    assert [s["skipped"] for s in report["stages"] if s["name"] == "data"] == [False]


def test_gate_failure_exits_1_and_is_named(tiny_run, cli, tmp_path):
    folder = _copy_run(tiny_run, tmp_path)
    strict = folder / "strict.yaml"
    strict.write_text(TINY.replace("onnxruntime: 100000", "onnxruntime: 0.001"))
    result = cli("run", strict, "-o", folder / "out", "--resume", "--json", folder / "strict.json")
    assert result.exit_code == 1
    assert result.stderr.count("max_p99_ms FAILED") == 1, result.stderr   # once, as the error line
    report = json.loads((folder / "strict.json").read_text())
    assert report["passed"] is False
    assert "❌ `max_p99_ms`" in (folder / "out" / "report.md").read_text()


def _reports(folder: Path, models: dict[str, Path]) -> dict[str, Path]:
    """One report.json per model, each an fp32 row of real bench repeats. The repeats are interleaved
    (A B A B ...) so that this VM's ~2x swings between a slow and a fast state land on every model alike."""
    from toolkit.bench import Latency, bench
    from toolkit.settings import BenchSettings

    runs = {name: [] for name in models}
    for _ in range(3):
        for name, onnx_path in models.items():
            runs[name].append(bench(onnx_path, settings=BenchSettings(warmup=2, runs=8)))
    out = {}
    for name, rs in runs.items():
        samples = [v for r in rs for v in r.results[0].samples_ms]
        row = {"name": "fp32", "path": str(models[name]), "target": "onnxruntime", "precision": "fp32",
               "role": "fp32", "size_mb": 1.0, "top1": 50.0, "latency_ms": Latency.from_ms(samples).model_dump(),
               "p50_repeats": [r.results[0].latency_ms.p50 for r in rs]}
        report = {"recipe": name, "rtk": "test", "created": "2026-01-01T00:00:00+00:00", "passed": True,
                  "headline": {"artifact": "fp32", "accuracy_drop_pt": None, "size_ratio": None, "speedup": None},
                  "gates": [], "rows": [row], "validation_images": 8, "stages": []}
        out[name] = folder / f"{name}.json"
        out[name].write_text(json.dumps(report))
    return out


def test_compare_verdict_needs_ratio_and_interval():
    from toolkit.compare import latency_verdict

    assert latency_verdict([5.0, 5.1, 5.2], [5.3, 5.4, 5.5], 0.2)[2] == "no change"     # under the tolerance
    assert latency_verdict([5.0, 5.1, 9.0], [7.0, 7.1, 7.2], 0.2)[2] == "no change"     # ratio 1.39, repeats overlap
    assert latency_verdict([5.0, 5.1, 5.2], [7.0, 7.1, 7.2], 0.2)[2] == "slower"
    assert latency_verdict([7.0, 7.1, 7.2], [5.0, 5.1, 5.2], 0.2)[2] == "faster"


def test_latency_interval_uses_student_t_at_every_repeat_count():
    """The report's p50 interval: Student-t quantiles (within 0.005 of scipy.s), not 1.96, past the table's 9 degrees
    of freedom (a recipe may ask for up to 100 repeats)."""
    from toolkit.pipeline.report import ci95, t95

    exact = {1: 12.706, 5: 2.571, 9: 2.262, 10: 2.228, 11: 2.201, 15: 2.131, 20: 2.086, 30: 2.042, 99: 1.984}
    assert all(abs(t95(df) - q) < 0.005 for df, q in exact.items())
    low, high = ci95([1.0] * 6 + [2.0] * 6)                # df 11: mean 1.5, sd 0.522, half 2.201 * 0.1508
    assert high - low == pytest.approx(2 * 2.201 * 0.52223 / 12 ** 0.5, rel=2e-3)


def test_compare_no_change_and_real_slowdown(random_onnx, random_ckpt, tmp_path, cli):
    from toolkit.export import export_onnx
    from toolkit.models import load_model

    model, meta = load_model(random_ckpt, input_size=160)
    big = tmp_path / "big.onnx"
    export_onnx(model, meta, big)
    reports = _reports(tmp_path, {"a": random_onnx, "b": random_onnx, "slow": big})
    same = cli("compare", reports["a"], reports["b"], "--json", tmp_path / "same.json")
    assert same.exit_code == 0, same.stdout
    assert json.loads((tmp_path / "same.json").read_text())["rows"][0]["latency"] == "no change"
    slower = cli("compare", reports["a"], reports["slow"], "--json", tmp_path / "slower.json")
    assert slower.exit_code == 1
    row = json.loads((tmp_path / "slower.json").read_text())["rows"][0]
    assert row["latency"] == "slower" and row["ratio"] > 1.2   # 160 px vs 64 px: ~6x the MACs; > tolerance is enough


def test_demo_recipe_runs_at_small_size(tmp_path):
    """The demo's whole chain (train -> prune -> INT8 -> OpenVINO -> report), with smaller sizes, and the IR's
    preprocessing embedded (compile.embed_preprocess): the report says what it takes."""
    from toolkit.backends import read_meta
    from toolkit.pipeline import run

    demo = demo_recipe()
    small = demo.model_copy(deep=True, update={
        "data": demo.data.model_copy(update={"synth": demo.data.synth.model_copy(
            update={"classes": 3, "per_class": 8, "val_per_class": 6, "size": 32})}),
        "finetune": demo.finetune.model_copy(update={"epochs": 1, "batch_size": 8}),
        "prune": demo.prune.model_copy(update={"epochs": 1}),
        "quantize": demo.quantize.model_copy(update={"subset": 12, "allow_small": True}),
        "compile": demo.compile.model_copy(update={"embed_preprocess": True}),
        "bench": demo.bench.model_copy(update={"runs": 5, "warmup": 1, "repeats": 2}),
        "gates": demo.gates.model_copy(update={"max_drop_pt": None, "min_agreement_pct": None, "min_speedup": None}),
    })
    report = run(small, tmp_path / "demo")
    assert [r.name for r in report.rows] == ["reference", "fp32", "pruned", "int8", "openvino"]
    assert report.headline.artifact == "openvino" and report.headline.size_ratio > 3
    pruned = next(r for r in report.rows if r.name == "pruned")
    assert pruned.size_mb < 0.5 * next(r for r in report.rows if r.name == "fp32").size_mb
    assert all(r.top1 is not None for r in report.rows) and report.passed
    assert (tmp_path / "demo" / "openvino" / "model.bin").is_file()
    assert read_meta(tmp_path / "demo" / "openvino" / "model.xml").preprocess.embedded
    assert any("8-bit RGB pixels" in note for note in report.notes)


def test_dump_recipe_from_each_command(cli, random_onnx, random_ckpt, tiny_data, tmp_path):
    """Every stage command writes a valid recipe with --dump-recipe and runs nothing."""
    from toolkit.recipe import load_recipe

    commands = {
        "quantize": ["quantize", "--int8", random_onnx, "--calib", tiny_data / "train", "--target", "openvino",
                     "-o", tmp_path / "q.onnx", "--subset", "8", "--allow-small", "--val", tiny_data / "val"],
        "compile": ["compile", random_onnx, "--target", "openvino", "-o", tmp_path / "ov"],
        "prune": ["prune", random_ckpt, "--structured", "--ratio", "0.5", "--finetune", tiny_data, "--epochs", "1",
                  "-o", tmp_path / "p.pt"],
        "finetune": ["finetune", "--data", tiny_data, "--weights", "none", "--epochs", "2", "-o", tmp_path / "f.pt"],
        "export": ["export", random_ckpt, "-o", tmp_path / "e.onnx", "--opset", "13", "--data", tiny_data,
                   "--static-batch", "--batch", "2"],
    }
    for name, args in commands.items():
        path = tmp_path / f"{name}.yaml"
        result = cli(*args, "--dump-recipe", path)
        assert result.exit_code == 0, (name, result.stderr)
        recipe = load_recipe(path)
        assert recipe.name.startswith(name)
        assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "p.pt").exists()
    assert load_recipe(tmp_path / "quantize.yaml").quantize.subset == 8
    assert load_recipe(tmp_path / "quantize.yaml").compile.targets == ["onnxruntime", "openvino"]
    assert load_recipe(tmp_path / "prune.yaml").prune.ratio == 0.5
    exported = load_recipe(tmp_path / "export.yaml")
    assert exported.export.opset == 13
    assert exported.data.validation == tiny_data / "val"   # the split `rtk export --data ROOT` checks parity on
    assert exported.bench.batches == [2]                    # what a static batch-2 ONNX can be timed with
    static = TINY.replace("compile:", "export: {dynamic_batch: false, batch: 2}\ncompile:")
    with pytest.raises(RtkError, match=r"export.dynamic_batch false makes an ONNX of batch 2 only: set bench.batches"):
        parse_recipe(static)
    assert parse_recipe(static.replace("bench:", "bench:\n  batches: [2]")).bench.batches == [2]


def test_dumped_quantize_recipe_replays(cli, random_onnx, tiny_data, tmp_path):
    path = tmp_path / "q.yaml"
    dumped = cli("quantize", "--int8", random_onnx, "--calib", tiny_data / "train", "--target", "onnxruntime",
                 "-o", tmp_path / "q.onnx", "--subset", "8", "--allow-small", "--val", tiny_data / "val",
                 "--dump-recipe", path)
    assert dumped.exit_code == 0, dumped.stderr
    recipe = yaml.safe_load(path.read_text())
    recipe["bench"].update(warmup=1, runs=5, repeats=1)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = cli("run", path, "-o", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["fp32", "int8"]
    assert report["rows"][1]["precision"] == "int8" and report["rows"][1]["top1"] is not None


def test_a_recipe_this_machine_cannot_run_is_refused_before_any_stage(cli, tmp_path):
    """validate.isa above this CPU, and a TensorRT engine without TensorRT: exit 2 from `recipe check` and from
    `rtk run` before any stage, worded with the recipe's fields."""
    import importlib.util

    from toolkit.isa import TIERS, runnable

    above = [t for t in TIERS if t not in runnable()]
    cases = []
    if above:
        cases.append((TINY.replace("gates:", f"validate: {{isa: {above[-1]}}}\ngates:"),
                      f"validate.isa {above[-1]}: this CPU lacks"))
    if importlib.util.find_spec("tensorrt") is None:
        trt = TINY.replace("targets: [onnxruntime]", "targets: [tensorrt]").replace(
            "  max_p99_ms: {onnxruntime: 100000}\n", "")
        cases.append((trt, "target tensorrt needs TensorRT 10.x or 11.x"))
        assert cli("recipe", "check", _write(tmp_path / "ok.yaml", trt.replace(
            "targets: [tensorrt]", "targets: [tensorrt]\n  check_only: true"))).exit_code == 0
    if not cases:
        pytest.skip("this machine runs every ISA tier and has TensorRT")
    for i, (text, message) in enumerate(cases):
        path = _write(tmp_path / f"r{i}.yaml", text)
        for args in (["recipe", "check", path], ["run", path, "-o", tmp_path / f"out{i}"]):
            result = cli(*args)
            assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)
            assert result.stderr.count("\n") == 1, result.stderr
        assert not (tmp_path / f"out{i}").exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_check_only_tensorrt_report_says_no_engine_was_built():
    from toolkit.pipeline.report import build_report, markdown
    from toolkit.pipeline.run import StageRecord
    from toolkit.pipeline.stages import Artifact, Outcome

    recipe = parse_recipe(TINY)
    art = Artifact(name="fp32", path="m.onnx", target="onnxruntime", precision="fp32", role="fp32")
    outcome = Outcome(artifacts=[art], validation=None, benches={})
    checked = build_report(recipe, outcome, [StageRecord(name="check:tensorrt", seconds=1.0, skipped=False,
                                                         outputs={})])
    assert "No TensorRT engine was built" in markdown(checked)
    assert not build_report(recipe, outcome, []).notes


def test_a_gate_that_measured_nothing_fails():
    """A CI gate that applies to no measured row (no validation images, a target that was not timed) fails and
    says why, instead of vanishing from the report and letting the run pass."""
    from toolkit.pipeline.gates import Scored, evaluate
    from toolkit.settings import Gates

    rows = [Scored(name="fp32", target="onnxruntime", role="fp32", p50_ms=5.0)]       # timed, accuracy not measured
    got = evaluate(Gates(max_drop_pt=1, max_p50_ms={"onnxruntime": 10, "openvino": 10}, min_speedup=2), rows)
    assert [(g.name, g.passed, g.value) for g in got] == [
        ("max_p50_ms", True, 5.0), ("max_p50_ms", False, None), ("max_drop_pt", False, None),
        ("min_speedup", False, None)]
    assert "FAILED: nothing measured it (no openvino artifact was timed)" in str(got[1])
    assert "no validation images" in str(got[2])
