"""validate, predict and doctor on a device, and recipes with a devices: block, against the rig's real SSH server
and torch-free device venv (tests/rig.py): remote results equal local ones, folders are copied once by content,
two devices give a row each, and the faults of the new commands are one line with their exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from toolkit.remote import folder_upload

QUICK = ["--runs", "3", "--warmup", "1"]


@pytest.fixture()
def on_rig(ssh_device, monkeypatch):
    """The rig's ssh config for every ssh call, as a user's ~/.ssh/config would be."""
    monkeypatch.setenv("RTK_SSH_CONFIG", str(ssh_device.config))
    return ssh_device


def _said(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ": copying " in ln]


def test_validate_on_the_device_equals_local_and_copies_its_data_once(on_rig, cli, random_qdq, random_onnx,
                                                                     tiny_data, tmp_path):
    """`rtk validate --remote`: top-1, agreement and per-class top-1 equal a local run; the data folder lands in the
    device's cache under its tree hash, a second call copies nothing, and --remote-data on that copy agrees."""
    from toolkit.validate import validate

    val = tiny_data / "val"
    out = tmp_path / "v.json"
    first = cli("validate", random_qdq, "--data", val, "--reference", random_onnx, "--remote", on_rig.alias,
                "--json", out)
    assert first.exit_code == 0, first.stderr
    assert any("copying val" in ln for ln in _said(first)), first.stderr
    got = json.loads(out.read_text())
    local = validate([random_qdq], val, reference=random_onnx, measure_latency=False)
    assert got["device"]["name"] == on_rig.alias and got["data"] == str(val)
    assert got["artifacts"][0]["artifact"] == str(random_qdq)
    for key in ("top1", "top5", "agreement", "per_class_top1"):
        assert got["artifacts"][0][key] == getattr(local.artifacts[0], key), key
    copy = on_rig.home / ".cache" / "rtk" / "data" / folder_upload(val).key
    assert sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file()) == sorted(
        p.relative_to(val) for p in val.rglob("*") if p.is_file())
    again = cli("validate", random_qdq, "--data", val, "--reference", random_onnx, "--remote", on_rig.alias)
    assert again.exit_code == 0 and _said(again) == [], again.stderr
    there = cli("validate", random_qdq, "--remote-data", str(copy), "--reference", random_onnx, "--remote",
                on_rig.alias, "--remote-rtk", str(on_rig.rtk), "--json", out)
    assert there.exit_code == 0, there.stderr
    assert json.loads(out.read_text())["artifacts"][0]["top1"] == local.artifacts[0].top1


def test_an_ir_with_embedded_preprocessing_on_the_device(on_rig, cli, embedded_ir, random_onnx, tiny_data, tmp_path):
    """The device's torch-free rtk feeds an IR with its preprocessing embedded u8 pixels: its validation equals a
    local one, image for image."""
    from toolkit.validate import validate

    out = tmp_path / "v.json"
    done = cli("validate", embedded_ir, "--data", tiny_data / "val", "--reference", random_onnx, "--remote",
               on_rig.alias, "--json", out)
    assert done.exit_code == 0, done.stderr
    got = json.loads(out.read_text())["artifacts"][0]
    local = validate([embedded_ir], tiny_data / "val", reference=random_onnx, measure_latency=False).artifacts[0]
    assert got["agreement"] == 100.0 and got["cosine"] > 0.99999
    for key in ("top1", "top5", "agreement", "per_class_top1"):
        assert got[key] == getattr(local, key), key


def test_a_changed_folder_is_copied_again_under_its_new_key(on_rig, cli, random_onnx, tiny_data, tmp_path):
    """A stale copy is never used: one changed image gives the folder a new tree hash, and that one is copied."""
    val = tmp_path / "val"
    shutil.copytree(tiny_data / "val", val)
    before = folder_upload(val).key
    image = next((val / "circle").iterdir())
    shutil.copy(next((val / "square").iterdir()), image)
    after = folder_upload(val).key
    assert after != before
    (val / "circle" / "gone.png").symlink_to(tmp_path / "nowhere.png")     # warned about, as a local run does
    done = cli("validate", random_onnx, "--data", val, "--remote", on_rig.alias)
    assert done.exit_code == 0 and any("copying val" in ln for ln in _said(done)), done.stderr
    assert "1 file in" in done.stderr and "gone.png" in done.stderr, done.stderr
    copied = on_rig.home / ".cache" / "rtk" / "data" / after / image.relative_to(val)
    assert copied.read_bytes() == image.read_bytes()


