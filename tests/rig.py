"""The device rig: a torch-free venv built from this checkout, and a real OpenSSH server on 127.0.0.1.

The venv (core + openvino extra, as `pip install 'rtk[openvino]'` makes it on a device) lives in
.venv-device/ and is built once: its dependencies are keyed on pyproject.toml (a fresh build: ~25 s with a
warm pip cache), and rtk itself is reinstalled, without dependencies, when the sources change (~4 s).
`python tests/rig.py` builds it (.ci/run does). The server is Debian's sshd (.ci/run installs
openssh-server when it is missing; without it, tests/ssh_fallback.py on AsyncSSH) with its own host key, a
client key pair made here, and a client config whose aliases cover the faults: device-a (the device), device-stranger (a host key not in known_hosts, and a
config that would accept it), device-wrongkey (a key the server refuses) and device-down (a closed port).
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "toolkit", "recipes")
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _source_files() -> list[Path]:
    files = []
    for name in SOURCES:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def _pip(venv: Path, *args: str) -> None:
    log = venv.parent / "pip.log"
    with open(log, "a") as out:
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                               "--disable-pip-version-check", *args], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"pip install {' '.join(args)} failed in {venv}; see {log}")


def device_venv(root: Path = ROOT / ".venv-device") -> Path:
    """The torch-free venv's rtk, (re)built when pyproject.toml or the sources changed since the last build."""
    root.mkdir(exist_ok=True)
    venv = root / "venv"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        deps = _digest([ROOT / "pyproject.toml"])
        source = _digest(_source_files())
        if (venv / ".deps").is_file() and (venv / ".deps").read_text() == deps:
            if (venv / ".source").is_file() and (venv / ".source").read_text() == source:
                return venv / "bin" / "rtk"
            (venv / ".source").unlink(missing_ok=True)
            _install_rtk(venv, ["--no-deps", "--force-reinstall"])
        else:
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
            _install_rtk(venv, [])
            (venv / ".deps").write_text(deps)
        (venv / ".source").write_text(source)
    return venv / "bin" / "rtk"


def _base_python() -> str:
    """The interpreter under the current one (a venv's python makes a venv on the base anyway)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _install_rtk(venv: Path, flags: list[str]) -> None:
    """pip install a clean copy of the sources (an in-tree build would leave build/ and reuse stale files)."""
    with tempfile.TemporaryDirectory(prefix="rtk-src-") as tmp:
        for name in SOURCES:
            src = ROOT / name
            (shutil.copy2 if src.is_file() else shutil.copytree)(src, Path(tmp) / name)
        _pip(venv, *flags, f"{tmp}[openvino]")


@dataclass
class SshRig:
    """A running SSH server and a client config for it; `alias` is the device, the other aliases its faults."""

    root: Path
    config: Path
    port: int
    process: subprocess.Popen
    log: Path
    home: Path                   # $HOME of its sessions: the device's ~/.cache/rtk is under it
    server: str                  # "openssh" or "asyncssh"
    rtk: Path | None = None      # the device's rtk (the torch-free venv's), also on its sessions' PATH
    alias: str = "device-a"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def drop_connections(self) -> None:
        """Cut every open connection from the server side, as a crashed link or a rebooting device would."""
        if self.server == "asyncssh":
            self.process.send_signal(signal.SIGUSR1)
            return
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True)
        for pid in out.stdout.split():      # sshd's per-connection processes
            os.kill(int(pid), signal.SIGKILL)


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv: list[str], log: Path, ready: str) -> tuple[subprocess.Popen, str | None]:
    """Start a server and wait for its `ready` line (returned), or for its exit (None: e.g. its port was taken)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen: list[str] = []
    done = threading.Event()

    def pump() -> None:                    # keep reading, or a full pipe would block the server
        with open(log, "a") as out:
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if ready in line and not seen:
                    seen.append(line)
                    done.set()
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    done.wait(timeout=30)
    return proc, (seen[0] if seen and proc.poll() is None else None)


