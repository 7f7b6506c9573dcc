"""The SSH channel against the rig's real SSH server and torch-free device venv: results, the cache, every fault.

Every fault is produced for real: a host key missing from known_hosts, a key the server refuses, a closed port,
a missing rtk or runtime, an older rtk install, a full disk (a 16 MB tmpfs), a connection cut by the server
and Ctrl-C (SIGINT to a host process). After each, the device holds no temporary file and no half-copied
artifact, and its lock is free.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from toolkit.io import sha256_file
from toolkit.remote import Device, RemoteError, remote_run, ssh_destination, upload_of

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--runs", "3", "--warmup", "1"]


def _device(rig, cache: Path | None = None, **kw) -> Device:
    return Device(dest=kw.pop("dest", rig.alias), rtk=kw.pop("rtk", str(rig.rtk)), ssh_config=rig.config,
                  cache=str(cache) if cache else "~/.cache/rtk", **kw)


def _leftovers(cache: Path) -> list[str]:
    """Temporary files of device jobs (probe, upload, run folders) still in the cache."""
    return sorted(p.name for p in [*cache.glob(".*"), *cache.glob("artifacts/.*")] if p.name != "device.lock")


def _lock_is_free(cache: Path, wait: float = 0.0) -> bool:
    """Whether the device lock can be taken now, or (with `wait`) once the job holding it ends within `wait` s."""
    with open(cache / "device.lock", "a") as f:
        if not wait:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
        got = threading.Event()
        threading.Thread(target=lambda: (fcntl.flock(f, fcntl.LOCK_EX), got.set()), daemon=True).start()
        return got.wait(wait)


def _device_jobs(cache: Path) -> list[str]:
    """Processes on the device working in `cache` (its rtk and remote.sh tasks)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [ln for ln in ps.splitlines() if str(cache) in ln and "ps -eo" not in ln]


def test_bench_on_the_device_and_its_cache(ssh_device, random_ir, tmp_path):
    """The device's rtk times the IR; the result names the host's file, carries the device block, and the
    second call copies nothing."""
    cache = tmp_path / "cache"
    said: list[str] = []
    first = remote_run(_device(ssh_device, cache), ["bench", random_ir, *QUICK], say=said.append)
    assert any(s.startswith("copying model.xml") for s in said), said
    out = first.as_json()
    assert out["artifact"] == str(random_ir) and out["sha256"] == sha256_file(random_ir)
    assert out["target"] == "openvino" and out["results"][0]["latency_ms"]["runs"] == 3
    device = out["device"]
    assert device["hostname"] == socket.gethostname() and device["arch"] == platform.machine()
    assert device["rtk"] == "0.2.0" and set(device["runtimes"]) == {"onnxruntime", "openvino"}
    from toolkit.doctor import cpu_info

    assert device["cores"] == os.cpu_count() and device["cpu"] == cpu_info().name and device["os"]   # its core too
    folder = cache / "artifacts" / upload_of(random_ir).key
    copied = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert sorted(copied) == ["model.bin", "model.xml"]
    said.clear()
    second = remote_run(_device(ssh_device, cache), ["bench", random_ir, *QUICK], say=said.append)
    assert not any(s.startswith("copying") for s in said), said
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()} == copied
    assert second.result["sha256"] == out["sha256"]
    assert _leftovers(cache) == [] and _lock_is_free(cache)