def test_predict_and_doctor_on_the_device(on_rig, cli, random_ir, tiny_data, tmp_path):
    """`rtk predict --remote` gives the local labels and probabilities with the device block on every prediction;
    `rtk doctor --remote` is the device's own doctor."""
    from toolkit.predict import predict

    images = sorted((tiny_data / "val" / "circle").iterdir())[:2] + sorted((tiny_data / "val" / "square").iterdir())[:1]
    out = tmp_path / "p.json"
    done = cli("predict", *images, "--model", random_ir, "--top", "2", "--remote", on_rig.alias, "--json", out)
    assert done.exit_code == 0, done.stderr
    got = json.loads(out.read_text())["predictions"]
    local = predict(images, random_ir)
    assert [p["image"] for p in got] == [str(i) for i in images]
    assert [[g["label"] for g in p["top"]] for p in got] == [[g.label for g in p.top[:2]] for p in local]
    assert all(p["device"]["name"] == on_rig.alias for p in got)
    assert abs(got[0]["top"][0]["probability"] - local[0].top[0].probability) < 1e-5
    assert f"on {on_rig.alias} ({socket.gethostname()}" in " ".join(done.stdout.split())
    doctor = cli("doctor", "--remote", on_rig.alias, "--json", out)
    assert doctor.exit_code == 0, doctor.stderr
    facts = json.loads(out.read_text())
    assert facts["device"]["name"] == on_rig.alias and facts["packages"]["torch"] is None
    assert facts["runtimes"]["openvino"] is True


def test_the_same_bytes_under_two_names_are_two_copies(on_rig, cli, random_onnx, tiny_data, tmp_path):
    """Two identical photos under different names in one call, and a renamed copy of a model the device already
    holds, each run under its own name: the cache key holds the names, not only the bytes."""
    photo = sorted((tiny_data / "val" / "circle").iterdir())[0]
    twin = tmp_path / "twin.png"
    twin.write_bytes(photo.read_bytes())
    out = tmp_path / "p.json"
    done = cli("predict", photo, twin, "--model", random_onnx, "--remote", on_rig.alias, "--json", out)
    assert done.exit_code == 0, done.stderr
    got = json.loads(out.read_text())["predictions"]
    assert [p["image"] for p in got] == [str(photo), str(twin)] and got[0]["top"] == got[1]["top"]
    renamed = tmp_path / "renamed.onnx"
    renamed.write_bytes(random_onnx.read_bytes())
    done = cli("bench", renamed, "--runs", "3", "--remote", on_rig.alias, "--json", out)
    assert done.exit_code == 0, done.stderr
    assert json.loads(out.read_text())["artifact"] == str(renamed)


def test_remote_bench_latency_is_local_latency_by_compares_verdict(on_rig, random_onnx, tmp_path):
    """The same artifact timed here and on the loopback device (the same CPU), each in a fresh rtk process, in
    alternating order: compare's own verdict over four repeats each finds no change beyond the noise."""
    import subprocess
    import sys

    from toolkit.compare import latency_verdict

    root = Path(__file__).resolve().parents[1]
    quick = ["--runs", "20", "--warmup", "10", "--threads", "1"]
    here, there = [], []

    def p50(*remote: str) -> float:
        out = tmp_path / "b.json"
        subprocess.run([sys.executable, "-m", "toolkit.cli", "bench", str(random_onnx), *quick, *remote, "--json",
                        str(out)], check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(root)})
        return json.loads(out.read_text())["results"][0]["latency_ms"]["p50"]

    for i in range(4):
        for where in (("here", "there") if i % 2 == 0 else ("there", "here")):
            (here if where == "here" else there).append(p50() if where == "here" else p50("--remote", on_rig.alias))
    ratio, interval, verdict = latency_verdict(here, there, 0.2)
    assert verdict == "no change", (here, there, ratio, interval)


@pytest.mark.parametrize("case", ["unreachable", "rtk-missing", "not-rtk", "failing-rtk", "remote-data-missing",
                                  "data-and-remote-data"])
