"""`rtk sweep RECIPE -o DIR`: every candidate of the recipe's sweep as an ordinary run, and the winner.

DIR/candidates/<id>/ is each candidate's run folder (recipe.yaml, artifacts, manifest.json, report.md). Stages
that candidates share are made once: DIR/.cache is a stage cache keyed exactly as a run keys its stages
(pipeline/cache.py). DIR/sweep.json, sweep.md, pareto.png and best.yaml are written when every candidate is
done; DIR/.rtk/sweep-state.json records each candidate as it finishes, so `--resume` after a crash or Ctrl-C
redoes none that finished (a candidate whose recipe changed since is run again; one whose Ray worker died is
tried again).

On Ray (toolkit.distributed) as many candidates run side by side as the cluster has CPUs, each stage a Ray task
with declared CPUs and memory and every timed stage alone on its machine; without Ray they run one after
another in this process. A cluster's nodes must see DIR and the recipe's data at the same paths (a shared
file system), as for any Ray job that writes files.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from toolkit.errors import SIGNALLED, GateFailed, RtkError, internal_error
from toolkit.io import FOLDER, check_io, write_json, write_text_atomic
from toolkit.pipeline.cache import StageCache
from toolkit.pipeline.candidates import Candidate, absolute, expand, leaders_first, show_values
from toolkit.pipeline.run import STATE as RUN_STATE, Executor, Run, check_machine, inline, prepare_output
from toolkit.pipeline.run import recipe_inputs
from toolkit.pipeline.sweep_report import CandidateResult, SweepResult, from_report, mark_pareto, new_result
from toolkit.pipeline.sweep_report import pick_winner, tied_with, write_results
from toolkit.progress import Progress, silent
from toolkit.recipe import Recipe, dump_recipe

STATE = ".rtk/sweep-state.json"
LOCK = ".rtk/sweep.lock"
STAGING = re.compile(r"^\..+\.[0-9a-f]{12}(\..+)?$")     # io.fresh_temp_name's hidden temporaries


def fingerprint(recipe: Recipe) -> str:
    return hashlib.sha256(dump_recipe(recipe).encode()).hexdigest()


def _records(output: Path) -> dict[str, CandidateResult]:
    """The candidates the sweep in `output` recorded, by id; none from a damaged state (a crash, an edit)."""
    import json

    try:
        return {r["id"]: CandidateResult.model_validate(r)
                for r in json.loads((output / STATE).read_text())["candidates"]}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def _refuse_replacing(output: Path, records: dict[str, CandidateResult], now: dict[str, str]) -> None:
    """--resume keeps what the sweep in `output` finished (`records`): a recipe whose candidates (`now`, fingerprints
    by id) would drop one of them, or run another recipe under its id, is refused (--force starts over)."""
    lost = [r for cid, r in records.items() if r.status != "crashed" and now.get(cid) != r.fingerprint]
    if lost:
        r = lost[0]
        raise RtkError(f"--resume: {output} holds {r.id} ({show_values(r.values)}), finished by its sweep, which "
                       f"this recipe {'changes' if r.id in now else 'no longer has'}; resume with the recipe in "
                       f"{output / 'recipe.yaml'}, pass --force to start over, or choose a new -o")


def _kept(output: Path, records: dict[str, CandidateResult], now: dict[str, str]) -> dict[str, CandidateResult]:
    """Candidates a previous sweep in `output` finished with the same recipe (crashed ones are tried again). One
    recorded in another folder (the sweep was copied or moved) runs again in its own: its unchanged stages are
    skipped, and its report then names the files where they are now."""
    import json

    kept = {cid: r for cid, r in records.items() if now.get(cid) == r.fingerprint and r.status != "crashed"
            and Path(r.folder) == output / "candidates" / cid}
    for r in kept.values():          # recorded before candidates carried their repeats: from their own report
        if r.status == "ok" and not r.p50_repeats:
            try:
                got = [float(v) for v in json.loads((Path(r.folder) / "report.json").read_text())["rows"][-1]
                       ["p50_repeats"]]
            except (OSError, ValueError, TypeError, KeyError, IndexError):
                continue
            r.p50_repeats = got if all(0 < v < float("inf") for v in got) else []     # no NaN into sweep.json
    return kept


def _prepare(output: Path, *, resume: bool, force: bool) -> None:
    if output.exists() and not output.is_dir():
        raise RtkError(f"output {output} is a file; give a folder for the sweep")
    if not output.parent.is_dir():
        raise RtkError(f"parent folder {output.parent} does not exist; create it first")
    if (output / LOCK).is_file():
        with _only_sweep(output):   # a running sweep is said first, whatever else this folder holds
            pass
    if output.is_dir() and any(output.iterdir()) and not (resume or force):
        raise RtkError(f"{output} already holds files (another sweep?); pass --resume to continue it, --force to "
                       "start over, or choose a new -o")
    if resume and output.is_dir() and any(output.iterdir()) and not (output / STATE).is_file() and not force:
        raise RtkError(f"{output} holds no sweep to resume (no {STATE}); choose a new -o or pass --force")
    try:
        (output / ".rtk").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RtkError(f"cannot create the sweep folder {output} ({exc.strerror or type(exc).__name__}); "
                       "choose another -o") from None


@contextlib.contextmanager
def _only_sweep(output: Path) -> Iterator[None]:
    """One `rtk sweep` per folder at a time."""
    try:
        handle = open(output / LOCK, "a")
    except OSError as exc:
        raise RtkError(f"cannot open the sweep's lock {output / LOCK} ({exc.strerror or type(exc).__name__}); remove "
                       "it, or choose another -o") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RtkError(f"another rtk sweep is running in {output}; wait for it or choose another -o") from None
        yield


def _clean_staging(folder: Path) -> None:
    """Remove the hidden temporaries a killed worker left in a run folder (it could not clean up after itself)."""
    for path in sorted(folder.rglob(".*"), reverse=True):
        if STAGING.match(path.name) and ".cache" not in path.parts:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _drop_stale(folder: Path, ids: set[str], notice: Callable[[str], None]) -> None:
    """Remove the run folders of candidates this recipe no longer has (a shorter value list on --resume), so the
    folder holds what sweep.json lists."""
    stale = sorted(p.name for p in folder.glob("c*") if p.is_dir() and re.fullmatch(r"c\d+", p.name)
                   and p.name not in ids) if folder.is_dir() else []
    for name in stale:
        shutil.rmtree(folder / name)
    if stale:
        notice(f"removed candidates/{', '.join(stale)}: this recipe's sweep has no such candidate any more")


def run_candidate(c: Candidate, folder: Path, *, cache: StageCache, executor: Executor, notes: list[str],
                  force: bool, progress: Progress) -> CandidateResult:
    """One candidate's run; a stage that fails or a worker that keeps dying is recorded, not raised."""
    from toolkit.distributed import Cancelled, WorkerDied

    def say(stage: str, done: int | None = None, total: int | None = None, **facts: Any) -> None:
        progress(f"{c.id}: {stage}", done, total, **facts)

    started = time.perf_counter()
    if folder.is_dir():
        _clean_staging(folder)          # what a killed sweep's workers left (the sweep lock: no one else writes here)
    prepare_output(folder, resume=True, force=force)
    if force:
        (folder / RUN_STATE).unlink(missing_ok=True)
    ctx = Run(recipe=absolute(c.recipe), root=folder, progress=say, cache=cache, executor=executor)
    common = dict(id=c.id, values=c.values, folder=str(folder), notes=notes, fingerprint=fingerprint(c.recipe))
    try:
        report = ctx.execute()
        status, error = "ok", None
    except (Cancelled, KeyboardInterrupt):
        raise
    except WorkerDied as exc:
        status, error, code = "crashed", str(exc), 3
    except (RtkError, GateFailed) as exc:
        status, error, code = "failed", str(exc), exc.exit_code
    except Exception as exc:
        if SIGNALLED:                   # the interrupt, as a library's error (a DataLoader worker killed with it)
            raise KeyboardInterrupt from exc
        status, error, code = "failed", internal_error(exc), 3
    if notes or status == "crashed":
        _clean_staging(folder)
    stages = dict(ran=[r.name for r in ctx.records if not r.skipped], reused=[r.name for r in ctx.records if r.reused],
                  earlier=[r.name for r in ctx.records if r.skipped and not r.reused],
                  seconds=time.perf_counter() - started)
    if status == "ok":
        return from_report(report, **common, **stages)
    return CandidateResult(status=status, error=error, exit_code=code, stage=ctx.current, **common, **stages)