def _openssh(root: Path, user: str, env: str, log: Path) -> tuple[subprocess.Popen, int]:
    for _ in range(5):
        port = _free_port()
        config = root / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1", f"Port {port}", f"HostKey {root / 'host_ed25519'}",
            f"PidFile {root / 'sshd.pid'}", f"AuthorizedKeysFile {root / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password", f"AllowUsers {user}",
            "MaxStartups 50", "MaxSessions 50", "LogLevel VERBOSE", f"SetEnv {env}", ""]))
        proc, line = _launch([SSHD, "-D", "-e", "-f", str(config)], log, "Server listening on")
        if line:
            return proc, port
    raise RuntimeError(f"sshd did not start; see {log}")


def _asyncssh(root: Path, home: Path, path: str, log: Path) -> tuple[subprocess.Popen, int]:
    proc, line = _launch([sys.executable, str(Path(__file__).with_name("ssh_fallback.py")), str(root / "host_ed25519"),
                          str(root / "authorized_keys"), str(home), path], log, "listening ")
    if not line:
        raise RuntimeError(f"the AsyncSSH server did not start; see {log}")
    return proc, int(line.split()[1])


def start_sshd(root: Path, *, rtk: Path | None = None) -> SshRig:
    """An SSH server on 127.0.0.1 (a free port) for the current user, with keys, known_hosts and a client config:
    OpenSSH's sshd where installed (RTK_TEST_SSHD=asyncssh forces the fallback), else AsyncSSH. Its sessions get
    HOME=root/home (so the device's cache stays in the test's folder) and, with `rtk`, that folder first on
    PATH, as on a device where rtk is installed."""
    root.mkdir(parents=True, exist_ok=True)
    user = getpass.getuser()
    home = root / "home"
    home.mkdir(exist_ok=True)
    host_pub = _keygen(root / "host_ed25519")
    (root / "authorized_keys").write_text(_keygen(root / "id_ed25519") + "\n")
    _keygen(root / "id_other")
    log = root / "sshd.log"
    path = f"{f'{rtk.parent}:' if rtk else ''}/usr/local/bin:/usr/bin:/bin"
    server = "openssh" if Path(SSHD).is_file() and os.environ.get("RTK_TEST_SSHD") != "asyncssh" else "asyncssh"
    if server == "openssh":
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)    # sshd's privilege separation folder
        proc, port = _openssh(root, user, f"HOME={home} PATH={path}", log)
    else:
        proc, port = _asyncssh(root, home, path, log)
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    (root / "empty_known_hosts").write_text("")
    down = _free_port()
    common = ["  HostName 127.0.0.1", f"  User {user}", "  IdentitiesOnly yes", "  IdentityAgent none",
              "  GlobalKnownHostsFile /dev/null"]
    client = root / "ssh_config"
    client.write_text("\n".join([
        "Host device-a", f"  Port {port}", f"  IdentityFile {root / 'id_ed25519'}",
        f"  UserKnownHostsFile {root / 'known_hosts'}", *common,
        "Host device-stranger", f"  Port {port}", f"  IdentityFile {root / 'id_ed25519'}",
        f"  UserKnownHostsFile {root / 'empty_known_hosts'}", "  StrictHostKeyChecking accept-new", *common,
        "Host device-wrongkey", f"  Port {port}", f"  IdentityFile {root / 'id_other'}",
        f"  UserKnownHostsFile {root / 'known_hosts'}", *common,
        "Host device-down", f"  Port {down}", f"  IdentityFile {root / 'id_ed25519'}",
        f"  UserKnownHostsFile {root / 'known_hosts'}", *common,
        "Host 127.0.0.1", f"  IdentityFile {root / 'id_ed25519'}", f"  UserKnownHostsFile {root / 'known_hosts'}",
        "  IdentitiesOnly yes", "  IdentityAgent none", "  GlobalKnownHostsFile /dev/null", ""]))
    return SshRig(root=root, config=client, port=port, process=proc, log=log, home=home, server=server, rtk=rtk)


if __name__ == "__main__":
    print(device_venv())
