"""The SSH transport to a device: ssh with rtk's rules, remote.sh's tasks (probe, upload, run) over it, and every
fault turned into one line.

Transport: the system OpenSSH client, not paramiko or asyncssh. The user's ~/.ssh/config (aliases, ProxyJump,
Match, ControlMaster), keys, agent, hardware keys and known_hosts then work exactly as in their shell, with no
code of ours; the libraries re-implement a subset (paramiko reads ssh_config but follows neither ProxyJump nor
Match) and would add a dependency to every install, while `ssh` is on every Linux and macOS host. rtk adds
BatchMode (no password or host-key prompt behind a progress bar) and StrictHostKeyChecking=yes (an unknown host
key is refused whatever the config says: connect once by hand and check it).

Failures are one line (RemoteError): exit 2 for what the user fixes (a bad DEST, an unknown or changed host
key, authentication refused, rtk, a tool or a runtime missing on the device, a device rtk too old, its disk
full), 4 when the device dropped out (unreachable, connection lost mid-run: a retry may succeed). Ctrl-C
(KeyboardInterrupt, exit 130 in the CLI) returns once the device stopped its job and removed its temporary
files. The device rtk's own failures keep its exit code and message, prefixed with the device's name.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import subprocess
import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import IO, Callable, Sequence

from toolkit.errors import RtkError

# The oldest device rtk this host works with: it reads ModelMeta as rtk writes it today and runs artifacts
# without torch. Raise it (with the package version) when ModelMeta gains a field or remote.sh changes.
MIN_DEVICE_RTK = "0.2.0"
DEVICE_INSTALL = "pip install 'rtk[openvino]>={version}'"
UNREACHABLE = 4
STOP_SECONDS = 30          # how long a stopped job may take to clean up on the device before ssh is killed
MARK = "rtk-remote:"


class RemoteError(RtkError):
    """A device fault, one line; `exit_code` 2 (fix something), 4 (device unreachable or lost), or the device's."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, kw_only=True)
class Device:
    """Where and how to run: an SSH destination, the rtk to run there, its cache folder, an ssh config."""

    dest: str                        # user@host, an alias from ~/.ssh/config, or ssh://user@host:port
    label: str = ""                  # the device's name in reports (default: dest)
    rtk: str = "rtk"                 # on the device's PATH, or a path (~/ or relative to the login folder)
    cache: str = "~/.cache/rtk"      # on the device (~/ allowed)
    ssh_config: Path | None = None   # ssh -F; default $RTK_SSH_CONFIG, else ssh's own (~/.ssh/config)
    connect_timeout: int = 10

    @property
    def name(self) -> str:
        return self.label or self.dest


_URI = re.compile(r"ssh://(?:(?P<user>[^@/:\s-][^@/:\s]*)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@/:\s\[\]-][^@/:\s\[\]]*)"
                  r"(?::(?P<port>\d{1,5}))?/?")     # no part may start with "-": ssh would read it as an option
_PLAIN = re.compile(r"(?:[^@/:\s]+@)?[A-Za-z0-9_.\[\]:%-]+")


def ssh_destination(dest: str) -> list[str]:
    """ssh arguments naming `dest`: `user@host`, an alias, or `ssh://user@host:port` (-p PORT user@host)."""
    if dest.startswith("ssh://"):
        match = _URI.fullmatch(dest)
        if match and (match["port"] is None or 0 < int(match["port"]) < 65536):
            host = match["host"].strip("[]")
            target = f"{match['user']}@{host}" if match["user"] else host
            return (["-p", match["port"]] if match["port"] else []) + [target]
    elif re.fullmatch(r"[^\[\]:]+:\d{1,5}", dest):        # scp's habit: user@host:port is not ssh's
        raise RemoteError(f"--remote {dest!r}: ssh takes no :port here; write ssh://{dest}")
    elif not dest.startswith("-") and _PLAIN.fullmatch(dest):
        return [dest]
    raise RemoteError(f"--remote {dest!r}: give an SSH destination as user@host, an alias from ~/.ssh/config, "
                      "or ssh://user@host:port")


