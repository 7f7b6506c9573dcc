"""No surprise network: the offline commands run in a process where every internet socket and DNS lookup raises.

The blocker is installed before anything from rtk (or torch, ONNX Runtime, OpenVINO, NNCF) is imported, so an
import or a telemetry call that reaches out is caught too, even one that swallows the error: every attempt is
recorded. Local (AF_UNIX) sockets stay allowed. Only `--weights imagenet-*` may use the network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DRIVER = r'''
import json, socket, sys
attempts = []

def refuse(what):
    def blocked(*args, **kwargs):
        attempts.append(f"{what} {args[1:] if what.startswith('socket.') else args}"[:200])
        raise OSError(f"network disabled by test_network: {what}")
    return blocked

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
def connect(self, address, _orig=_connect):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        return refuse("socket.connect")(self, address)
    return _orig(self, address)
def connect_ex(self, address, _orig=_connect_ex):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        return refuse("socket.connect_ex")(self, address)
    return _orig(self, address)
socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.getaddrinfo = refuse("getaddrinfo")
socket.gethostbyname = refuse("gethostbyname")
socket.create_connection = refuse("create_connection")
_sendto = socket.socket.sendto
def sendto(self, *args, _orig=_sendto):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        return refuse("socket.sendto")(self, *args)
    return _orig(self, *args)
socket.socket.sendto = sendto

from pathlib import Path
from typer.testing import CliRunner
from toolkit.cli import app

root = Path(sys.argv[1])
recipe = sys.argv[2]
runner = CliRunner()
steps = [
    ["doctor"],
    ["data", "synth", root / "d", "--classes", "2", "--per-class", "4", "--val-per-class", "2", "--size", "32"],
    ["export", "--weights", "random", "--num-classes", "2", "--input-size", "32", "-o", root / "m.onnx"],
    ["rename"],
    ["validate", root / "m.onnx", "--data", root / "d" / "val"],
    ["bench", root / "m.onnx", "--runs", "3", "--warmup", "1"],
    ["predict", root / "d" / "val" / "class_0" / "IMAGE", "--model", root / "m.onnx"],
    ["quantize", root / "m.onnx", "-o", root / "q.onnx", "--calib", root / "d" / "train", "--subset", "4",
     "--allow-small", "--bench-runs", "0"],
    ["compile", root / "m.onnx", "--target", "openvino", "-o", root / "ir"],
    ["recipe", "check", recipe],
    ["export", "--weights", "imagenet-v2", "-o", root / "pretrained.onnx"],
]
codes = {}
for step in steps:
    if step == ["rename"]:  # random weights have classes class_0, class_1: name the folders alike
        for split in ("train", "val"):
            for i, folder in enumerate(sorted((root / "d" / split).iterdir())):
                folder.rename(folder.with_name(f"class_{i}"))
        continue
    if step[0] == "predict":
        step[1] = next((root / "d" / "val" / "class_0").iterdir())
    before = len(attempts)
    result = runner.invoke(app, [str(s) for s in step])
    codes[" ".join(map(str, step[:3]))] = [result.exit_code, result.stderr[-400:], attempts[before:]]
print(json.dumps({"codes": codes}))
'''


def test_offline_commands_never_touch_the_network(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.run([sys.executable, str(driver), str(tmp_path), str(ROOT / "recipes" / "demo.yaml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])["codes"]
    pretrained = codes.pop(next(k for k in codes if "imagenet-v2" in k))
    assert len(codes) == 9
    failed = {k: v for k, v in codes.items() if v[0] != 0}
    assert not failed, failed
    reached = {k: v[2] for k, v in codes.items() if v[2]}
    assert not reached, reached
    assert (tmp_path / "q.onnx").is_file() and (tmp_path / "ir" / "model.xml").is_file()
    # the one network use: an explicit pretrained download, which (blocked here) is one clean line, exit 2
    exit_code, stderr, attempts = pretrained
    if exit_code == 0:
        return  # the weights are in torch's hub cache here: nothing was downloaded
    assert attempts, "the pretrained download did not even try the network"
    assert exit_code == 2 and "Traceback" not in stderr and "could not download imagenet-v2" in stderr
    assert not (tmp_path / "pretrained.onnx").exists()
