"""Ray, for `rtk sweep` and sharded validation only: imported lazily, so nothing else needs it installed.

- `cluster(address)`: an existing Ray instance if this process has one; else the cluster at `address` (or at
  RAY_ADDRESS, Ray's own convention, which `ray job submit` sets), or a local instance started small for this
  command (the machine's CPUs, no dashboard, a small object store, its files under /tmp, its idle workers kept
  for the next stage: `keep_workers`). An address that does not answer is one line, before anything is written
  (toolkit.ray_address). A local instance whose rtk was killed (SIGKILL leaves Ray's agents running) is stopped
  and removed at the next start.
- `map_tasks`: a function over jobs as Ray tasks with declared CPUs and memory, results in job order.
- `RayStages`: the executor of a sweep's runs (pipeline/run.py `Executor`): each stage is a Ray task with the
  CPUs and memory its kind declares (`NEEDS`), a stage whose worker dies is retried, and a timed stage has its
  machine to itself (`TimingSlots`).

The timing rule. A timed stage (bench; a latency-targeted prune) on a node asks Ray for every CPU of the timing
node (the driver's), so Ray schedules nothing beside it there, and takes the lock "node:<id>", so this sweep
times one artifact at a time per node: its latencies are those of a stand-alone `rtk bench`. A stage that times
on an SSH device (issue #19's `devices:`) passes `timing="device:<name>"`: it takes the lock of that name and
asks for no CPU here (the device does the work; the device side holds its own lock against other hosts), so
different devices time in parallel and each one times one artifact at a time.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from toolkit.errors import RtkError, internal_error
from toolkit.ray_address import check_address, ray_address_env, resolve

RAY_EXTRA = "pip install 'rtk[ray]'"
OBJECT_STORE_BYTES = 128 * 1024 ** 2
GB = 1024 ** 3


def import_ray(what: str):
    """The ray module, or one line naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise RtkError(f"{what} needs Ray, which is not installed; {RAY_EXTRA}") from None
    return ray


def ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


DRIVER_FILE = "rtk-driver.pid"


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    with contextlib.suppress(OSError):
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def _holding(folder: str) -> set[int]:
    """The processes with a file open under `folder` (Ray's agents keep their logs there open)."""
    pids = set()
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith(folder + "/"):
                pids.add(int(fd.split("/")[2]))
    return pids - {os.getpid()}


