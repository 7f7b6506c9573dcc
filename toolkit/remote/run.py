"""`remote_run`: run `rtk <argv>` on a device and collect its JSON with the device block.

    run = remote_run(Device(dest="nuc"), ["bench", Path("model.xml"), "--runs", "50"])
    run.as_json()          # what `rtk bench --json` writes on the device, plus a "device" block

A call is three remote.sh tasks over ssh (channel.py): probe (the device's rtk doctor, and which of the inputs its
cache already holds), upload (what it lacks, cache.py) and run. Copies and runs hold <cache>/device.lock on the
device, so two hosts (as the same device user) never time on one device at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

from pydantic import BaseModel

from toolkit.doctor import cpu_name
from toolkit.remote.cache import DevicePath, Folder, Upload, folder_upload, tar_of, upload_of
from toolkit.remote.channel import (DEVICE_INSTALL, MARK, MIN_DEVICE_RTK, UNREACHABLE, Device, RemoteError,
                                    _call, _device_message, _fault)

Arg = Union[str, Path, Folder, DevicePath]
ON_DEVICE = "rtk-remote-path:"     # remote.sh's run resolves an argument with this prefix on the device


class DeviceInfo(BaseModel):
    """The device block every remote result carries, from the device's own `rtk doctor`."""

    name: str
    hostname: str
    cpu: str
    cores: int
    isa: list[str]
    os: str
    arch: str
    python: str
    rtk: str
    runtimes: dict[str, str]


@dataclass
class RemoteRun:
    result: dict               # the device rtk's --json
    device: DeviceInfo
    exit_code: int             # the device rtk's: 0, or 1 when a gate failed there
    message: str | None        # the device rtk's error line when it exited 1

    def as_json(self) -> dict:
        return {**self.result, "device": self.device.model_dump()}