def test_validate_on_the_device_equals_local(ssh_device, random_qdq, random_onnx, accurate_int8, tiny_data,
                                            tmp_path):
    """QDQ ONNX against its FP32 reference, both copied: the same top-1, agreement and per-class top-1 as here;
    a gate failing there (100% agreement with another model of the same classes) comes back as exit code 1 with
    its JSON and its line."""
    from toolkit.validate import validate

    val = str(tiny_data / "val")           # the rig's device shares this file system: the folder is not copied
    run = remote_run(_device(ssh_device, tmp_path / "cache"), ["validate", random_qdq, "--data", val,
                                                               "--reference", random_onnx])
    local = validate([random_qdq], val, reference=random_onnx, measure_latency=False)
    got = run.result["artifacts"][0]
    assert run.exit_code == 0 and got["artifact"] == str(random_qdq)
    assert (got["top1"], got["agreement"], got["per_class_top1"]) == (
        local.artifacts[0].top1, local.artifacts[0].agreement, local.artifacts[0].per_class_top1)
    other = accurate_int8[0]
    assert validate([random_qdq], val, reference=other, measure_latency=False).agreement < 100
    gated = remote_run(_device(ssh_device, tmp_path / "cache"), ["validate", random_qdq, "--data", val,
                                                                 "--reference", other, "--min-agreement", "100"])
    assert gated.exit_code == 1 and "gate min_agreement_pct FAILED" in gated.message
    assert gated.result["passed"] is False and gated.result["gates"][0]["limit"] == 100


def test_one_job_per_device_at_a_time(ssh_device, random_onnx, tmp_path):
    """A second host's job waits for the device lock while the first one times (>= 4 s): it starts only after."""
    import time

    cache = tmp_path / "cache"
    remote_run(_device(ssh_device, cache), ["bench", random_onnx, *QUICK])           # copied beforehand
    events: dict[str, list[tuple[str, float]]] = {"a": [], "b": []}
    a_started = threading.Event()

    def job(name: str, args: list) -> None:
        def say(message: str) -> None:
            events[name].append((message, time.monotonic()))
            if name == "a" and message == "started":
                a_started.set()
        remote_run(_device(ssh_device, cache), ["bench", random_onnx, *args], say=say)

    a = threading.Thread(target=job, args=("a", ["--seconds", "4", "--warmup", "1"]))
    a.start()
    assert a_started.wait(60)
    b = threading.Thread(target=job, args=("b", QUICK))
    b.start()
    a.join(120)
    b.join(120)
    said_b = dict(events["b"])
    assert "waiting for the device lock (another job is using the device)" in said_b, events["b"]
    assert said_b["started"] - dict(events["a"])["started"] >= 4.0


def test_destination_forms(ssh_device, tmp_path):
    assert ssh_destination("nuc") == ["nuc"]
    assert ssh_destination("pi@10.0.0.7") == ["pi@10.0.0.7"]
    assert ssh_destination("ssh://pi@[fe80::1]:2222") == ["-p", "2222", "pi@fe80::1"]
    for bad in ("-oProxyCommand=touch x", "a b", "ssh://host:70000", "", "ssh://a@b/c d", "ssh://-V",
                "ssh://-oProxyCommand=touch${IFS}x", "ssh://-oProxyCommand=x@host", "root@127.0.0.1:2222"):
        with pytest.raises(RemoteError):
            ssh_destination(bad)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    uri = f"ssh://{user}@127.0.0.1:{ssh_device.port}"
    run = remote_run(_device(ssh_device, tmp_path / "cache", dest=uri), ["doctor"])
    assert run.device.name == uri and run.result["hostname"] == socket.gethostname()