def _kill_holders(folder: str, seconds: float = 10.0) -> None:
    """SIGKILL the processes holding files under `folder` until none is left: a killed process keeps its files
    until the kernel has torn it down, and an agent that was starting may open its log after the first look."""
    deadline = time.monotonic() + seconds
    while (pids := _holding(folder)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def reap_stale(parent: str = "/tmp") -> list[str]:
    """Stop and remove the local instances whose rtk driver died without stopping them (SIGKILL leaves Ray's
    dashboard and runtime-env agents running with no parent). Only folders with a recorded driver that is gone
    are touched; another command's live instance never is. Returns the folders removed."""
    removed = []
    for folder in glob.glob(os.path.join(parent, "rtk-ray-*")):
        try:
            pid = int(open(os.path.join(folder, DRIVER_FILE)).read())
        except (OSError, ValueError):
            continue
        if not _dead(pid):
            continue
        _kill_holders(folder)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def keep_workers(cpus: int) -> dict[str, int]:
    """Keep a local instance's idle workers (one per CPU, one for timing: TIMING_ENV differs; any more for a minute).
    Ray stops one idle for 1 s once there are more than CPUs, and a new one imports torch and the runtimes again:
    56 worker starts in a sweep-demo on 2 CPUs, 4 with this (284 s, not 347-400 s, on an AMD EPYC Zen 5 VM)."""
    return {"num_workers_soft_limit": cpus + 1, "idle_worker_killing_time_threshold_ms": 60_000}


def _start_local(ray, cpus: int | None) -> str:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    reap_stale()
    temp = tempfile.mkdtemp(prefix="rtk-ray-", dir="/tmp")     # short: Ray's socket paths must fit in 107 bytes
    try:
        with open(os.path.join(temp, DRIVER_FILE), "w") as handle:
            handle.write(str(os.getpid()))
        n = cpus or os.cpu_count() or 1
        with _own_signal_handlers(), _ray_address(None):
            ray.init(num_cpus=n, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, _temp_dir=temp,
                     logging_level="ERROR", log_to_driver=False, namespace="rtk", _system_config=keep_workers(n))
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return temp


@contextlib.contextmanager
def _ray_address(value: str | None) -> Iterator[None]:
    """RAY_ADDRESS set to `value` (None: unset) for the block: Ray reads it before the address it is given."""
    saved = os.environ.get("RAY_ADDRESS")
    os.environ.pop("RAY_ADDRESS", None) if value is None else os.environ.__setitem__("RAY_ADDRESS", value)
    try:
        yield
    finally:
        os.environ.pop("RAY_ADDRESS", None) if saved is None else os.environ.__setitem__("RAY_ADDRESS", saved)


@contextlib.contextmanager
def _own_signal_handlers() -> Iterator[None]:
    """Keep rtk's SIGINT/SIGTERM handlers across `ray.init`, whose SIGTERM handler exits 15 with no clean-up."""
    main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def cluster(address: str | None = None, *, cpus: int | None = None, what: str = "this command") -> Iterator[Any]:
    """The ray module, connected: the instance this process already has, the cluster at `address`, or a local
    instance started for the block (and stopped after it). No `address`: RAY_ADDRESS's, if set."""
    address, flag = resolve(address)
    if address is not None:
        check_address(address, flag=flag)
    ray = import_ray(what)
    if ray.is_initialized():
        yield ray
        return
    temp = None
    try:
        if address is not None:
            try:
                with _own_signal_handlers(), _ray_address(ray_address_env(address)):
                    ray.init(address=address, logging_level="ERROR", log_to_driver=False, namespace="rtk")
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise RtkError(f"cannot join the Ray cluster at {address} ({first[:200]}); check --address") from None
        else:
            temp = _start_local(ray, cpus)
        yield ray
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


def cluster_cpus(ray) -> int:
    return int(ray.cluster_resources().get("CPU", 1))


def _cause(exc: BaseException) -> BaseException:
    """The exception a task raised, not Ray's wrapper with the worker's traceback in its text."""
    return getattr(exc, "cause", None) or exc


def map_tasks(fn: Callable[[Any], Any], jobs: Sequence[Any], *, cpus: float, memory_gb: float,
              on_done: Callable[[Any], None] | None = None, what: str = "this command") -> list:
    """`fn(job)` for every job as a Ray task (on a local instance started for the call if there is none), results
    in job order; `on_done(result)` as each one finishes. A task whose worker dies is retried by Ray."""
    with cluster(what=what) as ray:
        remote = ray.remote(fn).options(num_cpus=cpus, memory=int(memory_gb * GB), max_retries=2)
        refs = [remote.remote(job) for job in jobs]
        try:
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                if on_done:
                    on_done(ray.get(ready[0]))
            return ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            raise _cause(exc) from None
        except BaseException:
            for ref in refs:
                ray.cancel(ref)
            raise


@dataclass(frozen=True)
class Needs:
    """What one stage asks Ray for: CPUs (None: the sweep's train_cpus) and memory."""

    cpus: float | None
    memory_gb: float


NEEDS: dict[str, Needs] = {
    "data": Needs(1, 0.5), "model": Needs(1, 1.5), "finetune": Needs(None, 3), "prune": Needs(None, 3),
    "export": Needs(1, 2), "quantize": Needs(1, 3), "compile": Needs(1, 2), "check": Needs(1, 1),
    "validate": Needs(1, 2), "report": Needs(1, 1),
}
TIMING_MEMORY_GB = 2
# Ray starts its workers at niceness 15 so they yield to the raylet and to other processes; a timed stage runs in
# a worker at niceness 0, as a stand-alone `rtk bench` does, or a busy machine would slow it and not the other.
TIMING_ENV = {"env_vars": {"RAY_worker_niceness": "0"}}


class WorkerDied(Exception):
    """A stage's Ray worker died (killed, out of memory, its node lost) on every attempt."""


class Cancelled(Exception):
    """The sweep was interrupted while this stage ran; its task was cancelled."""


def _run_call(call: Callable[[], Any], cpus: float) -> tuple[bool, Any]:
    """A stage on a worker: (True, result) or (False, the error). rtk's own errors travel as themselves; any
    other becomes one line, since a library's exception may not survive pickling."""
    from toolkit.errors import GateFailed

    if "torch" in sys.modules:     # PyTorch kept to the CPUs declared (Ray sets OMP_NUM_THREADS for later imports)
        sys.modules["torch"].set_num_threads(max(1, int(cpus)))
    try:
        return True, call()
    except (RtkError, GateFailed) as exc:
        return False, exc
    except Exception as exc:
        return False, RuntimeError(internal_error(exc))


class TimingSlots:
    """One timed stage at a time per machine: a lock per key ("node:<id>" or "device:<name>")."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks[key]
        with lock:
            yield


class RayPool:
    """What a sweep's runs share on Ray: the task function, the timing slots and the tasks in flight."""

    def __init__(self, ray, *, train_cpus: int, retries: int) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.retries = ray, retries
        self.remote = ray.remote(_run_call)
        self.node = ray.get_runtime_context().get_node_id()
        node = next(n for n in ray.nodes() if n["NodeID"] == self.node)
        self.node_cpus = node["Resources"].get("CPU", 1.0)
        self.train_cpus = min(float(train_cpus), max(n["Resources"].get("CPU", 1.0) for n in ray.nodes() if n["Alive"]))
        self.on_node = NodeAffinitySchedulingStrategy(node_id=self.node, soft=False)
        self.slots = TimingSlots()
        self._inflight: set = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def options(self, name: str, timing: str | None) -> tuple[str | None, dict[str, Any]]:
        """(timing slot key or None, Ray task options) for stage `name`."""
        if timing == "node":
            return f"node:{self.node}", {"num_cpus": self.node_cpus, "memory": TIMING_MEMORY_GB * GB,
                                         "scheduling_strategy": self.on_node, "runtime_env": TIMING_ENV}
        if timing and timing.startswith("device:"):
            return timing, {"num_cpus": 0, "memory": int(0.5 * GB)}
        kind = "report" if name == "report" else name.split(":")[0]
        needs = NEEDS.get(kind, Needs(1, 2))
        cpus = self.train_cpus if needs.cpus is None else needs.cpus
        extra = {"scheduling_strategy": self.on_node} if kind == "report" else {}   # the manifest names this machine
        return None, {"num_cpus": cpus, "memory": int(needs.memory_gb * GB), **extra}

    def run(self, name: str, call: Callable[[], Any], timing: str | None, notes: list[str]) -> Any:
        """Run `call` as a task and wait for it; retry when its worker dies; raise the stage's own error."""
        slot, options = self.options(name, timing)
        errors = self.ray.exceptions
        died = (errors.WorkerCrashedError, errors.OutOfMemoryError, errors.NodeDiedError, errors.ObjectLostError)
        with self.slots.hold(slot) if slot else contextlib.nullcontext():
            for attempt in range(self.retries + 1):
                if self.stopping.is_set():
                    raise Cancelled(name)
                ref = self.remote.options(max_retries=0, **options).remote(call, options["num_cpus"])
                with self._lock:
                    self._inflight.add(ref)
                try:
                    ok, value = self.ray.get(ref)
                except errors.TaskCancelledError:
                    raise Cancelled(name) from None
                except died as exc:
                    if self.stopping.is_set():
                        raise Cancelled(name) from None
                    reason = type(exc).__name__
                    if attempt == self.retries:
                        raise WorkerDied(f"the Ray worker running {name} died ({reason}) on each of "
                                         f"{attempt + 1} attempt(s)") from None
                    notes.append(f"{name}: the Ray worker died ({reason}); retried")
                    continue
                finally:
                    with self._lock:
                        self._inflight.discard(ref)
                if ok:
                    return value
                raise value

    def executor(self, notes: list[str]):
        """The Executor of one run; `notes` collects its retries."""
        def execute(name: str, call: Callable[[], Any], *, timing: str | None = None) -> Any:
            return self.run(name, call, timing, notes)

        return execute

    def cancel_all(self) -> None:
        """Stop: no new task starts, every task in flight is cancelled (a KeyboardInterrupt in it, so its
        temporary files are removed as on Ctrl-C)."""
        self.stopping.set()
        with self._lock:
            refs = list(self._inflight)
        for ref in refs:
            self.ray.cancel(ref)
