"""`run(recipe, output)`: the run folder, the stage cache, the stages in order, the manifest and the report.

Stages whose configuration and input hashes are unchanged since the last run in the same folder are
skipped (state in `<output>/.rtk/state.json`), so an interrupted or edited run resumes where it can. A run
given a shared `StageCache` (a sweep's candidates) also takes a stage another run already made, and an
`executor` decides where each stage's work runs: in this process, or on a Ray worker (toolkit.distributed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from pydantic import BaseModel

from toolkit import __version__
from toolkit.errors import RtkError
from toolkit.io import (FOLDER, check_io, now_iso, remove_leftover_temps, sha256_file, write_json,
                        write_text_atomic)
from toolkit.pipeline.cache import StageCache, portable, rooted
from toolkit.progress import Progress, silent
from toolkit.recipe import Recipe, dump_recipe

STATE = ".rtk/state.json"
STATE_FORMAT = 2        # 2: paths inside the run folder kept as `<run>` (toolkit.pipeline.cache.portable)
HOLD_STAGE = "RTK_TEST_HOLD_STAGE"
LOCK = ".rtk/lock"


class StageRecord(BaseModel):
    name: str
    seconds: float
    skipped: bool
    outputs: dict[str, str]
    reused: bool = False        # taken from the shared stage cache: another run (a sweep's candidate) made it


class Executor(Protocol):
    """Runs one stage's work (`call`) and returns its result. `timing` names the machine a timed stage must have
    to itself ("node", or "device:<name>" for a stage that times on an SSH device); None for any other stage."""

    def __call__(self, name: str, call: Callable[[], Any], *, timing: str | None = None) -> Any:
        ...


def inline(name: str, call: Callable[[], Any], *, timing: str | None = None) -> Any:
    """The executor of a plain `rtk run`: every stage in this process, one after another."""
    return call()


def _hash_inputs(paths: list[Path]) -> dict[str, str]:
    """sha256 per input; a folder hashes the sorted (relative path, file hash) list of its files."""
    out = {}
    for path in paths:
        if path.is_dir():
            digest = hashlib.sha256()
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
            out[str(path)] = digest.hexdigest()
        elif path.is_file():
            out[str(path)] = sha256_file(path)
    return out


def json_sha256(value: Any) -> str:
    """sha256 of a JSON value, keys sorted: a stage's key, the run state's seal."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def stage_key(config: Any, inputs: list[Path], root: Path) -> str:
    """A stage's identity: its settings, the content of its inputs and rtk's version. Paths inside the run folder
    count by their place in it, so the same stage of two runs has one key (a sweep's cache relies on that)."""
    return json_sha256(portable({"config": config, "inputs": _hash_inputs(inputs), "rtk": __version__}, root))


def _hold_for_test(names: tuple[str, ...], hold: str) -> None:
    """For tests only: with RTK_TEST_HOLD_STAGE=NAME:READY, stage NAME (e.g. `bench`, or `c1/bench` for the run
    in folder c1) writes its process id to READY and waits to be killed or interrupted, once: a later attempt
    finds READY and goes on. So a fault lands mid-run, every time."""
    stage, _, ready = hold.rpartition(":")      # stage names hold colons (compile:openvino), READY does not
    if stage not in names or not ready or Path(ready).exists():
        return
    tmp = Path(f"{ready}.{os.getpid()}")
    tmp.write_text(str(os.getpid()))
    tmp.rename(ready)
    while True:
        time.sleep(0.05)


@dataclass(frozen=True)
class Done:
    """What one stage left: its state entry (key, output hashes, result, seconds) and its record."""

    entry: dict[str, Any]
    record: StageRecord


@dataclass
class Step:
    """One stage as a call that can run on another process: the skip check, the shared cache, the work, the
    hashes. Only `Done` comes back; the run's state is updated by the caller."""

    name: str
    config: Any
    inputs: list[Path]
    outputs: list[Path]
    fn: Callable[[], Any]
    root: Path
    previous: dict[str, Any] | None
    cache: StageCache | None
    hold: str = field(default_factory=lambda: os.environ.get(HOLD_STAGE, ""))

    def __call__(self) -> Done:
        _hold_for_test((self.name, f"{self.root.name}/{self.name}"), self.hold)
        key = stage_key(self.config, self.inputs, self.root)
        prev = self.previous
        if prev and prev["key"] == key and all(p.exists() for p in self.outputs) \
                and _hash_inputs(self.outputs) == prev["outputs"]:
            return Done(prev, StageRecord(name=self.name, seconds=0.0, skipped=True, outputs=prev["outputs"]))
        with self.cache.claim(key) if self.cache else nullcontext():
            if self.cache:
                hit = self.cache.get(key, self.root, self.outputs)
                if hit and _hash_inputs(self.outputs) == hit["outputs"]:
                    return Done(hit, StageRecord(name=self.name, seconds=0.0, skipped=True, outputs=hit["outputs"],
                                                 reused=True))
            started = time.perf_counter()
            result = self.fn()
            seconds = time.perf_counter() - started
            result_json = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
            hashes = _hash_inputs(self.outputs)
            entry = {"key": key, "outputs": hashes, "result": result_json, "seconds": seconds}
            if self.cache:
                self.cache.put(key, self.root, self.outputs, entry)
        return Done(entry, StageRecord(name=self.name, seconds=seconds, skipped=False, outputs=hashes))


