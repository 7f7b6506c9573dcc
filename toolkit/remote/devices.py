"""Jobs on several devices: different devices in parallel, one job per device at a time.

Across hosts the device itself serialises timing jobs (remote.sh holds <cache>/device.lock for every copy and
run); `device_slot` does the same for the threads of one process, so they queue here instead of holding ssh
connections open on the device. Anything that times on a device or a node (a recipe's bench stage, a sweep)
takes its slot through these two functions.
"""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

T = TypeVar("T")
_SLOTS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


@contextmanager
def device_slot(key: str) -> Iterator[None]:
    """Hold device `key` (its SSH destination, or a node's name) for one job within this process."""
    with _GUARD:
        slot = _SLOTS.setdefault(key, threading.Lock())
    with slot:
        yield


def on_devices(jobs: Mapping[str, tuple[str, Callable[[], T]]]) -> dict[str, T]:
    """Run `jobs` ({name: (device key, job)}): jobs on different devices in parallel, jobs on one device one after
    another (device_slot). Returns {name: result} once every job has ended; the first failure is raised then.
    Ctrl-C asks every running device job to stop (toolkit.remote.channel.stop_all), waits for them to clean up
    on their devices, and is re-raised."""
    from toolkit.remote.channel import STOPPING, stop_all

    def held(key: str, job: Callable[[], T]) -> T:
        with device_slot(key):
            return job()

    if len(jobs) == 1:
        (name, (key, job)), = jobs.items()
        return {name: held(key, job)}
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="rtk-device") as pool:
        futures = {name: pool.submit(held, key, job) for name, (key, job) in jobs.items()}
        try:
            wait(futures.values())
        except KeyboardInterrupt:
            stop_all()
            for f in futures.values():
                f.cancel()
            wait(futures.values())
            STOPPING.clear()
            raise
        return {name: f.result() for name, f in futures.items()}


def reach_all(devices: Iterable) -> None:
    """Refuse, before any stage, a recipe with a device that does not answer: `ssh DEST true` to every device, in
    parallel; a failure is the first such device's one line (exit 4 unreachable, 2 something to fix), so no stage
    runs for a result that could not be finished."""
    from toolkit.remote.channel import UNREACHABLE, RemoteError, _fault, ssh_command

    def answer(device) -> RemoteError | None:
        try:
            done = subprocess.run([*ssh_command(device), "true"], stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=device.connect_timeout + 20)
        except subprocess.TimeoutExpired:
            return RemoteError(f"{device.name}: unreachable (no answer to ssh within {device.connect_timeout + 20} s)",
                               UNREACHABLE)
        lines = done.stderr.decode(errors="replace").splitlines()
        return _fault(device, done.returncode, lines, "checking that it answers")

    devices = list(devices)
    if not devices:
        return
    with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="rtk-reach") as pool:
        faults = [f for f in pool.map(answer, devices) if f is not None]
    if faults:
        raise faults[0]
