"""`rtk sweep`: candidates expanded from a recipe, run on a real local Ray instance (2 CPUs) with shared stages,
the Pareto report and best.yaml, and every fault: a killed worker, a failing stage, Ctrl-C then --resume, Ray
missing, a cluster that does not answer. Tiny models: random ResNet50s at 64 px on 4 synthetic classes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tiny_recipe import TINY
from toolkit.errors import RtkError
from toolkit.io import sha256_file
from toolkit.pipeline.candidates import expand, leaders_first
from toolkit.recipe import load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[1]
BASE = TINY.replace("name: tiny\n", "name: tiny-sweep\n").partition("gates:\n")[0]   # no gates: each test adds its own
PRUNED = BASE + """\
prune: {epochs: 0, bn_batches: 2}
gates:
  max_p50_ms: {openvino: 100000}
sweep:
  values:
    prune.ratio: [0.3, 0.5]
    targets: [onnxruntime, openvino]
"""
TARGETS = BASE + "sweep:\n  values:\n    targets: [onnxruntime, openvino]\n  retries: 0\n"
WITHOUT_RAY = "import sys; sys.modules['ray'] = None; from toolkit.cli import main; sys.argv[0] = 'rtk'; main()"


def test_candidates_expand_the_value_lists():
    recipe = parse_recipe(BASE + "quantize: {subset: 8}\ngates: {max_p50_ms: {openvino: 5}}\nsweep:\n  values:\n"
                                 "    prune.ratio: [0.3, 0.5]\n    precision: [fp32, int8]\n"
                                 "    targets: [onnxruntime, openvino]\n  minimize: p50_ms\n")
    cands = expand(recipe)
    assert [c.id for c in cands] == [f"c{i}" for i in range(8)]
    c = cands[3]
    assert c.values == {"prune.ratio": 0.3, "precision": "int8", "targets": "openvino"}
    assert c.recipe.prune.ratio == 0.3 and c.recipe.quantize.subset == 8 and c.recipe.compile.targets == ["openvino"]
    assert c.recipe.gates.max_p50_ms == {"openvino": 5.0} and cands[2].recipe.gates.max_p50_ms == {}
    assert cands[0].recipe.quantize is None and c.recipe.sweep is None and c.recipe.name == "tiny-sweep-c3"
    assert [x.id for x in leaders_first(cands)][:2] == ["c0", "c4"]     # the two prune ratios start first
    line = BASE.count("\n") + 3         # a candidate's error is at the line of its swept key, found at parse time
    with pytest.raises(RtkError, match=rf"^<recipe>:{line}: sweep candidate c1 \(prune.ratio=1.5\): prune.ratio: .*less "
                                       "than or equal to 0.9"):
        parse_recipe(BASE + "sweep:\n  values:\n    prune.ratio: [0.3, 1.5]\n")
    for order, twin in (("    quantize.subset: [4, 8]\n    precision: [fp32, int8]\n", "c2"),
                        ("    precision: [fp32, int8]\n    quantize.subset: [4, 8]\n", "c1")):
        merged: list[str] = []        # quantize values apply to int8 only: fp32 once, whatever the key order
        cands = expand(parse_recipe(BASE + "sweep:\n  values:\n" + order), merged=merged)
        assert [(c.recipe.compile.precision, c.recipe.quantize and c.recipe.quantize.subset) for c in cands] == [
            ("fp32", None), ("auto", 4), ("auto", 8)]
        assert cands[0].values == {"precision": "fp32"} and merged == [
            f"sweep candidate {twin} is c0 (precision=fp32): the values it differs in do not apply "
            "to it, so c0 runs once"]
    embedding = expand(parse_recipe(BASE.replace("  targets: [onnxruntime]\n", "  targets: [onnxruntime]\n"
                                                 "  embed_preprocess: true\n")
                                    + "sweep:\n  values:\n    targets: [onnxruntime, openvino]\n"))
    assert [c.recipe.compile.embed_preprocess for c in embedding] == [False, True]   # OpenVINO's only
    embed = BASE.replace("  targets: [onnxruntime]\n", "  targets: [openvino]\n  embed_preprocess: true\n")
    with pytest.raises(RtkError, match="compile.targets builds none"):      # no candidate keeps the openvino target
        parse_recipe(embed + "sweep:\n  values:\n    targets: [onnxruntime]\n")
    long_form = expand(parse_recipe(embed.replace("[openvino]", "[onnxruntime]") + "sweep:\n  values:\n"
                                    "    compile.targets: [[onnxruntime], [openvino]]\n"))
    assert [c.recipe.compile.embed_preprocess for c in long_form] == [False, True]
    swept = expand(parse_recipe(embed.replace("[openvino]", "[onnxruntime]") + "sweep:\n  values:\n"
                                "    compile.targets: [[onnxruntime], [openvino]]\n"
                                "    compile.embed_preprocess: [true]\n"))
    assert [c.values["compile.embed_preprocess"] for c in swept] == [False, True]   # shown as each candidate ran
    assert parse_recipe(BASE + 'sweep:\n  values:\n    compile.embed_preprocess: ["false"]\n    seed: [0, 1]\n')


def test_recipe_check_counts_the_candidates(cli, tmp_path):
    """(The refusals of rtk sweep and validate --ray are cases of the catalogue, tests/test_reliability.py.)"""
    swept = tmp_path / "swept.yaml"
    swept.write_text(PRUNED)
    check = cli("recipe", "check", swept)
    assert check.exit_code == 0 and "4 sweep candidates" in check.stderr


@pytest.mark.parametrize("flag, state", [("--resume", True), ("--resume", False), ("--force", True)])
def test_one_sweep_per_folder(cli, tmp_path, flag, state):
    """While a sweep holds its folder's lock, a second one is refused as such (not as "no sweep to resume", said
    when the running one has not written its state yet) and changes nothing there: --force deletes neither the
    running sweep's state nor its stage cache."""
    import fcntl

    recipe, out = tmp_path / "sweep.yaml", tmp_path / "out"
    recipe.write_text(PRUNED)
    (out / ".rtk").mkdir(parents=True)
    (out / ".cache").mkdir()
    (out / ".cache" / "entry").write_text("{}")
    if state:
        (out / ".rtk" / "sweep-state.json").write_text('{"candidates": []}')
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*")) + [".rtk/sweep.lock"]
    with open(out / ".rtk" / "sweep.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = cli("sweep", recipe, "-o", out, flag, "--no-ray")
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"error: another rtk sweep is running in {out}; wait for it or choose another -o"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == sorted(before)


def test_sweep_on_ray_shares_stages_and_names_a_winner(ray_local, cli, tmp_path):
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(PRUNED)
    out = tmp_path / "out"
    result = cli("sweep", recipe, "-o", out, "--json", tmp_path / "result.json")
    assert result.exit_code == 0, result.stderr
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep == json.loads((tmp_path / "result.json").read_text())
    assert sweep["engine"]["ray"] == ray_local.__version__ and sweep["engine"]["cpus"] == 2
    cands = {c["id"]: c for c in sweep["candidates"]}
    assert list(cands) == ["c0", "c1", "c2", "c3"] and {c["status"] for c in cands.values()} == {"ok"}

    def made(stage: str) -> int:
        return sum(stage in c["ran"] for c in cands.values())

    assert made("prune") == 2 and made("model") == 1 and made("export:model") == 1 and made("data") == 1
    assert sum("prune" in c["reused"] for c in cands.values()) == 2
    pruned = {cid: sha256_file(out / "candidates" / cid / "pruned.pt") for cid in cands}
    assert pruned["c0"] == pruned["c1"] != pruned["c2"] == pruned["c3"]
    for cid, c in cands.items():
        report = json.loads((out / "candidates" / cid / "report.json").read_text())
        assert (out / "candidates" / cid / "manifest.json").is_file()
        deployed = report["rows"][-1]
        assert deployed["target"] == c["target"] and deployed["latency_ms"]["p50"] == c["p50_ms"]
        assert deployed["p50_repeats"] == c["p50_repeats"] and len(c["p50_repeats"]) == 2
        assert deployed["top1"] == c["top1"] and report["passed"] is c["passed"] is True
    assert {c["target"] for c in cands.values() if c["pareto"]} == {"onnxruntime", "openvino"}
    winner = cands[sweep["winner"]]
    assert winner["top1"] == max(c["top1"] for c in cands.values())
    best = load_recipe(out / "best.yaml")
    assert best == next(c.recipe for c in expand(parse_recipe(PRUNED)) if c.id == winner["id"])
    assert (out / "pareto.png").stat().st_size > 10_000
    assert f"**Winner: {winner['id']}**" in (out / "sweep.md").read_text()


def test_a_winner_within_the_noise_says_so():
    """minimize p50_ms: a candidate whose repeats' p50s overlap the winner's is named as tied, in sweep.json and
    sweep.md; one clearly slower, an ineligible one or another objective is not."""
    from toolkit.pipeline.sweep_report import CandidateResult, SweepResult, markdown, tied_with

    def cand(cid: str, repeats: list[float], passed: bool = True) -> CandidateResult:
        return CandidateResult(id=cid, values={"prune.ratio": 0.3}, folder=cid, status="ok", passed=passed,
                               top1=70.0, p50_ms=sorted(repeats)[1], p50_repeats=repeats, target="openvino")

    cands = [cand("c0", [0.50, 0.54, 0.58]), cand("c1", [0.57, 0.60, 0.66]), cand("c2", [0.70, 0.72, 0.75]),
             cand("c3", [0.40, 0.55, 0.60], passed=False)]
    assert tied_with(cands[0], cands, ("minimize", "p50_ms")) == ["c1"]
    assert tied_with(cands[0], cands, ("maximize", "top1")) == []
    result = SweepResult(recipe="r", rtk="0", created="now", objective={"minimize": "p50_ms"}, engine={},
                         seconds=1.0, candidates=cands, winner="c0", best_recipe=None, tied=["c1"])
    text = " ".join(markdown(result).split())
    assert "c0 is not clearly faster than c1 (0.57-0.66 ms): their repeats' p50s overlap its own (0.5-0.58 ms)" in text


def test_a_timed_stage_has_the_node_to_itself(ray_local):
    """bench asks Ray for every CPU of the node and runs at niceness 0 like a stand-alone `rtk bench`; other stages
    take their declared CPUs in Ray's ordinary workers (niceness 15); a device's timing takes no CPU here."""
    from toolkit.distributed import RayPool

    def _priority_and_cpus() -> tuple[int, float]:     # defined here: Ray ships it by value to the worker
        import os
        import ray

        return os.nice(0), ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)

    pool = RayPool(ray_local, train_cpus=2, retries=0)
    assert pool.run("bench", _priority_and_cpus, "node", []) == (0, 2.0)
    nice, cpus = pool.run("validate", _priority_and_cpus, None, [])
    assert nice > 0 and cpus == 1.0
    assert pool.options("bench", "device:jetson")[0] == "device:jetson"
    assert pool.options("bench", "device:jetson")[1]["num_cpus"] == 0