def test_faults_of_the_new_commands(on_rig, cli, random_onnx, tiny_data, case):
    """One line on stderr and the documented exit code: 4 unreachable, 2 for what the user fixes."""
    val = str(tiny_data / "val")
    argv, code, words = {
        "unreachable": (["doctor", "--remote", "device-down"], 4, "unreachable"),
        "rtk-missing": (["predict", str(next((tiny_data / "val" / "circle").iterdir())), "--model", random_onnx,
                         "--remote", on_rig.alias, "--remote-rtk", "/opt/nowhere/rtk"], 2,
                        "pip install 'rtk[openvino]>=0.2.0'"),
        "not-rtk": (["doctor", "--remote", on_rig.alias, "--remote-rtk", "/bin/echo"], 2, "no readable JSON"),
        "failing-rtk": (["doctor", "--remote", on_rig.alias, "--remote-rtk", "/bin/false"], 2, "doctor` failed there"),
        "remote-data-missing": (["validate", random_onnx, "--remote", on_rig.alias, "--remote-data", "no/such/dir"],
                                2, "no/such/dir not found"),
        "data-and-remote-data": (["validate", random_onnx, "--remote", on_rig.alias, "--data", val,
                                  "--remote-data", val], 2, "one of them"),
    }[case]
    done = cli(*argv)
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert done.exit_code == code and len(errors) == 1 and words in errors[0], done.stderr


def test_no_shell_injection_through_a_copied_data_folder(on_rig, cli, random_onnx, tiny_data, tmp_path):
    """Class folders and image names carrying `$(...)`, backquotes, `;`, a newline and a backslash are copied and
    checked as plain names; nothing is executed, and the device reads the same images."""
    token = uuid.uuid4().hex[:8]
    val = tmp_path / "val"
    for i, cls in enumerate(sorted(p.name for p in (tiny_data / "val").iterdir())):
        shutil.copytree(tiny_data / "val" / cls, val / cls)
    odd = val / "circle" / f"$(touch pwned-{token}) `touch pwned-{token}`; x\\y\nz.png"
    shutil.copy(next((val / "circle").iterdir()), odd)
    done = cli("validate", random_onnx, "--data", val, "--remote", on_rig.alias, "--json", tmp_path / "v.json")
    assert done.exit_code == 0, done.stderr
    assert json.loads((tmp_path / "v.json").read_text())["images"] == sum(1 for p in val.rglob("*") if p.is_file())
    folders = [tmp_path, on_rig.home, Path.cwd(), Path(os.path.expanduser("~"))]
    assert not [p for folder in folders for p in folder.glob(f"pwned-{token}*")]


def test_a_recipe_with_two_devices(on_rig, cli, tmp_path):
    """devices: two entries on the loopback device, with different remote rtk paths (the venv's rtk and a second
    path to it): a report row per device and artifact, device-named gates (one failing on purpose, exit 1),
    validate.on_devices, each device's doctor facts in the manifest; rtk compare matches rows by device."""
    from tiny_recipe import TINY

    second = tmp_path / "bin" / "rtk"
    second.parent.mkdir()
    second.symlink_to(on_rig.rtk)
    recipe = tmp_path / "two.yaml"
    recipe.write_text(TINY.replace("  max_p99_ms: {onnxruntime: 100000}\n",
                                   "  max_p99_ms: {onnxruntime: 100000, b/onnxruntime: 0.001}\n")
                      .replace("  repeats: 2\n", "  repeats: 1\n")
                      + f"devices:\n  a: {on_rig.alias}\n  b: {{dest: {on_rig.alias}, rtk: {second}}}\n"
                      + "validate:\n  on_devices: true\n")
    out = tmp_path / "run"
    result = cli("run", recipe, "-o", out)
    assert result.exit_code == 1, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    timed = {(r["device"], r["name"]) for r in report["rows"] if r["latency_ms"]}
    assert timed == {("a", "fp32"), ("b", "fp32")}
    device_rows = [r for r in report["rows"] if r["device"]]
    assert all(r["accuracy_on"] == r["device"] and r["top1"] is not None for r in device_rows)
    p99 = {(g["device"], g["passed"]) for g in report["gates"] if g["name"] == "max_p99_ms"}
    assert p99 == {("a", True), ("b", False)}      # b's own key replaces the generic one there
    assert "gate max_p99_ms FAILED for fp32 on b" in result.stderr
    md = (out / "report.md").read_text()
    assert "| a | fp32 | onnxruntime |" in md and "| b | fp32 | onnxruntime |" in md
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["devices"]) == {"a", "b"} and manifest["devices"]["b"]["hostname"] == socket.gethostname()
    compared = cli("compare", out / "report.json", out / "report.json", "--json", tmp_path / "c.json")
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert compared.exit_code == 0 and {(r["device"], r["name"]) for r in rows} >= {("a", "fp32"), ("b", "fp32")}


