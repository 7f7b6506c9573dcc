"""Which Ray cluster a command joins, and whether it answers, before anything is written.

`--address host:port` (or ray://host:port) is a cluster's head; `auto` is the cluster RAY_ADDRESS names, else the
one this machine runs; `local` a new local instance. Without --address, RAY_ADDRESS (Ray's own convention, which
`ray job submit` sets for its driver) names the cluster, else rtk starts a local instance
(toolkit.distributed.cluster). An address is checked in a bounded time: a TCP connect, then one join in a child
process, since a port that answers but is no Ray head makes `ray.init` retry for minutes.
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

from toolkit.errors import RtkError


def resolve(address: str | None) -> tuple[str | None, str]:
    """The cluster to join and the setting that named it: `address` (--address), else RAY_ADDRESS (Ray's
    convention: `ray job submit` sets it for the driver), which `auto` also reads first; None: start a local one."""
    named = os.environ.get("RAY_ADDRESS", "").strip()
    if named and (address is None or (address == "auto" and named != "auto")):
        return named, "RAY_ADDRESS"
    return address, "--address"


def ray_address_env(address: str | None) -> str | None:
    """RAY_ADDRESS while Ray joins `address` (None: starts a local instance): Ray reads RAY_ADDRESS before the
    address it is given, and a blank one is an error to it. None: unset."""
    if address == "auto":
        return os.environ.get("RAY_ADDRESS", "").strip() or None
    return address


def check_address(address: str, timeout: float = 5.0, flag: str = "--address") -> None:
    """Refuse a cluster address (named by `flag`) whose host:port does not accept a connection (Ray would wait for
    a minute) or that no Ray head answers at."""
    if address == "local":          # a new local instance: nothing to reach
        return
    if address == "auto":           # the cluster this machine runs (RAY_ADDRESS, read first, is resolve's)
        _probe_join(address, flag)
        return
    if not address.strip():
        raise RtkError("--address is empty; give host:port of the Ray head, e.g. 10.0.0.5:6379, or drop it to start "
                       "a local instance")
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise RtkError(f"{flag} {address!r}: give host:port of the Ray head, e.g. 10.0.0.5:6379 or "
                       "ray://10.0.0.5:10001")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__)
        raise RtkError(f"the Ray cluster at {address} ({flag}) does not answer ({reason}); check {flag}, or start "
                       "one with `ray start --head`") from None
    _probe_join(address, flag)


JOIN_TIMEOUT_S = 30.0
_JOINED: set[str] = set()


def _env(address: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_USAGE_STATS_ENABLED": "0"}
    named = ray_address_env(address)
    return env | {"RAY_ADDRESS": named} if named else env


def _probe_join(address: str, flag: str = "--address") -> None:
    """Join `address` once in a child process, bounded by JOIN_TIMEOUT_S, its output captured: a port that
    answers TCP but is no Ray head makes `ray.init` retry for minutes and print a line per retry."""
    import subprocess

    from toolkit.isa import fresh_python      # the child imports Ray, not a ray/ folder in the working directory

    if address in _JOINED:
        return
    try:
        done = subprocess.run([*fresh_python("toolkit.ray_address"), address], capture_output=True, text=True,
                              timeout=JOIN_TIMEOUT_S, env=_env(address))
    except subprocess.TimeoutExpired:
        raise RtkError(f"no Ray head answered at {address} ({flag}) within {JOIN_TIMEOUT_S:.0f} s (the port is open but "
                       "speaks something else?); give the GCS port of `ray start --head` (6379) or "
                       "ray://host:10001") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        last = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "no output")
        if address == "auto" and "Could not find any running Ray instance" in last:
            undo = "drop --address" if flag == "--address" else "unset RAY_ADDRESS"
            raise RtkError(f"{flag} auto: no Ray cluster runs on this machine; start one with `ray start --head`, "
                           f"or {undo} to start a local instance for this command")
        raise RtkError(f"cannot join the Ray cluster at {address} ({last[:200]}); check {flag}")
    _JOINED.add(address)


if __name__ == "__main__":      # the join probe (`_probe_join`): join the cluster at argv[1] and leave
    import ray

    ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False, namespace="rtk")
    ray.shutdown()