def recipe_inputs(recipe: Recipe) -> list[Path]:
    """Files and folders the recipe names (not the ones the run makes)."""
    data, source = recipe.data, recipe.model.source
    calib_list = recipe.quantize.calib_list if recipe.quantize else None
    named = [data.root, data.calibration, data.validation, Path(source) if Path(source).suffix else None, calib_list]
    return [Path(p) for p in named if p is not None]


def load_state(root: Path, say: Progress = silent) -> dict[str, Any]:
    """The stages a previous run in `root` finished (their entries, paths under `root` again), or {} when there is
    no state or it cannot be trusted: damaged (a crash, an edit) or written by an older rtk, whose paths kept the
    folder's spelling of that time. The state carries the sha256 of its stages, so an edited result is never
    reported as measured. Those stages then run again, which is slower but never wrong."""
    path = root / STATE
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
        stages = state["stages"] if state.get("format") == STATE_FORMAT else None
        valid = isinstance(stages, dict) and state.get("sha256") == json_sha256(stages)
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        valid = False
    if not valid:
        say(f"{path} is damaged or from an older rtk: every stage runs again")
        return {}
    return rooted(stages, root)


@dataclass
class Run:
    """One pipeline run in one folder: the stage cache and the records of what ran."""

    recipe: Recipe
    root: Path
    progress: Progress = silent
    cache: StageCache | None = None
    executor: Executor = inline
    records: list[StageRecord] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    current: str | None = None      # the stage running now (or the one that failed)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()       # stages of different devices finish in parallel threads
        self.root = Path(os.path.abspath(self.root))     # one spelling of the folder for every path a stage keeps
        self.state: dict[str, Any] = load_state(self.root, self.progress)

    def __getstate__(self) -> dict[str, Any]:
        """What a stage's work needs on a worker process: no display, no executor, no lock."""
        return {**{k: v for k, v in self.__dict__.items() if k != "_lock"}, "progress": silent, "executor": inline}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def say(self, message: str) -> None:
        self.progress(message)

    def inputs(self) -> list[Path]:
        return recipe_inputs(self.recipe)

    def stage(self, name: str, config: Any, inputs: list[Path], outputs: list[Path], fn: Callable[[], Any], *,
              timing: str | None = None) -> Any:
        """Run `fn` unless a previous run had the same config and inputs and its outputs are intact (in this
        folder, or in the shared cache). `timing`: the stage times something (see `Executor`)."""
        self.current = name
        self.say(f"{name} …")
        step = Step(name=name, config=config, inputs=list(inputs), outputs=list(outputs), fn=fn, root=self.root,
                    previous=self.state.get(name), cache=self.cache)
        done = self.executor(name, step, timing=timing)
        record = done.record
        if record.reused:
            self.say(f"{name}: reused from the shared stage cache")
        elif record.skipped:
            self.say(f"{name}: unchanged, skipped")
        else:
            self.say(f"{name}: done in {record.seconds:.1f} s")
        with self._lock:
            self.state[name] = done.entry
            if not record.skipped or record.reused:
                (self.root / ".rtk").mkdir(exist_ok=True)
                stages = portable(self.state, self.root)
                write_json(self.root / STATE, {"format": STATE_FORMAT, "stages": stages, "sha256": json_sha256(stages)})
            self.records.append(record)
            self.results[name] = done.entry["result"]
        return done.entry["result"]

    def execute(self, started: str | None = None):
        """Every stage, then the report (the executor's "report" work): the Report."""
        from toolkit.pipeline.stages import run_stages

        started = started or now_iso()
        write_text_atomic(self.root / "recipe.yaml", dump_recipe(self.recipe))
        outcome = run_stages(self)
        self.current = "report"
        report = self.executor("report", lambda: finish(self, outcome, started))
        self.current = None
        return report


