"""Interrupting a real `rtk` process mid-step (SIGINT like Ctrl-C, and SIGTERM) leaves no final artifact and no
temporary file, exits 130 (SIGINT) or 143 (SIGTERM), and an interrupted `rtk run` resumes with --resume.

The child holds at the worst moment (every output file staged, none published) until the signal lands, through
the RTK_TEST_HOLD hook in toolkit/io.py, so the race is decided the same way on every run and nothing skips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiny_recipe import TINY



def _start(*args, cwd: Path, hold: str, ready: Path) -> subprocess.Popen:
    """rtk as a child process that stops when it is about to publish the output named `hold` (every file staged,
    RTK_TEST_HOLD in toolkit/io.py) and creates `ready`: the signal then lands mid-write every time."""
    # a child of a shell that ignores SIGINT would inherit that; give it the default so Python installs its handler
    env = {**os.environ, "RTK_TEST_HOLD": f"{hold}:{ready}"}
    return subprocess.Popen([sys.executable, "-m", "toolkit.cli", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _interrupt_when_ready(proc: subprocess.Popen, ready: Path, sig: int, timeout: float = 600) -> tuple[int, str]:
    """Send `sig` once the child holds mid-write; returns (exit code, stderr)."""
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"rtk exited {proc.returncode} before the step under test held: {err[-800:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the step under test never started")
        time.sleep(0.02)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"rtk did not stop within 120 s of signal {sig}")
    return proc.returncode, err


def _hidden(folder: Path) -> list[str]:
    """Temporary files and staging folders (`.name.*/`) anywhere under `folder`."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if ".rtk" not in p.parts)


@pytest.mark.parametrize("command, sig", [("export", signal.SIGINT), ("quantize", signal.SIGTERM),
                                          ("compile", signal.SIGINT)])
def test_interrupt_mid_step_leaves_nothing(command, sig, tmp_path, random_ckpt, random_onnx, tiny_data):
    out = tmp_path / "out"
    out.mkdir()
    ready = tmp_path / "ready"
    if command == "export":
        final = out / "m.onnx"
        proc = _start("export", random_ckpt, "-o", final, cwd=tmp_path, hold=final.name, ready=ready)
    elif command == "quantize":
        final = out / "q.onnx"
        proc = _start("quantize", random_onnx, "-o", final, "--calib", tiny_data / "train", "--subset", "8",
                      "--allow-small", "--bench-runs", "0", cwd=tmp_path, hold=final.name, ready=ready)
    else:
        final = out / "ir" / "model.xml"
        proc = _start("compile", random_onnx, "--target", "openvino", "-o", out / "ir", cwd=tmp_path,
                      hold=final.name, ready=ready)
    code, err = _interrupt_when_ready(proc, ready, sig)
    assert code == (130 if sig == signal.SIGINT else 143), err[-800:]
    assert "interrupted" in err and "Traceback" not in err
    assert not final.exists() and not final.with_suffix(".bin").exists()
    assert _hidden(out) == [], _hidden(out)
    assert list(out.iterdir()) == []      # the IR's folder, made by the step, is gone too


def test_interrupted_run_resumes(tmp_path, cli):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    out = tmp_path / "run"
    ready = tmp_path / "ready"
    proc = _start("run", recipe, "-o", out, cwd=tmp_path, hold="model.onnx", ready=ready)
    code, err = _interrupt_when_ready(proc, ready, signal.SIGINT)
    assert code == 130, err[-800:]
    assert not (out / "model.onnx").exists() and _hidden(out) == [], _hidden(out)
    state = json.loads((out / ".rtk" / "state.json").read_text())["stages"]
    assert {"data", "model"} <= set(state) and "export:model" not in state

    resumed = cli("run", recipe, "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.stderr[-1500:]
    stages = {s["name"]: s["skipped"] for s in json.loads((out / "manifest.json").read_text())["stages"]}
    assert stages["model"] is True and stages["export:model"] is False
    assert (out / "model.onnx").is_file() and _hidden(out) == []


def test_resume_keeps_the_gates_however_the_folder_is_spelled(tmp_path, cli, monkeypatch):
    """A run folder named like a target, resumed under its absolute path, keeps its failing gate and skips its
    stages; a damaged state runs every stage again; a `.rtk` that is a file is refused."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY.replace("{onnxruntime: 100000}", "{onnxruntime: 0.0001}"))
    monkeypatch.chdir(tmp_path)
    first = cli("run", recipe, "-o", "onnxruntime")
    assert first.exit_code == 1 and "max_p99_ms" in first.stdout + first.stderr, first.stdout[-1500:]
    out = tmp_path / "onnxruntime"
    for damage in (None, "", '{"format": 2, "stages": [1]}', "edit"):
        if damage == "edit":          # a result edited by hand is not reported as measured
            state = json.loads((out / ".rtk" / "state.json").read_text())
            state["stages"]["validate"]["result"]["artifacts"][0]["top1"] = 99.0
            (out / ".rtk" / "state.json").write_text(json.dumps(state))
        elif damage is not None:
            (out / ".rtk" / "state.json").write_text(damage)
        resumed = cli("run", recipe, "-o", out, "--resume")
        report = json.loads((out / "report.json").read_text())
        stages = {s["name"]: s["skipped"] for s in report["stages"]}
        assert resumed.exit_code == 1 and not report["passed"], resumed.stdout[-1500:]
        assert [g["name"] for g in report["gates"] if not g["passed"]] == ["max_p99_ms"], report["gates"]
        assert all(r["top1"] is not None for r in report["rows"]) and report["rows"][-1]["target"] == "onnxruntime"
        assert report["rows"][-1]["top1"] != 99.0
        assert stages["model"] is (damage is None), stages
        assert (damage is not None) == ("every stage runs again" in resumed.stdout + resumed.stderr), resumed.stderr
    other = tmp_path / "other"
    (other).mkdir()
    (other / ".rtk").write_text("")
    refused = cli("run", recipe, "-o", other, "--resume")
    assert refused.exit_code == 2 and ".rtk is a file" in refused.stderr, refused.stderr


def _children(pid: int, marker: bytes) -> list[int]:
    """Live processes whose parent is `pid` and whose command line holds `marker` (read from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z" and marker in (stat.parent / "cmdline").read_bytes():
                out.append(int(stat.parent.name))
        except OSError:
            continue
    return out


def test_sigterm_during_isa_capped_validate_stops_its_process(tmp_path, random_onnx, tiny_data):
    """`rtk validate --isa` works in a child process; SIGTERM to rtk must take the child down too. The child holds
    while writing its answer (result.json, RTK_TEST_HOLD), so the signal lands while it runs, every time."""
    from toolkit.isa import runnable

    if "AVX2" not in runnable():
        pytest.skip("this CPU has no AVX2: no tier to cap to")
    out = tmp_path / "v.json"
    ready = tmp_path / "ready"
    proc = _start("validate", random_onnx, "--data", tiny_data / "val", "--isa", "AVX2", "--json", out, cwd=tmp_path,
                  hold="result.json", ready=ready)
    deadline = time.monotonic() + 600
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child = _children(proc.pid, b"toolkit.isa")     # it holds mid-write now, alive
    assert child or not ready.exists(), "no capped process found under rtk"
    code, err = _interrupt_when_ready(proc, ready, signal.SIGTERM)
    assert code == 143, err[-800:]
    assert "interrupted" in err and "Traceback" not in err and not out.exists()
    assert not Path(f"/proc/{child[0]}").exists(), "the capped process outlived rtk"