def test_no_shell_injection_through_names_options_or_classes(ssh_device, random_onnx, tiny_data, tmp_path):
    """A model file named `$(touch ...) x.onnx`, an image named with backquotes, class names with `$(...)`, and an
    option value with `;`: all reach the device's rtk as plain strings; nothing is executed."""
    import onnx

    from toolkit.backends import read_meta
    from toolkit.onnx_file import write_onnx_meta

    token = uuid.uuid4().hex[:8]
    payloads = [f"$(touch pwned-{token}-a)", f"`touch pwned-{token}-b`", f"; touch pwned-{token}-c"]
    model = onnx.load(str(random_onnx))
    meta = read_meta(random_onnx)
    names = [f"{payloads[0]} {n}" for n in meta.class_names]
    write_onnx_meta(model, meta.model_copy(update={"class_names": names}))
    evil_model = tmp_path / f"{payloads[0]} x.onnx"
    onnx.save(model, str(evil_model))
    evil_image = tmp_path / f"{payloads[1]} {payloads[2]}.png"
    shutil.copy(next((tiny_data / "val" / "circle").iterdir()), evil_image)
    run = remote_run(_device(ssh_device, tmp_path / "cache"), ["predict", str(evil_image), "--model", evil_model,
                                                               "--top", "2"])
    first = run.result["predictions"][0]
    assert first["image"] == str(evil_image)
    assert all(g["label"] in names for g in first["top"])
    with pytest.raises(RemoteError) as bad:
        remote_run(_device(ssh_device, tmp_path / "cache"), ["bench", evil_model, "--target", f"x{payloads[2]}"])
    assert bad.value.exit_code == 2 and "unknown target" in str(bad.value)
    cwds = [tmp_path, tmp_path / "cache", ssh_device.home, Path(pwd.getpwuid(os.getuid()).pw_dir), Path.cwd()]
    assert not [p for folder in cwds for p in folder.glob(f"pwned-{token}-*")]


def test_unknown_host_key_is_refused_never_accepted(ssh_device, tmp_path):
    """device-stranger's config says StrictHostKeyChecking accept-new; rtk refuses and records nothing."""
    known = ssh_device.root / "empty_known_hosts"
    with pytest.raises(RemoteError) as err:
        remote_run(_device(ssh_device, tmp_path / "cache", dest="device-stranger"), ["doctor"])
    assert err.value.exit_code == 2 and "host key is not in your known_hosts" in str(err.value)
    assert known.read_text() == "" and not (tmp_path / "cache").exists()


def test_authentication_refused(ssh_device, tmp_path):
    with pytest.raises(RemoteError) as err:
        remote_run(_device(ssh_device, tmp_path / "cache", dest="device-wrongkey"), ["doctor"])
    assert err.value.exit_code == 2 and "authentication refused" in str(err.value)


def test_unreachable_device(ssh_device, tmp_path):
    with pytest.raises(RemoteError) as err:
        remote_run(_device(ssh_device, tmp_path / "cache", dest="device-down"), ["doctor"])
    assert err.value.exit_code == 4 and "unreachable" in str(err.value)


@pytest.mark.parametrize("rtk", ["rtk-is-not-installed", "/opt/nowhere/bin/rtk"])
def test_rtk_missing_on_the_device(ssh_device, random_onnx, tmp_path, rtk):
    with pytest.raises(RemoteError) as err:
        remote_run(_device(ssh_device, tmp_path / "cache", rtk=rtk), ["bench", random_onnx, *QUICK])
    assert err.value.exit_code == 2 and "pip install 'rtk[openvino]>=0.2.0'" in str(err.value)
    assert not (tmp_path / "cache" / "artifacts").exists() or not any((tmp_path / "cache" / "artifacts").iterdir())


def test_runtime_missing_on_the_device_is_refused_before_copying(ssh_device, tmp_path):
    """An engine needs TensorRT, which the device venv lacks: one line naming the extra, nothing copied."""
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine bytes")
    (tmp_path / "model.engine.json").write_text("{}")
    with pytest.raises(RemoteError) as err:
        remote_run(_device(ssh_device, tmp_path / "cache"), ["bench", engine])
    assert err.value.exit_code == 2
    assert "no tensorrt runtime; install it there: pip install 'rtk[tensorrt-cu13]'" in str(err.value)
    assert list((tmp_path / "cache" / "artifacts").iterdir()) == []


