"""`run(recipe, output)`: the run folder, the stage cache, the stages in order, the manifest and the report.

Stages whose configuration and input hashes are unchanged since the last run in the same folder are
skipped (state in `<output>/.rtk/state.json`), so an interrupted or edited run resumes where it can.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from toolkit import __version__
from toolkit.errors import RtkError
from toolkit.io import now_iso, sha256_file, write_json, write_text_atomic
from toolkit.progress import Progress, silent
from toolkit.recipe import Recipe, dump_recipe

STATE = ".rtk/state.json"


class StageRecord(BaseModel):
    name: str
    seconds: float
    skipped: bool
    outputs: dict[str, str]


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


@dataclass
class Run:
    """One pipeline run in one folder: the stage cache and the records of what ran."""

    recipe: Recipe
    root: Path
    progress: Progress = silent
    records: list[StageRecord] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()       # stages of different devices finish in parallel threads
        state = self.root / STATE
        self.state: dict[str, Any] = json.loads(state.read_text()) if state.is_file() else {}

    def say(self, message: str) -> None:
        self.progress(message)

    def inputs(self) -> list[Path]:
        """Files and folders the recipe names (not the ones the run makes)."""
        data, source = self.recipe.data, self.recipe.model.source
        named = [data.root, data.calibration, data.validation, Path(source) if Path(source).suffix else None]
        return [Path(p) for p in named if p is not None]

    def stage(self, name: str, config: Any, inputs: list[Path], outputs: list[Path], fn: Callable[[], Any]) -> Any:
        """Run `fn` unless a previous run had the same config and inputs and its outputs are intact."""
        key = hashlib.sha256(json.dumps({"config": config, "inputs": _hash_inputs(inputs), "rtk": __version__},
                                        sort_keys=True, default=str).encode()).hexdigest()
        entry = self.state.get(name)
        if entry and entry["key"] == key and _hash_inputs(outputs) == entry["outputs"] and all(p.exists() for p in outputs):
            self.say(f"{name}: unchanged, skipped")
            self.records.append(StageRecord(name=name, seconds=0.0, skipped=True, outputs=entry["outputs"]))
            self.results[name] = entry["result"]
            return entry["result"]
        self.say(f"{name} …")
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        result_json = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        hashes = _hash_inputs(outputs)
        with self._lock:
            self.state[name] = {"key": key, "outputs": hashes, "result": result_json, "seconds": seconds}
            (self.root / ".rtk").mkdir(exist_ok=True)
            write_json(self.root / STATE, self.state)
            self.records.append(StageRecord(name=name, seconds=seconds, skipped=False, outputs=hashes))
            self.results[name] = result_json
        self.say(f"{name}: done in {seconds:.1f} s")
        return result_json


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
    if force:
        (root / STATE).unlink(missing_ok=True)


def check_machine(recipe: Recipe) -> None:
    """Refuse, before any stage, a recipe this machine cannot run: a validate.isa above this CPU, or a TensorRT
    engine without TensorRT and a GPU (compile.check_only asks for the CPU-side check alone)."""
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


def run(recipe: Recipe, output: Path, *, resume: bool = False, force: bool = False, progress: Progress = silent):
    """Run every stage of `recipe` into `output`; returns the Report (truthy when every gate passed)."""
    from toolkit.pipeline.report import build_report, write_report
    from toolkit.pipeline.stages import run_stages

    output = Path(output)
    check_machine(recipe)
    prepare_output(output, resume=resume, force=force)
    started = now_iso()
    ctx = Run(recipe=recipe, root=output, progress=progress)
    write_text_atomic(output / "recipe.yaml", dump_recipe(recipe))
    outcome = run_stages(ctx)
    report = build_report(recipe, outcome, ctx.records)
    write_report(report, output)
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
