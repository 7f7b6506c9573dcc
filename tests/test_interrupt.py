"""Interrupting a real `rtk` process mid-step (SIGINT like Ctrl-C, and SIGTERM) leaves no final artifact and no
temporary file, exits 130 (SIGINT) or 143 (SIGTERM), and an interrupted `rtk run` resumes with --resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tiny_recipe import TINY



def _start(*args, cwd: Path) -> subprocess.Popen:
    # a child of a shell that ignores SIGINT would inherit that; give it the default so Python installs its handler
    return subprocess.Popen([sys.executable, "-m", "toolkit.cli", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _interrupt_when(proc: subprocess.Popen, ready: Callable[[], bool], sig: int, timeout: float = 300) -> tuple[int, str]:
    """Send `sig` as soon as `ready()` holds (mid-step); returns (exit code, stderr). Skips if the step won the race."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"rtk exited {proc.returncode} before the step under test started: {err[-800:]}")
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
    """Temporary files and staging folders (`.name.*.tmp`, `.name.*/`) anywhere under `folder`."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if ".rtk" not in p.parts)


def _temp_appears(folder: Path, prefix: str) -> Callable[[], bool]:
    return lambda: any(p.name.startswith(prefix) for p in folder.iterdir()) if folder.is_dir() else False


@pytest.mark.parametrize("command, sig", [("export", signal.SIGINT), ("quantize", signal.SIGTERM),
                                          ("compile", signal.SIGINT)])
def test_interrupt_mid_step_leaves_nothing(command, sig, tmp_path, random_ckpt, random_onnx, tiny_data):
    out = tmp_path / "out"
    out.mkdir()
    if command == "export":
        final, prefix = out / "m.onnx", ".m.onnx."
        proc = _start("export", random_ckpt, "-o", final, cwd=tmp_path)
    elif command == "quantize":
        final, prefix = out / "q.onnx", ".q.onnx."
        proc = _start("quantize", random_onnx, "-o", final, "--calib", tiny_data / "train", "--subset", "8",
                      "--allow-small", "--bench-runs", "200", cwd=tmp_path)
    else:
        final, prefix = out / "ir" / "model.xml", ".rtk-ir-"
        proc = _start("compile", random_onnx, "--target", "openvino", "-o", out / "ir", cwd=tmp_path)
        folder = out / "ir"
        code, err = _interrupt_when(proc, _temp_appears(folder, prefix), sig)
        if code == 0:
            pytest.skip("the IR was saved before the signal arrived (the staging window is short)")
        assert code == 130, err[-800:]
        assert not final.exists() and not final.with_suffix(".bin").exists()
        assert _hidden(out) == []
        return
    code, err = _interrupt_when(proc, _temp_appears(out, prefix), sig)
    if code == 0:
        pytest.skip(f"{command} finished before the signal arrived (the staging window is short)")
    expected = 130 if sig == signal.SIGINT else 143
    assert code == expected, err[-800:]
    assert "interrupted" in err and "Traceback" not in err
    assert not final.exists()
    assert _hidden(out) == [], _hidden(out)
    assert list(out.iterdir()) == []


def test_interrupted_run_resumes(tmp_path, cli):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    out = tmp_path / "run"
    proc = _start("run", recipe, "-o", out, cwd=tmp_path)
    code, err = _interrupt_when(proc, lambda: (out / "model.pt").is_file() and _temp_appears(out, ".model.onnx.")(),
                                signal.SIGINT)
    assert code == 130, err[-800:]
    assert not (out / "model.onnx").exists() and _hidden(out) == [], _hidden(out)
    state = json.loads((out / ".rtk" / "state.json").read_text())
    assert {"data", "model"} <= set(state) and "export:model" not in state

    resumed = cli("run", recipe, "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.stderr[-1500:]
    stages = {s["name"]: s["skipped"] for s in json.loads((out / "manifest.json").read_text())["stages"]}
    assert stages["model"] is True and stages["export:model"] is False
    assert (out / "model.onnx").is_file() and _hidden(out) == []


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
    """`rtk validate --isa` works in a child process; SIGTERM to rtk must take the child down too."""
    from toolkit.isa import runnable

    if "AVX2" not in runnable():
        pytest.skip("this CPU has no AVX2: no tier to cap to")
    out = tmp_path / "v.json"
    proc = _start("validate", random_onnx, "--data", tiny_data / "val", "--isa", "AVX2", "--json", out, cwd=tmp_path)
    child: list[int] = []
    seen: list[float] = []

    def started() -> bool:   # the capped process has been running Python for a moment (not mid fork/exec)
        found = _children(proc.pid, b"toolkit.isa")
        if found and not seen:
            child[:] = found
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] > 0.5

    code, err = _interrupt_when(proc, started, signal.SIGTERM)
    if code == 0:
        pytest.skip("the capped validation finished before the signal arrived")
    assert code == 143, err[-800:]
    assert "interrupted" in err and "Traceback" not in err and not out.exists()
    assert not Path(f"/proc/{child[0]}").exists(), "the capped process outlived rtk"