@pytest.fixture(scope="module")
def old_rtk(ssh_device, tmp_path_factory) -> Path:
    """rtk 0.1.0 installed on the device beside the current one: a pip install of these sources with the version
    set back, run by the device venv's python (for its dependencies)."""
    root = tmp_path_factory.mktemp("old-rtk")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "toolkit", "recipes"):
        (shutil.copy2 if (ROOT / name).is_file() else shutil.copytree)(ROOT / name, src / name)
    for rel, old, new in (("pyproject.toml", 'version = "0.2.0"', 'version = "0.1.0"'),
                          ("toolkit/__init__.py", '"0.2.0"', '"0.1.0"')):
        text = (src / rel).read_text()
        assert old in text
        (src / rel).write_text(text.replace(old, new))
    python = ssh_device.rtk.parent / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--target", str(root / "site"), str(src)], check=True, capture_output=True)
    wrapper = root / "rtk"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{root / "site"}" exec "{python}" -m toolkit.cli "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def test_old_device_rtk_is_refused_with_what_to_install(ssh_device, old_rtk, random_onnx, tmp_path):
    with pytest.raises(RemoteError) as err:
        remote_run(_device(ssh_device, tmp_path / "cache", rtk=str(old_rtk)), ["bench", random_onnx])
    assert err.value.exit_code == 2
    assert "runs rtk 0.1.0" in str(err.value) and "pip install 'rtk[openvino]>=0.2.0'" in str(err.value)
    assert list((tmp_path / "cache" / "artifacts").iterdir()) == []


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 16 MB tmpfs: a device cache too small for a ResNet50 (90 MB)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root or CAP_SYS_ADMIN")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("fill", [False, True], ids=["too-small", "already-full"])
def test_device_disk_full(ssh_device, random_onnx, tiny_disk, fill):
    """A cache on a disk without room for the artifact, or with no room at all: one line, exit 2, nothing
    half-written (no partial artifact, no temporary folder), the lock free."""
    if fill:
        with open(tiny_disk / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(bytes(1 << 20))
    with pytest.raises(RemoteError) as err:
        remote_run(_device(ssh_device, tiny_disk), ["bench", random_onnx, *QUICK])
    assert err.value.exit_code == 2 and "disk is full" in str(err.value), err.value
    artifacts = tiny_disk / "artifacts"
    assert (not artifacts.exists() or list(artifacts.iterdir()) == []) and _leftovers(tiny_disk) == []
    assert not (tiny_disk / "device.lock").exists() or _lock_is_free(tiny_disk)


def _started(say_into: list[str], event: threading.Event):
    def say(message: str) -> None:
        say_into.append(message)
        if message == "started":
            event.set()
    return say


def test_connection_lost_mid_run(ssh_device, random_onnx, tmp_path):
    """The server drops the connection while the device times: exit 4 on the host; on the device the job stops,
    its temporary folder goes and the lock is released."""
    cache = tmp_path / "cache"
    remote_run(_device(ssh_device, cache), ["bench", random_onnx, *QUICK])           # copied beforehand
    started, said, outcome = threading.Event(), [], {}

    def bench() -> None:
        try:
            remote_run(_device(ssh_device, cache), ["bench", random_onnx, "--seconds", "120"],
                       say=_started(said, started))
        except RemoteError as exc:
            outcome["error"] = exc

    host = threading.Thread(target=bench)
    host.start()
    assert started.wait(60), said
    ssh_device.drop_connections()
    host.join(60)
    assert not host.is_alive()
    err = outcome["error"]
    assert err.exit_code == 4 and "connection lost while running rtk bench" in str(err)
    assert _lock_is_free(cache, wait=60), "the device job still holds the lock"
    assert _leftovers(cache) == [] and _device_jobs(cache) == []


DRIVER = r"""
import sys
from pathlib import Path
from toolkit.remote import Device, remote_run
cache, model = sys.argv[1], Path(sys.argv[2])
remote_run(Device(dest="device-a", cache=cache), ["bench", model, "--seconds", "120"],
           say=lambda message: print(message, flush=True))
"""


@pytest.mark.parametrize("when", ["running", "waiting to copy"])
def test_ctrl_c_on_the_host_stops_the_device_job(ssh_device, random_onnx, tmp_path, when):
    """SIGINT to the host while the device times (or while a copy waits for the device lock): the host returns
    only after the device job stopped and cleaned up: no process, no temporary file, no copy, the lock free."""
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RTK_SSH_CONFIG": str(ssh_device.config)}
    holder = open(cache / "device.lock", "a")
    if when == "running":
        remote_run(_device(ssh_device, cache), ["bench", random_onnx, *QUICK])
    else:
        fcntl.flock(holder, fcntl.LOCK_EX)           # another job holds the device: the copy waits for it
    host = subprocess.Popen([sys.executable, "-c", DRIVER, str(cache), str(random_onnx)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    expect = "started" if when == "running" else "waiting for the device lock"
    for line in host.stdout:
        if line.startswith(expect):
            break
    host.send_signal(signal.SIGINT)
    _, err = host.communicate(timeout=60)
    assert host.returncode != 0 and "KeyboardInterrupt" in err
    assert _device_jobs(cache) == [] and _leftovers(cache) == []
    if when != "running":
        assert list((cache / "artifacts").iterdir()) == []
        fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    assert _lock_is_free(cache)


def test_a_device_shell_that_greets_on_stdout(ssh_device, random_onnx, tmp_path):
    """A device whose ~/.bashrc prints a banner on stdout (bash reads it for ssh commands): rtk reads only what
    its own script prints after its output mark, so the probe's answer and the result are whole."""
    rc = ssh_device.home / ".bashrc"
    kept = rc.read_bytes() if rc.exists() else None
    rc.write_text('echo "Welcome to the device"\n')
    try:
        done = remote_run(_device(ssh_device, tmp_path / "cache"), ["bench", random_onnx, *QUICK])
    finally:
        rc.unlink()
        if kept is not None:
            rc.write_bytes(kept)
    assert done.exit_code == 0 and done.result["sha256"] == sha256_file(random_onnx)


def test_a_copy_changed_on_the_device_after_its_check_is_not_run(ssh_device, random_onnx, tmp_path, monkeypatch):
    """The cached copy edited on the device between the probe (which found it whole) and the run: the run checks
    it again under the lock and refuses it, and the next call copies it again."""
    import toolkit.remote.run as run_module

    cache = tmp_path / "cache"
    device = _device(ssh_device, cache)
    remote_run(device, ["bench", random_onnx, *QUICK])                 # cached and whole
    copy = cache / upload_of(random_onnx).folder / random_onnx.name
    real = run_module._call

    def edit_first(dev, task, args, **kw):
        if task == "run":
            copy.write_bytes(copy.read_bytes()[:-1] + b"x")             # after the probe, before the run
        return real(dev, task, args, **kw)

    monkeypatch.setattr(run_module, "_call", edit_first)
    with pytest.raises(RemoteError, match="changed on the device after it was checked") as err:
        remote_run(device, ["bench", random_onnx, *QUICK])
    assert err.value.exit_code == 4
    monkeypatch.setattr(run_module, "_call", real)
    done = remote_run(device, ["bench", random_onnx, *QUICK])
    assert done.result["sha256"] == sha256_file(random_onnx) == sha256_file(copy)


HANGS = """#!/usr/bin/env python3
import pathlib, sys, time
pathlib.Path(sys.argv[0] + ".started").touch()
time.sleep(1000)
"""


def test_ctrl_c_while_the_device_answers_its_doctor_stops_it(ssh_device, tmp_path):
    """SIGINT to the host while the device's rtk doctor (the probe) hangs: the device's doctor is stopped and its
    temporary folder removed before the host returns, without waiting out the 30 s a lost channel gets."""
    cache = tmp_path / "cache"
    cache.mkdir()
    hang = tmp_path / "hang"
    hang.write_text(HANGS)
    hang.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RTK_SSH_CONFIG": str(ssh_device.config)}
    driver = ("import sys\nfrom toolkit.remote import Device, remote_run\n"
              "remote_run(Device(dest='device-a', cache=sys.argv[1], rtk=sys.argv[2]), ['doctor'])\n")
    host = subprocess.Popen([sys.executable, "-c", driver, str(cache), str(hang)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = Path(str(hang) + ".started")
    deadline = time.monotonic() + 60
    while not started.exists():
        assert host.poll() is None and time.monotonic() < deadline, host.communicate()
        time.sleep(0.05)
    t0 = time.monotonic()
    host.send_signal(signal.SIGINT)
    _, err = host.communicate(timeout=60)
    assert host.returncode != 0 and "KeyboardInterrupt" in err
    assert time.monotonic() - t0 < 20, "the host waited out the channel instead of stopping the device job"
    assert _device_jobs(cache) == [] and _leftovers(cache) == []


def test_rtk_bench_remote_end_to_end(ssh_device, random_ir, tmp_path, monkeypatch, cli):
    """`rtk bench model.xml --remote device-a --json`: the local JSON plus the device block, the device's rtk
    being the one on its PATH, its cache under its own home."""
    monkeypatch.setenv("RTK_SSH_CONFIG", str(ssh_device.config))
    out = tmp_path / "bench.json"
    result = cli("bench", random_ir, "--remote", ssh_device.alias, "--runs", "3", "--warmup", "1", "--json", out)
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["artifact"] == str(random_ir) and data["device"]["name"] == "device-a"
    assert (ssh_device.home / ".cache" / "rtk" / "artifacts" / upload_of(random_ir).key / "model.bin").is_file()


def test_bench_settings_reach_the_device_rtk_as_its_flags():
    """`remote` is a BenchSettings field: the library turns the other fields back into the flags that build them."""
    from toolkit.cli.flags import build, to_argv
    from toolkit.settings import BenchSettings

    settings = BenchSettings(batches=[1, 2], warmup=1, runs=3, threads=2, hint="throughput", remote="device-a")
    argv = to_argv(settings, flags={"batches": "--batch"}, exclude=("remote",))
    assert argv == ["--batch", "1,2", "--warmup", "1", "--runs", "3", "--threads", "2", "--hint", "throughput"]
    values = dict(zip(argv[::2], argv[1::2]))
    rebuilt = build(BenchSettings, batches=[int(b) for b in values["--batch"].split(",")], warmup=1, runs=3,
                    threads=2, hint=values["--hint"], remote="device-a")
    assert rebuilt == settings


def test_a_recipe_benches_every_artifact_on_the_device(ssh_device, tmp_path, monkeypatch, cli):
    """`bench: {remote: device-a}` in a recipe: the run's bench stage times on the device and the report says so."""
    from tiny_recipe import TINY

    monkeypatch.setenv("RTK_SSH_CONFIG", str(ssh_device.config))
    recipe = tmp_path / "remote.yaml"
    recipe.write_text(TINY.replace("bench:\n", f"bench:\n  remote: {ssh_device.alias}\n"))
    out = tmp_path / "run"
    result = cli("run", recipe, "-o", out)
    assert result.exit_code == 0, result.stderr[-1500:]
    rows = json.loads((out / "report.json").read_text())["rows"]
    timed = [r for r in rows if r["latency_ms"]]
    assert timed and all(r["device"] == ssh_device.alias for r in timed)
    assert all(r["machine"].startswith(f"{socket.gethostname()}, ") for r in timed)
    assert f"Latency measured on {ssh_device.alias} ({socket.gethostname()}, " in (out / "report.md").read_text()
    state = json.loads((out / ".rtk" / "state.json").read_text())["stages"]
    runs = state[f"bench@{ssh_device.alias}"]["result"].values()
    assert all(run["device"]["name"] == ssh_device.alias for repeats in runs for run in repeats)