def _version(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", (text or "0").split("+")[0])[:3])


def device_info(device: Device, doctor: dict) -> DeviceInfo:
    """The device block from the device's `rtk doctor --json`."""
    cpu, packages = doctor.get("cpu", {}), doctor.get("packages", {})
    runtimes = {name: packages.get(name) for name, ok in doctor.get("runtimes", {}).items() if ok}
    return DeviceInfo(name=device.name, hostname=doctor.get("hostname", "unknown"), cpu=cpu_name(cpu),
                      cores=cpu.get("cores", 0), isa=[k for k, v in cpu.get("isa", {}).items() if v],
                      os=doctor.get("os", doctor.get("platform", "unknown")), arch=cpu.get("machine", "unknown"),
                      python=doctor.get("python", "unknown"), rtk=packages.get("rtk") or "unknown",
                      runtimes={k: v or "unknown" for k, v in runtimes.items()})


def _check_runtimes(device: Device, argv: Sequence[Arg], uploads: dict[int, Upload], *, doctor: dict) -> None:
    """Refuse before copying anything when the device lacks the runtime an artifact needs."""
    from toolkit.backends import DEFAULT_TARGET
    from toolkit.errors import install_command

    given = [str(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a == "--target"]
    needed = given or [DEFAULT_TARGET.get(Path(argv[i]).suffix.lower(), "") for i, u in uploads.items() if not u.tree]
    for target in dict.fromkeys(needed):
        if target in doctor.get("runtimes", {}) and not doctor["runtimes"][target]:
            raise RemoteError(f"{device.name} has no {target} runtime; install it there: {install_command(target)}")


def _upload(arg: Arg) -> Upload | None:
    if isinstance(arg, Folder):
        return folder_upload(Path(arg.path))
    return upload_of(arg) if isinstance(arg, Path) else None


def _local(arg: Arg) -> str:
    return str(arg.path) if isinstance(arg, (Folder, DevicePath)) else str(arg)


def remote_run(device: Device, argv: Sequence[Arg], *, say: Callable[[str], None] | None = None) -> RemoteRun:
    """Run `rtk <argv>` on `device` and collect its --json. A Path in `argv` is an artifact (or an image): it is
    copied with its companions into the device's cache unless already there, and the device's rtk gets its copy;
    a Folder is copied whole the same way; a DevicePath names a file or folder already on the device."""
    say = say or (lambda _msg: None)
    uploads = {i: u for i, a in enumerate(argv) if (u := _upload(a)) is not None}
    first = {u.folder: i for i, u in reversed(uploads.items())}    # one copy per content key, named by its first input
    say(f"asking {device.name} what it has")
    code, out, lines = _call(device, "probe", list(first))
    fault = _fault(device, code, lines, "asking the device")
    if fault and code in (1, 2, 3):     # its rtk exists but `rtk doctor` fails: not a gate, not a lost device
        said = str(fault).removeprefix(f"{device.name}: ")
        raise RemoteError(f"{device.name}: `{device.rtk} doctor` failed there ({said}); install rtk there: "
                          f"{DEVICE_INSTALL.format(version=MIN_DEVICE_RTK)} (or give the path of its rtk)")
    if fault:
        raise fault
    flags, _, doctor_json = out.decode(errors="replace").partition("\n")
    try:
        doctor = json.loads(doctor_json)
        info = device_info(device, doctor)
    except (ValueError, TypeError, AttributeError):
        raise RemoteError(f"{device.name}: its rtk doctor gave no readable JSON; install rtk there: "
                          f"{DEVICE_INSTALL.format(version=MIN_DEVICE_RTK)}") from None
    if _version(info.rtk) < _version(MIN_DEVICE_RTK):
        raise RemoteError(f"{device.name} runs rtk {info.rtk}, too old to read this host's artifact metadata; "
                          f"install a newer one there: {DEVICE_INSTALL.format(version=MIN_DEVICE_RTK)}")
    _check_runtimes(device, argv, uploads, doctor=doctor)
    for i, have in zip(first.values(), flags.strip()):
        if have != "1":
            upload = uploads[i]
            what = Path(_local(argv[i])).name or _local(argv[i])
            say(f"copying {what} ({upload.bytes / 2**20:.1f} MB) to {device.name}")
            code, _, lines = _call(device, "upload", [upload.folder, str(upload.bytes)], feed=tar_of(upload),
                                   say=say)
            fault = _fault(device, code, lines, f"copying {what}")
            if fault:
                raise fault
    remote = _distinct(uploads)
    args = [remote[i] if i in uploads else ON_DEVICE + a.path if isinstance(a, DevicePath) else str(a)
            for i, a in enumerate(argv)]
    local = sorted(((remote[i], _local(argv[i])) for i in uploads), key=lambda rl: -len(rl[0]))
    say(f"running rtk {argv[0]} on {device.name}")
    code, out, raw = _call(device, "run", [str(len(first)), *first, *args], say=say)   # entries checked again there
    lines = [_host_text(ln, local) for ln in raw]      # the device's errors name the host's files
    changed = [ln for ln in raw if ln.startswith(f"{MARK} error changed: ")]
    if changed:
        entry = changed[-1].rsplit(" ", 1)[-1]
        what = next((_local(argv[i]) for i in uploads if uploads[i].folder == entry), entry)
        raise RemoteError(f"{device.name}: its cached copy of {what} changed on the device after it was checked "
                          "(something there edited it); retry, and rtk copies it again", UNREACHABLE)
    if code not in (0, 1) or not out.strip():
        raise _fault(device, code, lines, f"running rtk {argv[0]}") or RemoteError(
            f"{device.name}: rtk {argv[0]} wrote no JSON result there", UNREACHABLE)
    try:
        result = json.loads(out, parse_constant=_not_a_number)
    except _NotStrict as exc:
        raise RemoteError(f"{device.name}: its rtk {info.rtk} wrote {exc} in its JSON result; rtk's JSON is strict: "
                          f"install a matching rtk there: {DEVICE_INSTALL.format(version=MIN_DEVICE_RTK)}") from None
    except ValueError:
        raise RemoteError(f"{device.name}: the result JSON arrived damaged; retry", UNREACHABLE) from None
    if not isinstance(result, dict):
        raise unreadable(info)
    return RemoteRun(result=_localize(result, local), device=info, exit_code=code,
                     message=_device_message(lines) if code else None)


def unreadable(device: DeviceInfo) -> RemoteError:
    """A device result of a shape this rtk cannot read (another rtk version): one line, exit 2."""
    return RemoteError(f"{device.name}: its rtk {device.rtk} wrote a result this rtk cannot read; install the same "
                       "rtk version there as here")


class _NotStrict(ValueError):
    pass


def _not_a_number(word: str) -> float:
    raise _NotStrict(word)


def _distinct(uploads: dict[int, Upload]) -> dict[int, str]:
    """The device path of each input: its copy in the cache, and for a second input with the same content and
    name (two identical a.png in two folders) a different spelling of the same file (<entry>/../<key>/a.png), so
    each of the device's paths maps back to one host path."""
    seen: dict[str, int] = {}
    out = {}
    for i, u in uploads.items():
        k = seen[u.remote] = seen.get(u.remote, -1) + 1
        out[i] = u.folder + f"/../{u.key}" * k + ("" if u.tree else "/" + u.files[-1][1])
    return out


def _host_text(text: str, paths: list[tuple[str, str]]) -> str:
    """A device line with its cache paths replaced by the host's paths (longest first)."""
    for remote, local in paths:
        text = text.replace(remote, local)
    return text


def _localize(value: object, paths: list[tuple[str, str]]) -> object:
    """The device's JSON with its cache paths (an input, or a file inside a copied folder) replaced by the host's."""
    if isinstance(value, dict):
        return {k: _localize(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_localize(v, paths) for v in value]
    if isinstance(value, str):
        for remote, local in paths:
            if value == remote or value.startswith(remote + "/"):
                return local + value[len(remote):]
    return value