def test_a_damaged_cached_copy_is_copied_again_and_dead_jobs_leave_nothing(on_rig, cli, random_ir, tiny_data,
                                                                          tmp_path):
    """Every run re-checks the cached copies it uses on the device: an IR's .bin with a flipped byte, or a data
    folder with an image gone, is copied again before the run (the result is the host files'); temporary folders
    of a job that died without cleaning up (power loss) go with the next job."""
    from toolkit.remote import upload_of

    val = tmp_path / "val"
    shutil.copytree(tiny_data / "val", val)
    out = tmp_path / "v.json"
    first = cli("validate", random_ir, "--data", val, "--remote", on_rig.alias, "--json", out)
    assert first.exit_code == 0, first.stderr
    before = json.loads(out.read_text())
    cache = on_rig.home / ".cache" / "rtk"
    weights = cache / upload_of(random_ir).folder / random_ir.with_suffix(".bin").name
    data = cache / folder_upload(val).folder
    with open(weights, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    next((data / "circle").iterdir()).unlink()
    (cache / "artifacts" / ".upload.dead").mkdir()
    (cache / ".run.dead").mkdir()
    again = cli("validate", random_ir, "--data", val, "--remote", on_rig.alias, "--json", out)
    assert again.exit_code == 0, again.stderr
    assert len(_said(again)) == 2, again.stderr          # the IR and the folder, both copied again
    got = json.loads(out.read_text())
    assert got["images"] == before["images"] and got["artifacts"][0]["top1"] == before["artifacts"][0]["top1"]
    assert weights.read_bytes() == random_ir.with_suffix(".bin").read_bytes()
    assert not (cache / "artifacts" / ".upload.dead").exists() and not (cache / ".run.dead").exists()


def test_devices_run_in_parallel_and_one_device_runs_one_job_at_a_time():
    """on_devices: jobs on two devices are inside their jobs at the same time (a barrier both must reach); two jobs
    on one device never overlap (the second starts after the first ended)."""
    import threading
    import time

    from toolkit.remote.devices import on_devices

    both = threading.Barrier(2, timeout=30)
    assert on_devices({"a": ("host-a", lambda: both.wait() >= 0), "b": ("host-b", lambda: both.wait() >= 0)}) == {
        "a": True, "b": True}
    spans: dict[str, tuple[float, float]] = {}

    def job(name: str) -> str:
        start = time.monotonic()
        time.sleep(0.3)
        spans[name] = (start, time.monotonic())
        return name

    assert on_devices({"x": ("host-c", lambda: job("x")), "y": ("host-c", lambda: job("y"))}) == {"x": "x", "y": "y"}
    (a0, a1), (b0, b1) = sorted(spans.values())
    assert b0 >= a1


def test_a_folder_too_big_for_the_device_disk(ssh_device, tmp_path):
    """A --data folder larger than the device cache's free space (a 16 MB tmpfs): one line, exit 2, no partial
    copy and no temporary folder left there."""
    import subprocess

    from toolkit.remote import Device, Folder, RemoteError, remote_run

    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root or CAP_SYS_ADMIN")
    try:
        big = tmp_path / "big" / "class-a"
        big.mkdir(parents=True)
        (big / "blob.png").write_bytes(os.urandom(20 << 20))
        device = Device(dest=ssh_device.alias, rtk=str(ssh_device.rtk), ssh_config=ssh_device.config, cache=str(mount))
        with pytest.raises(RemoteError) as err:
            remote_run(device, ["validate", "x.onnx", "--data", Folder(big.parent)])
        assert err.value.exit_code == 2 and "disk is full" in str(err.value)
        assert list((mount / "data").iterdir()) == [] and [p.name for p in (mount / "artifacts").iterdir()] == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


PARALLEL_DRIVER = r"""
import sys
from pathlib import Path
from toolkit.remote import Device
from toolkit.remote.commands import bench_on_device
from toolkit.remote.devices import on_devices
from toolkit.settings import BenchSettings

model, caches, dests = Path(sys.argv[1]), sys.argv[2:4], sys.argv[4:6]
settings = BenchSettings(seconds=120, warmup=1)


def job(i):
    device = Device(dest=dests[i], cache=caches[i], label=f"d{i}")
    return bench_on_device(model, target=None, settings=settings, device=device,
                           say=lambda message: print(f"d{i}: {message}", flush=True))


on_devices({f"d{i}": (dests[i], lambda i=i: job(i)) for i in range(2)})
"""


def test_ctrl_c_stops_every_device_of_a_parallel_run(ssh_device, random_onnx, tmp_path):
    """Two devices timing in parallel (two destinations, two caches), then SIGINT to the host: it returns only once
    both device jobs stopped and cleaned up (no process, no temporary folder, both locks free)."""
    import getpass
    import signal
    import subprocess
    import sys

    from test_remote import _device_jobs, _leftovers, _lock_is_free
    from toolkit.remote import Device, remote_run

    root = Path(__file__).resolve().parents[1]
    caches = [tmp_path / "cache0", tmp_path / "cache1"]
    dests = [ssh_device.alias, f"ssh://{getpass.getuser()}@127.0.0.1:{ssh_device.port}"]
    for dest, cache in zip(dests, caches):       # copied beforehand, so both reach "started" quickly
        remote_run(Device(dest=dest, cache=str(cache), ssh_config=ssh_device.config),
                   ["bench", random_onnx, *QUICK])
    env = {**os.environ, "PYTHONPATH": str(root), "RTK_SSH_CONFIG": str(ssh_device.config)}
    host = subprocess.Popen([sys.executable, "-c", PARALLEL_DRIVER, str(random_onnx), *map(str, caches), *dests],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started: set[str] = set()
    for line in host.stdout:
        if line.rstrip().endswith(": started"):
            started.add(line.split(":")[0])
            if len(started) == 2:
                break
    assert started == {"d0", "d1"}
    host.send_signal(signal.SIGINT)
    _, err = host.communicate(timeout=90)
    assert host.returncode != 0 and "KeyboardInterrupt" in err, err[-1500:]
    for cache in caches:
        assert _device_jobs(cache) == [] and _leftovers(cache) == [] and _lock_is_free(cache)


def test_the_device_sides_stdin_watcher_always_stops():
    """remote.sh's own watch/unwatch, 200 times under dash with stdin held open: every watcher stops and every
    unwatch returns. (With `kill -TERM` dash dropped the signal when it came before the watcher's `trap -`: about
    one watcher in five lived on and the upload hung in `wait`.)"""
    import re
    import shutil
    import subprocess

    from toolkit.remote.channel import SCRIPT

    sh = shutil.which("dash") or "/bin/sh"
    functions = "\n".join(re.search(rf"^{name}\(\) {{.*?^}}$|^{name}\(\) {{.*?}}$", SCRIPT, re.S | re.M).group(0)
                          for name in ("watch", "unwatch"))
    loop = ("trap 'exit 143' HUP INT TERM PIPE\nexec 3<&0\nwatch=\n" + functions +
            "\ni=0\nwhile [ $i -lt 200 ]; do watch; unwatch; i=$((i + 1)); done\necho done\n")
    held, writer = os.pipe()            # the channel's stdin, open until the loop ends (as during an upload)
    try:
        with subprocess.Popen([sh, "-c", loop], stdin=held, stdout=subprocess.PIPE, text=True) as proc:
            try:
                out, _ = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail("an unwatch waited for a watcher that never stopped")
    finally:
        os.close(held)
        os.close(writer)
    assert out.strip() == "done"


def test_a_stop_reaches_a_job_that_lost_its_first_term(tmp_path):
    """remote.sh's own `stop`, under dash, on a job that swallows its first TERM (as a job does when the TERM
    reaches it between its fork and its exec, where the shell's inherited trap takes it): the job still stops and
    the task exits 143, long before the job's own two minutes. (One TERM only: such a job ran to its end, and a
    Ctrl-C on the host waited for it.)"""
    import re
    import shutil
    import subprocess

    from toolkit.remote.channel import SCRIPT

    sh = shutil.which("dash") or "/bin/sh"
    stop = re.search(r"^stop\(\) {.*?^}$", SCRIPT, re.S | re.M).group(0)
    ready, job = tmp_path / "ready", tmp_path / "job.sh"
    job.write_text(f"trap 'trap - TERM' TERM\ntouch {ready}\ni=0\n"
                   "while [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done\n")
    task = (f"set -u\njob=\n{stop}\ntrap stop HUP INT TERM PIPE\n{sh} {job} >/dev/null & job=$!\n"
            f"while [ ! -e {ready} ]; do sleep 0.05; done\nkill -TERM $$\nwait \"$job\"\necho 'ran to its end'\n")
    with subprocess.Popen([sh, "-c", task], stdout=subprocess.PIPE, text=True) as proc:
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 143 and "ran to its end" not in out


@pytest.mark.parametrize("written,words", [('{"artifact": "m", "p50": NaN}', "wrote NaN"),
                                           ('{"artifact": "m"}', "wrote a result this rtk cannot read"),
                                           ('[1, 2, 3]', "wrote a result this rtk cannot read")])
def test_a_device_result_that_is_not_strict_or_not_this_shape(on_rig, random_onnx, tmp_path, written, words):
    """A device rtk whose bench JSON holds NaN, or lacks fields (another version): one line, exit 2, never a NaN
    passed on and never exit 3."""
    from toolkit.bench import bench
    from toolkit.remote import RemoteError
    from toolkit.settings import BenchSettings

    shim = tmp_path / "rtk"
    shim.write_text(f'#!/bin/sh\n[ "$1" = doctor ] && exec "{on_rig.rtk}" "$@"\nfor a; do out=$a; done\n'
                    f"printf '%s' '{written}' > \"$out\"\n")
    shim.chmod(0o755)
    with pytest.raises(RemoteError) as err:
        bench(random_onnx, settings=BenchSettings(runs=2, warmup=0, remote=on_rig.alias, remote_rtk=str(shim)))
    assert err.value.exit_code == 2 and words in str(err.value)


def test_inputs_keep_their_host_paths(on_rig, cli, random_onnx, tiny_data, tmp_path):
    """Two inputs with one content and one name (x/a.png, y/a.png) come back as their own host paths, in order;
    the device's error lines name the host's file, not its cache copy."""
    image = next((tiny_data / "val" / "circle").iterdir())
    pair = [tmp_path / "x" / "a.png", tmp_path / "y" / "a.png"]
    for p in pair:
        p.parent.mkdir()
        shutil.copy(image, p)
    out = tmp_path / "p.json"
    done = cli("predict", *pair, "--model", random_onnx, "--remote", on_rig.alias, "--json", out)
    assert done.exit_code == 0, done.stderr
    assert [p["image"] for p in json.loads(out.read_text())["predictions"]] == [str(p) for p in pair]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    failed = cli("predict", bad, "--model", random_onnx, "--remote", on_rig.alias)
    assert failed.exit_code == 2 and str(bad) in failed.stderr and "artifacts/" not in failed.stderr, failed.stderr


def test_a_devices_own_latency_gate_replaces_the_generic_one_there():
    """max_p99_ms {onnxruntime: 1, a/onnxruntime: 100}: device a is gated by its own key only (once), b by the
    generic one."""
    from toolkit.pipeline.gates import Scored, evaluate
    from toolkit.settings import Gates

    rows = [Scored(name="fp32", target="onnxruntime", device=d, p99_ms=50.0) for d in ("a", "b")]
    got = evaluate(Gates(max_p99_ms={"onnxruntime": 1, "a/onnxruntime": 100}), rows)
    assert [(g.device, g.limit, g.passed) for g in got] == [("b", 1, False), ("a", 100, True)]


def test_a_recipe_with_a_device_down_fails_before_any_stage(on_rig, cli, tmp_path):
    """devices: {a: up, down: closed port}: every device is asked first (in parallel), exit 4 naming the one down,
    before the model stage runs."""
    from tiny_recipe import TINY

    recipe = tmp_path / "two.yaml"
    recipe.write_text(TINY + f"devices:\n  a: {on_rig.alias}\n  down: {{dest: device-down}}\n")
    out = tmp_path / "run"
    result = cli("run", recipe, "-o", out)
    assert result.exit_code == 4 and "down: unreachable" in result.stderr, result.stderr[-2000:]
    assert not (out / "model").exists() and not list(out.glob("*/model*")), sorted(out.rglob("*"))


def test_a_bad_destination_is_refused_before_any_input_is_read(cli, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x" * 1000)
    done = cli("bench", model, "--remote", "-oProxyCommand=x")
    assert done.exit_code == 2 and "give an SSH destination" in done.stderr and "asking" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_device_takes_the_artifacts_recorded_decode(on_rig, cli, random_onnx, tiny_data, tmp_path):
    """An artifact whose metadata records a passed fast-decode check (toolkit.deploy) is validated with the fast
    decode on the torch-free device too, saying why; --exact-decode reaches the device and overrides it."""
    from PIL import Image

    from toolkit.deploy import with_fast_decode
    from toolkit.photos import FastDecodeCheck

    val = tmp_path / "val"
    for src in sorted((tiny_data / "val").rglob("*.png"))[::4]:
        (val / src.parent.name).mkdir(parents=True, exist_ok=True)
        Image.open(src).convert("RGB").resize((640, 480)).save(val / src.parent.name / f"{src.stem}.jpg")
    deployed = tmp_path / "deploy" / "model.onnx"
    with_fast_decode(random_onnx, deployed, FastDecodeCheck(images=8, scaled=8, exact_top1=50.0, fast_top1=50.0,
                                                            agreement=100.0), data="val")
    for flags, want in [((), ("fast", "artifact")), (("--exact-decode",), ("exact", "flag"))]:
        done = cli("validate", deployed, "--data", val, "--remote", on_rig.alias, *flags, "--json", tmp_path / "v.json")
        score = json.loads((tmp_path / "v.json").read_text())["artifacts"][0]
        assert done.exit_code in (0, 1) and (score["decode"], score["decode_by"]) == want, done.stderr


def test_too_many_inputs_for_one_ssh_command_line(tmp_path):
    """Photos enough that the remote command line passes Linux's 128 kB per argument: one line, exit 2, before
    anything connects (the device name does not even resolve)."""
    from toolkit.remote import Device, RemoteError, remote_run

    photos = []
    for i in range(2000):
        photos.append(tmp_path / f"{i:05d}.png")
        photos[-1].write_bytes(i.to_bytes(2, "big"))
    with pytest.raises(RemoteError, match="too many inputs for one remote call") as err:
        remote_run(Device(dest="no-such-device.invalid"), ["predict", *photos])
    assert err.value.exit_code == 2


def test_linked_class_folders_are_copied_as_the_local_scan_reads_them(on_rig, cli, random_onnx, tiny_data, tmp_path):
    """Class folders that are links (a data set assembled with ln -s) are copied as folders, so the device
    scores what a local validate scores; a link the local scan refuses (a class's sub-folder linking another
    class) is refused the same way before anything is copied."""
    from toolkit.validate import validate

    linked = tmp_path / "linked"
    linked.mkdir()
    for cls in sorted(p.name for p in (tiny_data / "val").iterdir() if p.is_dir()):
        (linked / cls).symlink_to(tiny_data / "val" / cls)
    out = tmp_path / "v.json"
    done = cli("validate", random_onnx, "--data", linked, "--remote", on_rig.alias, "--json", out)
    assert done.exit_code == 0, done.stderr
    got = json.loads(out.read_text())["artifacts"][0]
    local = validate([random_onnx], linked, measure_latency=False)
    assert json.loads(out.read_text())["images"] == local.images == 32
    assert got["per_class_top1"] == local.artifacts[0].per_class_top1
    mixed = tmp_path / "mixed"
    for cls in ("circle", "square"):
        (mixed / cls).mkdir(parents=True)
        for f in sorted((tiny_data / "val" / cls).iterdir()):
            (mixed / cls / f.name).write_bytes(f.read_bytes())
    (mixed / "circle" / "loop").symlink_to(mixed / "square")
    local_says = cli("validate", random_onnx, "--data", mixed)
    done = cli("validate", random_onnx, "--data", mixed, "--remote", on_rig.alias)
    assert local_says.exit_code == done.exit_code == 2 and "an image of class square" in done.stderr