def test_stage_workers_stay_for_the_next_stage(ray_local):
    """A local instance keeps its idle workers for the command: Ray's default stops an idle worker after 1 s once
    more exist than CPUs (here: two stages side by side plus the timing worker, whose environment differs), and
    every restart imports torch and the runtimes again (56 worker starts in one sweep-demo, 4 with this)."""
    from concurrent.futures import ThreadPoolExecutor

    from toolkit.distributed import RayPool

    def _pid(seconds: float) -> int:
        import os
        import time

        time.sleep(seconds)
        return os.getpid()

    pool = RayPool(ray_local, train_cpus=2, retries=0)
    with ThreadPoolExecutor(2) as side_by_side:
        pids = set(side_by_side.map(lambda _: pool.run("validate", lambda: _pid(0.5), None, []), range(2)))
    pids.add(pool.run("bench", lambda: _pid(0.0), "node", []))
    assert len(pids) == 3
    time.sleep(2.5)                     # Ray looks for idle workers to stop every 200 ms
    gone = [pid for pid in pids if not Path(f"/proc/{pid}").is_dir()]
    assert not gone, f"Ray stopped idle workers {gone}: the next stages would start cold"


def _wait_for_pid(ready: Path, timeout: float = 240.0) -> int:
    deadline = time.monotonic() + timeout
    while not ready.is_file():
        assert time.monotonic() < deadline, f"no stage held at {ready}"
        time.sleep(0.1)
    return int(ready.read_text())


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:     # re-raised by the test
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def _result(thread: threading.Thread, box: dict):
    thread.join(timeout=300)
    assert not thread.is_alive(), "the sweep did not finish"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_killed_worker_crashes_its_candidate_and_resume_retries_it(ray_local, tmp_path, monkeypatch):
    """The Ray worker running c1's compile is SIGKILLed: with retries 0 the candidate is marked crashed and the sweep
    goes on; --resume with retries 1 keeps c0, runs c1 again, survives a second kill by retrying, and finishes."""
    from toolkit.pipeline.sweep import sweep

    recipe, out, ready = tmp_path / "sweep.yaml", tmp_path / "out", tmp_path / "ready"
    recipe.write_text(TARGETS)
    monkeypatch.setenv("RTK_TEST_HOLD_STAGE", f"c1/compile:openvino:{ready}")
    thread, box = _in_thread(lambda: sweep(load_recipe(recipe), out))
    pid = _wait_for_pid(ready)
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    first = _result(thread, box)
    c0, c1 = first.candidates
    assert c0.status == "ok" and c1.status == "crashed" and c1.stage == "compile:openvino"
    assert "died" in c1.error and "\n" not in c1.error and first.winner == "c0"
    assert (out / "sweep.json").is_file() and not (out / "candidates" / "c1" / "openvino").exists()
    assert [p.name for p in (out / "candidates" / "c1").rglob(".*")] == [".rtk"]      # no staged leftovers
    stamp = (out / "candidates" / "c0" / "report.json").stat().st_mtime_ns

    recipe.write_text(TARGETS.replace("retries: 0", "retries: 1"))
    ready.unlink()
    thread, box = _in_thread(lambda: sweep(load_recipe(recipe), out, resume=True))
    os.kill(_wait_for_pid(ready), signal.SIGKILL)
    second = _result(thread, box)
    assert second.resumed == ["c0"] and [c.status for c in second.candidates] == ["ok", "ok"]
    assert second.candidates[1].notes == ["compile:openvino: the Ray worker died (WorkerCrashedError); retried"]
    assert (out / "candidates" / "c0" / "report.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "sweep.json").read_text())["winner"] in ("c0", "c1")


def _without_ray(*args, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WITHOUT_RAY, *map(str, args)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_without_ray_a_failed_stage_ctrl_c_and_resume(tmp_path):
    """Ray cannot be imported: the candidates run one after another with a one-line hint. c1 asks for more
    calibration images than there are: recorded as failed, not fatal. Ctrl-C lands in c2's quantize: exit 130,
    nothing of the results written; --resume keeps c0 and c1 and finishes c2."""
    recipe, out, ready = tmp_path / "sweep.yaml", tmp_path / "out", tmp_path / "ready"
    recipe.write_text(BASE + "quantize: {bench_runs: 0}\nsweep:\n  values:\n    quantize.subset: [8, 1000, 12]\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RTK_TEST_HOLD_STAGE": f"c2/quantize:{ready}"}
    proc = _without_ray("sweep", recipe, "-o", out, env=env)
    try:
        _wait_for_pid(ready)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Ray is not installed: the 3 candidates run one after another; pip install 'rtk[ray]'" in err
    assert "interrupted" in err
    state = json.loads((out / ".rtk" / "sweep-state.json").read_text())["candidates"]
    assert [(c["id"], c["status"]) for c in state] == [("c0", "ok"), ("c1", "failed")]
    assert not any((out / name).exists() for name in ("sweep.json", "sweep.md", "best.yaml", "pareto.png"))
    assert not (out / "candidates" / "c2" / "model.int8.onnx").exists()
    stamp = (out / "candidates" / "c0" / "report.json").stat().st_mtime_ns
    left = out / "candidates" / "c2" / ".model.int8.onnx.0123456789ab"     # as a SIGKILL leaves a temporary
    left.write_bytes(b"partial")
    older = json.loads((out / ".rtk" / "sweep-state.json").read_text())    # as a sweep before p50_repeats wrote it
    del older["candidates"][0]["p50_repeats"]
    (out / ".rtk" / "sweep-state.json").write_text(json.dumps(older))

    env.pop("RTK_TEST_HOLD_STAGE")
    proc = _without_ray("sweep", recipe, "-o", out, "--resume", env=env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["resumed"] == ["c0", "c1"] and sweep["engine"] == {"ray": None}
    assert [c["engine"] for c in sweep["candidates"]] == [{"ray": None}] * 3     # each keeps where it ran
    assert "· 1 candidate in" in (out / "sweep.md").read_text() and " s (this session) · " in (
        out / "sweep.md").read_text()
    assert "2 kept from an earlier sweep (one after another in one process; their runs took" in (
        out / "sweep.md").read_text()
    c0, c1, c2 = sweep["candidates"]
    assert (c0["status"], c1["status"], c2["status"]) == ("ok", "failed", "ok")
    assert c1["stage"] == "quantize" and "1000 were asked for" in c1["error"]
    assert (out / "candidates" / "c0" / "report.json").stat().st_mtime_ns == stamp
    assert "quantize" in c2["ran"] and c2["top1"] is not None and not left.exists()
    assert {"data", "model"} <= set(c2["earlier"]) and not set(c2["earlier"]) & set(c2["ran"])  # session 1's
    assert f", {len(c2['earlier'])} kept from an interrupted earlier session." in (out / "sweep.md").read_text()
    report = json.loads((out / "candidates" / "c0" / "report.json").read_text())
    assert c0["p50_repeats"] == report["rows"][-1]["p50_repeats"] and c0["p50_repeats"]

    moved = tmp_path / "moved"         # the sweep moved elsewhere: resumed there, it names its own files
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    proc = _without_ray("sweep", recipe, "-o", moved, "--resume", env=env)
    _, err = proc.communicate(timeout=300)
    sweep = json.loads((moved / "sweep.json").read_text())
    assert proc.returncode == 0 and [c["status"] for c in sweep["candidates"]] == ["ok", "failed", "ok"], err
    assert all(c["folder"] == str(moved / "candidates" / c["id"]) for c in sweep["candidates"])
    rows = json.loads((moved / "candidates" / "c2" / "report.json").read_text())["rows"]
    assert all(Path(r["path"]).exists() for r in rows) and rows[-1]["top1"] is not None
    stages = json.loads((moved / "candidates" / "c0" / "report.json").read_text())["stages"]
    assert all(s["skipped"] for s in stages if s["name"] != "bench"), stages

    before = sorted(str(p) for p in moved.rglob("*"))      # a recipe that drops finished candidates: refused
    recipe.write_text(recipe.read_text().replace("[8, 1000, 12]", "[8]"))
    proc = _without_ray("sweep", recipe, "-o", moved, "--resume", env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "holds c1 (quantize.subset=1000), finished by its sweep, which this recipe no " \
        "longer has; resume with the recipe in" in err and len(err.strip().splitlines()) == 1, err
    proc = _without_ray("sweep", recipe, "-o", moved, "--resume", "--force", env=env)
    assert proc.communicate(timeout=120)[1].startswith("error: give --resume (keep the finished candidates) or --force")
    assert sorted(str(p) for p in moved.rglob("*")) == before


def test_an_interrupt_a_library_reports_as_its_error_stops_the_sweep(tmp_path, monkeypatch):
    """Ctrl-C and SIGTERM reach a whole process group: PyTorch's DataLoader workers die of it too, and training
    may raise their RuntimeError rather than the interrupt (seen with `timeout`). The candidate is then not
    recorded as failed and the sweep does not go on: it stops as interrupted, and --resume runs it again. The same
    error with no signal received is the candidate's failure."""
    from toolkit.pipeline.cache import StageCache
    from toolkit.pipeline.sweep import run_candidate

    received: list[int] = []
    monkeypatch.setattr("toolkit.pipeline.sweep.SIGNALLED", received)
    c = expand(parse_recipe(BASE + "sweep:\n  values:\n    prune.ratio: [0.3]\n"))[0]

    def training(name, call, *, timing=None):
        raise RuntimeError("DataLoader worker (pid 1234) is killed by signal: Terminated.")

    def run(folder: str):
        return run_candidate(c, tmp_path / folder, cache=StageCache(tmp_path / ".cache"), executor=training, notes=[],
                             force=False, progress=lambda *a, **k: None)

    failed = run("alone")
    assert (failed.status, failed.exit_code) == ("failed", 3) and "DataLoader worker" in failed.error
    received.append(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        run("interrupted")


def test_validate_ray_without_ray_is_one_line(random_onnx, tiny_data):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = _without_ray("validate", random_onnx, "--data", tiny_data / "val", "--ray", env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.strip().splitlines() == [
        "error: rtk validate --ray needs Ray, which is not installed; pip install 'rtk[ray]'"]


def test_runtime_commands_do_not_import_ray(random_onnx, tiny_data):
    code = ("import sys; from toolkit.cli import main; sys.argv = ['rtk', 'validate', sys.argv[1], '--data', "
            "sys.argv[2]]\ntry:\n    main()\nexcept SystemExit:\n    pass\nprint('ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(random_onnx), str(tiny_data / "val")], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr


def test_sweep_folder_may_not_hold_an_input(tmp_path):
    """The library refuses an -o that holds the recipe's data (as `rtk run` does), before writing anything."""
    from toolkit.pipeline.sweep import sweep

    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    recipe = parse_recipe(BASE.replace("  synth: {classes: 4, per_class: 12, val_per_class: 8, size: 64}",
                                       f"  root: {out / 'data'}") + "sweep:\n  values:\n    prune.ratio: [0.3, 0.5]\n")
    with pytest.raises(RtkError, match="inside this folder"):
        sweep(recipe, out, force=True, use_ray=False)
    assert sorted(p.name for p in out.iterdir()) == ["data"]


def test_address_that_is_no_ray_head_is_refused_in_bounded_time(ray_local, tmp_path, monkeypatch):
    """A port that accepts TCP but speaks no Ray: one error within the join bound, nothing written. The head of
    a real instance passes the same check."""
    import socket

    from toolkit import ray_address
    from toolkit.pipeline.sweep import sweep

    ray_address.check_address(ray_local.get_runtime_context().gcs_address)
    ray_address.check_address("auto")          # joins the instance running here: the check that comes first
    assert "auto" in ray_address._JOINED
    monkeypatch.setattr(ray_address, "JOIN_TIMEOUT_S", 8.0)
    out = tmp_path / "out"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(RtkError, match=rf"no Ray head answered at {address} \(--address\) within 8 s"):
            sweep(parse_recipe(TARGETS), out, address=address)
    assert time.monotonic() - started < 20 and not out.exists()


def test_children_import_this_rtk_and_ray_not_the_working_directorys(ray_local, tmp_path, monkeypatch):
    """A `toolkit/` or `ray/` folder in the working directory does not stand in for rtk or Ray in the Python
    processes rtk starts: the join probe (it imported the working directory's `ray`) and `fresh_python`."""
    from toolkit import ray_address
    from toolkit.isa import fresh_python

    for name in ("toolkit", "ray"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise SystemExit('the working directory\\'s {name}')\n")
    monkeypatch.chdir(tmp_path)
    head = ray_local.get_runtime_context().gcs_address
    ray_address._JOINED.discard(head)
    ray_address.check_address(head)
    assert head in ray_address._JOINED
    done = subprocess.run([*fresh_python("toolkit.cli"), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "working directory" not in done.stderr, done.stderr


@pytest.mark.parametrize("args", [("--address", "auto"), ()])
def test_ray_address_names_the_cluster_and_is_checked_first(cli, tmp_path, monkeypatch, args):
    """RAY_ADDRESS (Ray's convention, set by `ray job submit`) names the cluster for `--address auto` and for no
    --address: one that does not answer is one line before anything is written (with no --address it was exit 3,
    Ray refusing a local start's num_cpus; with auto, the folder was written first)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("RAY_ADDRESS", closed)
    recipe, out = tmp_path / "sweep.yaml", tmp_path / "out"
    recipe.write_text(TARGETS)
    result = cli("sweep", recipe, "-o", out, *args)
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"error: the Ray cluster at {closed} (RAY_ADDRESS) does not answer (Connection refused); check RAY_ADDRESS, "
        "or start one with `ray start --head`"], result.stderr
    assert not out.exists()
    recipe.write_text(BASE + "validate: {shards: 2}\n")        # a run's sharded validation: refused before stage 1
    result = cli("run", recipe, "-o", out)
    assert result.exit_code == 2 and f"the Ray cluster at {closed} (RAY_ADDRESS)" in result.stderr, result.stderr
    assert not out.exists()


def test_ray_joins_what_resolve_names(monkeypatch):
    """Ray reads RAY_ADDRESS before the address it is given, and a blank one is an error to it (it was exit 3 for
    `RAY_ADDRESS=' ' rtk sweep`): a local start runs without it, a join with the address rtk checked."""
    from toolkit.ray_address import ray_address_env, resolve

    monkeypatch.setenv("RAY_ADDRESS", "  ")
    assert resolve(None) == (None, "--address") and ray_address_env("auto") is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    assert resolve(None) == resolve("auto") == ("10.0.0.7:6379", "RAY_ADDRESS") and resolve("local")[0] == "local"
    assert ray_address_env("10.0.0.5:6379") == "10.0.0.5:6379" and ray_address_env("auto") == "10.0.0.7:6379"


def test_every_candidate_failed_says_so(cli, tmp_path):
    """No candidate was measured: no gate decided, so the exit is the candidates' own (2: each asked for more
    calibration images than there are), and no plot is claimed. A resumed sweep drops the folder of a candidate
    it no longer has."""
    recipe, out = tmp_path / "sweep.yaml", tmp_path / "out"
    recipe.write_text(BASE + "quantize: {bench_runs: 0}\nsweep:\n  values:\n    quantize.subset: [1000, 2000]\n")
    (out / ".rtk").mkdir(parents=True)
    (out / ".rtk" / "sweep-state.json").write_text('{"candidates": []}')
    (out / "candidates" / "c7").mkdir(parents=True)      # left by an earlier sweep with a longer value list
    result = cli("sweep", recipe, "-o", out, "--no-ray", "--resume")
    assert result.exit_code == 2, result.stderr
    assert "removed candidates/c7" in result.stderr and sorted(p.name for p in (out / "candidates").iterdir()) == [
        "c0", "c1"]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: all 2 candidates failed and none was measured"), result.stderr
    assert "pareto.png" not in result.stderr and "gate" not in last and not (out / "pareto.png").exists()
    assert "**Every candidate failed** (2)" in (out / "sweep.md").read_text()
    assert [c["exit_code"] for c in json.loads((out / "sweep.json").read_text())["candidates"]] == [2, 2]


@pytest.mark.parametrize("values, message", [
    ("prune.ratio: [0.3, 0.3]", "^<recipe>:LINE: sweep.values: prune.ratio lists 0.3 twice"),
    ("prune.epochs: [1, 1.0]", r"candidates c0 and c1 are the same recipe \(prune.epochs=1 / prune.epochs=1.0\)"),
    ("sweep.retries: [0, 1]", "^<recipe>:LINE: sweep.values: sweep.retries cannot be swept"),
    ("prune..ratio: [0.3]", r"^<recipe>:LINE: sweep.values: 'prune..ratio' is not a recipe field; name one as section.field"),
    ("'': [0.3]", r"^<recipe>:LINE: sweep.values: '' is not a recipe field"),
    ("prune.nope: [1]", r"^<recipe>:LINE: sweep candidate c0 \(prune.nope=1\): prune.nope: not a recipe field; fix "
                        "sweep.values$"),
    ("description: [a, b]", "^<recipe>:LINE: sweep.values: description cannot be swept"),
    ("precision: [2026-01-01]", "^<recipe>:LINE: sweep.values: precision 2026-01-01: use fp32, fp16 or int8$"),
    ("prune.ratio: [true, 0.5]", "^<recipe>:LINE: prune.ratio: true/false is not a number"),
    ("targets: [[openvino], [openvino]]", r'^<recipe>:LINE: sweep.values: targets lists \[openvino\] twice'),
    # a mapping keyed by a YAML date: an exit-2 line naming the key as written (was TypeError, exit 3)
    ("devices: [{2026-01-01: {dest: a}}]", r"^<recipe>:LINE: sweep candidate c0 \(devices=\{2026-01-01: \{dest: a\}\}\): "
                                          "devices: key 2026-01-01: Input should be a valid string; fix sweep.values$"),
    # nested or mapping targets, a gate that is no mapping, keys no runtime has, true as a number, a null key, a
    # list where a word is meant: exit-2 lines (some were TypeError/AttributeError, exit 3, or passed unchecked)
    ("targets: [[onnxruntime, [openvino]]]", r"^<recipe>:LINE: sweep candidate c0 \(targets=\[onnxruntime, \[openvino\]\]\): "
                                             "compile.targets.1: Input should be"),
    ("targets: [{a: 1}]", r"^<recipe>:LINE: sweep candidate c0 \(targets=\{a: 1\}\): compile.targets.0"),
    ("gates.max_p50_ms: [3]", r"^<recipe>:LINE: sweep candidate c0 \(gates.max_p50_ms=3\): gates.max_p50_ms: Input "
                              "should be a valid dictionary"),
    ("gates.max_p50_ms: [{true: 3}]", "^<recipe>:LINE: .*gates.max_p50_ms: key true: Input should be a valid string"),
    ("gates.max_p99_ms: [{onnxruntime: 3, tensorflow: 3}]", "gates.max_p99_ms: 'tensorflow': name a target"),
    ("gates.max_p50_ms: [{onnxruntime: yes}]", "^<recipe>:LINE: gates.max_p50_ms: true/false is not a number"),
    ("~: [1]", "^<recipe>:LINE: sweep.values: key null: Input should be a valid string"),
    ("precision: [[fp32]]", r"^<recipe>:LINE: sweep.values: precision \[fp32\]: use fp32, fp16 or int8$"),
    ("prune.ratio: ['0.3', 0.3]", r'same recipe \(prune.ratio="0.3" / prune.ratio=0.3\)'),
    ("targets: [onnxruntime]\n    compile.targets: [[openvino]]", r"^<recipe>:\d+: sweep.values: targets and "
                                                                  "compile.targets name the same setting"),
    ("devices: [{a: {dest: a}}, {a: {dest: a}}]", r"^<recipe>:LINE: sweep.values: devices lists \{a: \{dest: a\}\} twice"),
    ("bench.threads: []", "^<recipe>:LINE: sweep.values: bench.threads has no values"),
    ("targets: [onnxruntime, openvnio]", r"^<recipe>:LINE: sweep candidate c1 \(targets=openvnio\): compile.targets.0"),
    ("prunee.ratio: [0.3]", "^<recipe>:LINE: sweep candidate c0 .*prunee: not a recipe field"),
    # quantize values with no int8 candidate: refused in either key order (was KeyError, exit 3, or INT8 built)
    ("quantize.subset: [4, 8]\n    precision: [fp32]", "^<recipe>:LINE: sweep.values: quantize.subset applies to "
                                                       "int8 candidates, and precision lists none; add int8"),
    ("precision: [fp16, fp32]\n    quantize.subset: [4]", r"^<recipe>:\d+: sweep.values: quantize.subset applies"),
    ("precision: [fp32]\n    quantize: [{subset: 8}]", r"^<recipe>:\d+: sweep.values: quantize applies to int8"),
])
def test_a_candidate_is_never_run_twice_nor_the_sweep_swept(values, message):
    """Refused when the recipe is read, at the line of the swept key, the values shown as the recipe writes them."""
    with pytest.raises(RtkError, match=message.replace("LINE", str(BASE.count("\n") + 3))):
        parse_recipe(BASE + f"sweep:\n  values:\n    {values}\n")


def test_a_killed_drivers_ray_is_reaped_at_the_next_start(tmp_path):
    """SIGKILL of a driver leaves Ray's agents running with no parent and its folder under /tmp; the next local
    start (reap_stale) stops the processes that hold files there and removes the folder, and nothing else."""
    from toolkit.distributed import _holding, reap_stale

    pytest.importorskip("ray")
    code = ("import glob, os\nfrom toolkit.distributed import cluster\nwith cluster(cpus=1):\n"
            "    print(*[f for f in glob.glob('/tmp/rtk-ray-*/rtk-driver.pid') if open(f).read() == str(os.getpid())],"
            " flush=True)\n    input()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        folder = Path(proc.stdout.readline().strip()).parent
    finally:
        proc.kill()
        proc.wait()
    assert folder.name.startswith("rtk-ray-") and folder.is_dir()
    assert str(folder) in reap_stale()
    assert not folder.exists() and not _holding(str(folder))


def test_rtk_keeps_its_signal_handlers_when_ray_starts():
    """ray.init puts in a SIGTERM handler of its own (sys.exit(15): no clean-up, a C++ stack dump, exit 15); rtk's
    handlers (exit 143 or 130 after removing its temporary files) must still be the ones after a local start."""
    pytest.importorskip("ray")
    code = ("import signal\nfrom toolkit.cli.app import _interrupt, _terminate\nfrom toolkit.distributed import cluster\n"
            "signal.signal(signal.SIGTERM, _terminate)\nsignal.signal(signal.SIGINT, _interrupt)\n"
            "with cluster(cpus=1):\n"
            "    print(signal.getsignal(signal.SIGTERM) is _terminate, signal.getsignal(signal.SIGINT) is _interrupt)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=180)
    assert done.stdout.split() == ["True", "True"], done.stderr[-2000:]