def ssh_command(device: Device) -> list[str]:
    """ssh with the user's own setup plus rtk's four rules: never prompt, never accept an unknown host key, give up
    connecting after `connect_timeout` s, and notice a silent network drop within 15 s."""
    config = device.ssh_config or os.environ.get("RTK_SSH_CONFIG")
    return ["ssh", *(["-F", str(config)] if config else []),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={device.connect_timeout}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
            *ssh_destination(device.dest)[:-1], "--", ssh_destination(device.dest)[-1]]


SCRIPT = files("toolkit.remote").joinpath("remote.sh").read_text()   # the device side: probe, upload, run
_LIVE: set[subprocess.Popen] = set()    # the ssh processes of this process's device jobs, for `stop_all`
STOPPING = threading.Event()            # set by stop_all: no new device call starts until it is cleared


def stop_all() -> None:
    """Ask every device job of this process to stop (Ctrl-C while jobs run in other threads): each channel's stdin
    is closed, so the job on its device stops its rtk and cleans up; the threads then return as usual."""
    STOPPING.set()
    for proc in list(_LIVE):
        try:
            proc.stdin.close()
        except (OSError, ValueError):
            pass


def _call(device: Device, task: str, args: Sequence[str], *, feed: Callable[[IO[bytes]], None] | None = None,
          say: Callable[[str], None] | None = None) -> tuple[int, bytes, list[str]]:
    """Run remote.sh's `task` on the device with `args`; (exit code, stdout, stderr lines). `feed` writes its stdin
    once the device says it is receiving (it holds the lock by then).

    ssh runs in its own session so a Ctrl-C reaches only rtk, which then closes the channel's stdin: the job on
    the device stops its rtk, cleans up and exits, and only then does this return (or re-raise)."""
    if STOPPING.is_set():
        raise RemoteError(f"{device.name}: stopped (interrupted) before {task}", UNREACHABLE)
    remote = shlex.join(["sh", "-c", SCRIPT, "rtk-remote", task, device.cache, device.rtk, *args])
    try:
        proc = subprocess.Popen([*ssh_command(device), remote], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        if exc.errno != errno.E2BIG:
            raise
        raise RemoteError(f"{device.name}: too many inputs for one remote call ({len(args)} arguments, "
                          f"{len(remote) // 1024} kB: over this system's limit for a command line); split them over "
                          "several calls (a few hundred photos each)") from None
    _LIVE.add(proc)
    lines: list[str] = []
    out = bytearray()
    receiving = threading.Event()

    def read_err() -> None:
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if line == f"{MARK} receiving":
                receiving.set()
            elif say and line.startswith(MARK) and " error " not in line:
                say(line[len(MARK):].strip())
        receiving.set()

    readers = [threading.Thread(target=read_err, daemon=True),
               threading.Thread(target=lambda: out.extend(proc.stdout.read()), daemon=True)]
    for t in readers:
        t.start()
    try:
        if feed is not None:
            receiving.wait()
            try:
                if proc.poll() is None:
                    feed(proc.stdin)
                proc.stdin.close()
            except (BrokenPipeError, ValueError):    # the device stopped reading (its stderr says why), or stop_all
                pass
        for t in readers:
            t.join()
        _, marked, after = bytes(out).partition(f"{MARK} output\n".encode())   # remote.sh's stdout starts there
        return proc.wait(), after if marked else bytes(out), lines
    except BaseException:
        _stop(proc)
        raise
    finally:
        _LIVE.discard(proc)
        if not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:
                pass


def _stop(proc: subprocess.Popen) -> None:
    """Close the channel's stdin (the device job stops and cleans up) and wait for it; kill ssh if it hangs."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_SSH_FAULTS = (  # (what ssh prints, exit code, what to tell the user)
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", 2, "{n}: its host key changed since you recorded it (a reinstalled "
     "device, or an attack); check it, then replace it with `ssh-keygen -R HOST` and `ssh {d}`"),
    ("Host key verification failed", 2, "{n}: its host key is not in your known_hosts and rtk never accepts an "
     "unknown key; connect once with `ssh {d}`, check the fingerprint, then retry"),
    ("Permission denied", 2, "{n}: authentication refused; check the user and key with `ssh {d} true` (rtk uses "
     "your ssh config, keys and agent, and never asks for a password)"),
    ("Too many authentication failures", 2, "{n}: authentication refused (too many keys offered); set "
     "IdentitiesOnly and IdentityFile for it in ~/.ssh/config"),
    ("Could not resolve hostname", UNREACHABLE, "{n}: unknown host name; check the name or its ~/.ssh/config entry"),
    ("Connection refused", UNREACHABLE, "{n}: unreachable (connection refused: no SSH server on that port)"),
    ("timed out", UNREACHABLE, "{n}: unreachable (connection timed out); check the device is on and on the network"),
    ("No route to host", UNREACHABLE, "{n}: unreachable (no route to host); check the network"),
    ("Network is unreachable", UNREACHABLE, "{n}: unreachable (network is unreachable); check the network"),
)


def _device_message(lines: list[str]) -> str | None:
    """The device rtk's own one-line error: its `error:` line, else the text of a usage-error box."""
    said = [ln[len("error:"):].strip() for ln in lines if ln.startswith("error:")]
    if said:
        return said[-1]
    boxed = " ".join(ln.strip("│ ") for ln in lines if ln.startswith("│"))
    return " ".join(boxed.split()) or next((ln.strip() for ln in reversed(lines) if ln.strip()), None)


def _fault(device: Device, code: int, lines: list[str], during: str) -> RemoteError | None:
    """The one-line error for a failed ssh call, or None when it did not fail."""
    n, d = device.name, device.dest
    text = "\n".join(lines)
    script = [ln[len(MARK):].strip()[len("error "):] for ln in lines if ln.startswith(f"{MARK} error ")]
    full = next((s[len("no space: "):] for s in script if s.startswith("no space: ")), None)
    if full or "No space left on device" in text:
        return RemoteError(f"{n}: the device's disk is full ({full or 'while ' + during}, in {device.cache}); free "
                           "space there and retry; nothing was left half-written")
    if code == 255:
        config = next((ln.strip() for ln in lines if "bad configuration option" in ln.lower()
                       or "Can't open user config file" in ln), None)
        if config:
            return RemoteError(f"{n}: ssh cannot read its config ({config[:200]}); fix it, then check with "
                               f"`ssh {d} true`")
        for words, exit_code, message in _SSH_FAULTS:
            if words in text:
                return RemoteError(message.format(n=n, d=d), exit_code)
        last = next((ln.strip()[:200] for ln in reversed(lines) if ln.strip()), "")
        return RemoteError(f"{n}: connection lost while {during}{f' ({last})' if last else ''}; the device stops "
                           "the job when it sees the connection drop; retry", UNREACHABLE)
    if code in (126, 127):
        return RemoteError(f"{n}: cannot run {device.rtk!r} there; install rtk on the device: "
                           f"{DEVICE_INSTALL.format(version=MIN_DEVICE_RTK)} (or give the path of its rtk)")
    if script and script[-1].startswith("cache: "):
        return RemoteError(f"{n}: {script[-1][len('cache: '):]}; make {device.cache} there writable by the ssh user "
                           "(or free space), then retry")
    if script and script[-1].startswith("tools"):
        return RemoteError(f"{n}: the device lacks{script[-1][len('tools'):]}; install them there "
                           "(Debian/Ubuntu: apt-get install tar coreutils findutils util-linux gawk)")
    if script:
        return RemoteError(f"{n}: {script[-1]} while {during}; nothing was left half-written, retry", UNREACHABLE)
    if code in (130, 143):
        return RemoteError(f"{n}: the job was stopped on the device while {during}", UNREACHABLE)
    if code != 0:
        return RemoteError(f"{n}: {_device_message(lines) or f'exit code {code}'}",
                           code if code in (1, 2, 3) else UNREACHABLE)
    return None