def sweep(recipe: Recipe, output: Path, *, resume: bool = False, force: bool = False, address: str | None = None,
          use_ray: bool | None = None, source: str = "RECIPE", progress: Progress = silent,
          notice: Callable[[str], None] = lambda line: None) -> SweepResult:
    """Run every candidate of `recipe.sweep` into `output`; returns the SweepResult (truthy when a winner exists).

    `use_ray`: None uses Ray when it is installed, False never; `address` joins a running cluster."""
    from toolkit.distributed import RAY_EXTRA, ray_installed
    from toolkit.ray_address import check_address, resolve

    merged: list[str] = []
    candidates = expand(recipe, source, merged=merged)
    for line in merged:
        notice(line)
    for c in candidates:
        check_machine(c.recipe)
    if address is not None and use_ray is False:
        raise RtkError("--address joins a Ray cluster; drop --no-ray to use it")
    on_ray = use_ray is not False and ray_installed()
    if not on_ray and (address is not None or use_ray):
        flag = "--address" if address is not None else "--ray"
        raise RtkError(f"{flag} needs Ray, which is not installed; {RAY_EXTRA}")
    flag = "--address"
    if on_ray:
        address, flag = resolve(address)    # or RAY_ADDRESS's
    if address is not None:
        check_address(address, flag=flag)     # joined once (bounded), before anything is written
    output = Path(output).resolve()
    check_io(inputs=[p for c in candidates for p in recipe_inputs(c.recipe)], outputs=[("-o", output, FOLDER)])
    _prepare(output, resume=resume, force=force)
    with _only_sweep(output):
        if force:
            (output / STATE).unlink(missing_ok=True)
            shutil.rmtree(output / ".cache", ignore_errors=True)
        records = {} if force else _records(output)
        now = {c.id: fingerprint(c.recipe) for c in candidates}
        _refuse_replacing(output, records, now)
        kept = _kept(output, records, now)
        if not (output / STATE).is_file():
            write_json(output / STATE, {"candidates": []})     # from now on the folder holds a sweep to resume
        write_text_atomic(output / "recipe.yaml", dump_recipe(recipe))
        todo = [c for c in leaders_first(candidates) if c.id not in kept]
        _drop_stale(output / "candidates", {c.id for c in candidates}, notice)
        if use_ray is None and not on_ray:
            notice(f"Ray is not installed: the {len(todo)} candidates run one after another; {RAY_EXTRA} to run "
                   "them side by side")
        started = time.perf_counter()
        done = dict(kept)
        cache = StageCache(output / ".cache")

        def record(result: CandidateResult) -> None:
            done[result.id] = result
            write_json(output / STATE, {"candidates": [done[c.id] for c in candidates if c.id in done]})
            progress("candidates", len(done), len(candidates))

        progress("candidates", len(done), len(candidates))
        (output / "candidates").mkdir(exist_ok=True)
        common = dict(output=output, cache=cache, force=force, progress=progress, record=record)
        engine = _on_ray(todo, address=address, settings=recipe.sweep, **common) if on_ray else \
            _one_by_one(todo, **common)
        results = [done[c.id] for c in candidates]
        mark_pareto(results)
        winner = pick_winner(results, recipe.sweep.objective)
        result = new_result(recipe, engine=engine, seconds=time.perf_counter() - started, candidates=results,
                            winner=winner.id if winner else None, resumed=sorted(kept),
                            tied=tied_with(winner, results, recipe.sweep.objective))
        best = next((c.recipe for c in candidates if winner and c.id == winner.id), None)
        write_results(result, recipe, output, best, source)
    return result