def prepare_output(root: Path, *, resume: bool, force: bool) -> None:
    """Refuse a folder holding another run unless --resume (reuse unchanged stages) or --force (re-run all);
    make the folder and its missing parents."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise RtkError(f"output {root} is a file; give a folder for the run")
    if root.is_dir() and any(root.iterdir()) and not (resume or force):
        raise RtkError(f"{root} already holds files (another run?); pass --resume to continue it, --force to redo "
                       "every stage, or choose a new -o")
    try:
        root.mkdir(parents=True, exist_ok=True)   # a run folder's parents (runs/) are made, as the replay hint assumes
    except OSError as exc:
        raise RtkError(f"cannot create the run folder {root} ({exc.strerror}); choose another -o") from None


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold `<root>/.rtk/lock` while a run writes the folder: a second `rtk run` on it (even with --force) is
    refused instead of rewriting the files the first one is timing. The lock is the kernel's (flock), so it is
    gone when the process ends, however it ends."""
    import fcntl

    if (root / ".rtk").exists() and not (root / ".rtk").is_dir():
        raise RtkError(f"{root / '.rtk'} is a file; rtk keeps the run's state in that folder: move it away")
    if (root / STATE).is_dir():
        raise RtkError(f"{root / STATE} is a folder; rtk keeps the run's state in that file: move it away")
    (root / ".rtk").mkdir(parents=True, exist_ok=True)
    handle = open(root / LOCK, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RtkError(f"{root} is being written by another rtk run ({holder}); wait for it to finish or "
                           "choose another -o") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


def check_machine(recipe: Recipe) -> None:
    """Refuse, before any stage, a recipe this machine cannot run: a validate.isa above this CPU, a TensorRT
    engine without TensorRT and a GPU (compile.check_only asks for the CPU-side check alone), or validate.shards
    with a RAY_ADDRESS that does not answer."""
    if recipe.validate_.shards:
        from toolkit.ray_address import check_address, resolve

        address, flag = resolve(None)
        if address is not None:
            check_address(address, flag=flag)
    if recipe.validate_.isa is not None:
        from toolkit.isa import check_tier

        check_tier(recipe.validate_.isa, field="validate.isa")
    if "tensorrt" in recipe.compile.targets and not recipe.compile.check_only:
        from toolkit.backends.tensorrt import import_tensorrt, require_gpu

        try:
            import_tensorrt()
            require_gpu()
        except RtkError as exc:
            raise RtkError(f"{exc}; or set compile.check_only: true to run only the CPU-side check") from None


def run(recipe: Recipe, output: Path, *, resume: bool = False, force: bool = False, progress: Progress = silent,
        cache: StageCache | None = None, executor: Executor = inline):
    """Run every stage of `recipe` into `output`; returns the Report (truthy when every gate passed)."""
    from toolkit.deploy import check_deploy_folder
    from toolkit.pipeline.stages import devices_of
    from toolkit.remote.devices import reach_all

    output = Path(output)
    check_machine(recipe)
    reach_all(devices_of(recipe).values())      # a device down fails now, not after the stages before its own
    check_io(inputs=recipe_inputs(recipe), outputs=[("-o", output, FOLDER)])
    prepare_output(output, resume=resume, force=force)
    if recipe.validate_.fast_decode:
        check_deploy_folder(output)
    with run_lock(output):
        remove_leftover_temps(output)       # a killed run's staging folders (nothing else writes here now)
        if force:
            (output / STATE).unlink(missing_ok=True)
        started = now_iso()
        return Run(recipe=recipe, root=output, progress=progress, cache=cache, executor=executor).execute(started)


def finish(ctx: Run, outcome, started: str):
    """The report and manifest of a run whose stages are done."""
    from toolkit.pipeline.report import build_report, write_report

    report = build_report(ctx.recipe, outcome, ctx.records)
    write_report(report, ctx.root)
    write_manifest(ctx, started, report)   # last, so its sha256s cover the report and plots of this run
    return report


def device_facts(results: dict[str, Any]) -> dict[str, dict]:
    """{device name: its device block (its own rtk doctor: host, CPU, ISA, OS, runtimes, rtk)} from the results of
    the stages that ran on devices (bench@NAME, validate@NAME)."""
    found: dict[str, dict] = {}
    for name, result in sorted(results.items()):
        device = name.partition("@")[2]
        if device and device not in found and result:
            first = result.get("device") or next((runs[0].get("device") for runs in result.values()
                                                  if isinstance(runs, list) and runs), None)
            if first:
                found[device] = first
    return found


def write_manifest(ctx: Run, started: str, report) -> Path:
    """sha256 of every input and output, versions, machine, recipe, seeds, stage times and the oneDNN tier each
    runtime's accuracy and latency were measured on."""
    from toolkit.doctor import doctor
    from toolkit.pipeline.report import isa_tiers

    machine = doctor()
    files = sorted(p for p in ctx.root.rglob("*") if p.is_file() and ".rtk" not in p.parts and p.name != "manifest.json")
    manifest = {
        "rtk": __version__,
        "started": started,
        "finished": now_iso(),
        "recipe": ctx.recipe.model_dump(mode="json", by_alias=True),
        "seeds": {"recipe": ctx.recipe.seed},
        "machine": {"cpu": machine.cpu.model_dump(), "gpu": machine.gpu, "python": machine.python,
                    "platform": machine.platform, "isa_tiers": machine.isa_tiers},
        "packages": machine.packages,
        "inputs": {k: v for k, v in _hash_inputs(ctx.inputs()).items()},
        "outputs": {str(p.relative_to(ctx.root)): sha256_file(p) for p in files},
        "stages": [r.model_dump() for r in ctx.records],
        "devices": device_facts(ctx.results),
        "measured_isa": {"accuracy": isa_tiers(report, "accuracy"), "latency": isa_tiers(report, "latency")},
    }
    path = ctx.root / "manifest.json"
    write_json(path, manifest)
    return path