def _one_by_one(todo: list[Candidate], *, output: Path, cache: StageCache, force: bool, progress: Progress,
                record: Callable[[CandidateResult], None]) -> dict[str, Any]:
    engine: dict[str, Any] = {"ray": None}
    for c in todo:
        record(run_candidate(c, output / "candidates" / c.id, cache=cache, executor=inline, notes=[], force=force,
                             progress=progress).model_copy(update={"engine": engine}))
    return engine


def _on_ray(todo: list[Candidate], *, address: str | None, settings, output: Path, cache: StageCache, force: bool,
            progress: Progress, record: Callable[[CandidateResult], None]) -> dict[str, Any]:
    """The candidates side by side on Ray, as many at a time as the cluster has CPUs."""
    from toolkit.distributed import RayPool, cluster, cluster_cpus

    with cluster(address, what="rtk sweep") as ray:
        pool = RayPool(ray, train_cpus=settings.train_cpus, retries=settings.retries)
        width = cluster_cpus(ray)
        joined = ray.get_runtime_context().gcs_address if address else None     # `auto` as the head it found
        engine = {"ray": ray.__version__, "address": joined, "cpus": width, "nodes": len(ray.nodes()),
                  "timing_node": pool.node}
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, width), thread_name_prefix="candidate") as threads:
            futures = []
            for c in todo:
                notes: list[str] = []
                futures.append(threads.submit(run_candidate, c, output / "candidates" / c.id, cache=cache,
                                              executor=pool.executor(notes), notes=notes, force=force,
                                              progress=progress))
            try:
                for future in concurrent.futures.as_completed(futures):
                    record(future.result().model_copy(update={"engine": engine}))
            except BaseException:
                for future in futures:
                    future.cancel()
                pool.cancel_all()
                raise
    return engine
