"""The commands over whole pipelines: run, sweep, demo, recipe schema, recipe check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from toolkit import console as ui
from toolkit.cli.app import JsonOpt, app, command, emit_json, recipe_app
from toolkit.errors import GateFailed, RtkError


def _run_recipe(recipe, output: Path, *, resume: bool, force: bool, json: Path | None) -> None:
    from toolkit.pipeline import run as run_pipeline

    with ui.progress(f"running {recipe.name}") as progress:
        report = run_pipeline(recipe, output, resume=resume, force=force, progress=progress)
    ui.show_report(report)
    ui.ok(f"report: {output / 'report.md'} · manifest: {output / 'manifest.json'}")
    emit_json(json, report)
    if not report:
        raise GateFailed("gate failed: " + "; ".join(str(g) for g in report.gates if not g.passed))


def _json_not_a_recipe_input(loaded, json: Path | None) -> None:
    """--json against the files and folders the recipe names (the command line's own paths are checked already)."""
    from toolkit.io import check_io
    from toolkit.pipeline.run import recipe_inputs

    if json is not None:
        check_io(inputs=recipe_inputs(loaded), outputs=[("--json", json, (".json",))])


def _json_not_in_state(json: Path | None, output: Path, parts: tuple[str, ...]) -> None:
    """--json may not land in the folders rtk keeps inside -o (the run state, the stage cache, a sweep's
    candidates), where it would replace a file that --resume or a candidate's report reads."""
    from toolkit.io import inside

    for part in parts if json is not None else ():
        if inside(json, output / part):
            raise RtkError(f"--json {json} is inside {output / part}, where rtk keeps its own files (--resume "
                           "reads them); choose a path outside it")


def _run_folder(kw: dict) -> list:
    """A run folder and the files every run writes in it (an input may not live there; --json may not be one)."""
    from toolkit.io import FOLDER

    root = kw["output"]
    return [("-o", root, FOLDER), *[("-o", root / name, ()) for name in RUN_FILES]]


RUN_FILES = ("report.json", "report.md", "manifest.json", "recipe.yaml")
SWEEP_FILES = ("sweep.json", "sweep.md", "pareto.png", "best.yaml", "recipe.yaml")


def _sweep_folder(kw: dict) -> list:
    """A sweep folder and the files every sweep writes in it (the recipe may not live there; --json may not be one)."""
    from toolkit.io import FOLDER

    root = kw["output"]
    return [("-o", root, FOLDER), *[("-o", root / name, ()) for name in SWEEP_FILES]]


@app.command("run")
@command(writes={"output": _run_folder})
def run_(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder (artifacts, manifest, report).")],
    resume: Annotated[bool, typer.Option(help="Continue a run in this folder, skipping unchanged stages.")] = False,
    force: Annotated[bool, typer.Option(help="Redo every stage in a folder that holds another run.")] = False,
    json: JsonOpt = None,
) -> None:
    """Run a recipe: every stage, then validate, bench, gates and the report. Exit 0 pass, 1 gate failed, 2 bad input."""
    from toolkit.recipe import load_recipe

    if resume and force:
        raise RtkError("give --resume (keep unchanged stages) or --force (redo every stage), not both")
    loaded = load_recipe(recipe)
    if loaded.sweep is not None:
        raise RtkError(f"{recipe} has a sweep: block; run it with `rtk sweep {recipe} -o DIR` (or remove the block "
                       "to run the recipe once)")
    _json_not_a_recipe_input(loaded, json)
    _json_not_in_state(json, output, (".rtk", "deploy"))
    _run_recipe(loaded, output, resume=resume, force=force, json=json)


@app.command()
@command(writes={"output": _run_folder})
def demo(
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder.")] = Path("runs/demo"),
    force: Annotated[bool, typer.Option(help="Redo every stage instead of reusing unchanged ones.")] = False,
    json: JsonOpt = None,
) -> None:
    """The built-in default: synthetic data -> train -> prune -> INT8 -> OpenVINO -> validate, bench, report."""
    from toolkit.recipe import demo_recipe

    try:
        output.parent.mkdir(parents=True, exist_ok=True)     # runs/ on a fresh clone
    except OSError as exc:
        raise RtkError(f"cannot create {output.parent} ({exc.strerror}); choose another -o") from None
    _json_not_in_state(json, output, (".rtk", "deploy"))
    _run_recipe(demo_recipe(), output, resume=not force, force=force, json=json)


@app.command()
@command(writes={"output": _sweep_folder})
def sweep(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML with a sweep: block (see recipes/sweep-demo.yaml).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Sweep folder (a run folder per candidate, "
                                                                 "sweep.md, pareto.png, best.yaml).")],
    resume: Annotated[bool, typer.Option(help="Continue a sweep in this folder; finished candidates are kept.")] = False,
    force: Annotated[bool, typer.Option(help="Start over in a folder that holds another sweep.")] = False,
    address: Annotated[Optional[str], typer.Option(help="Join the Ray cluster at this address (host:port, "
                                                        "ray://host:port; auto: the one running here) instead of "
                                                        "starting a local instance. Default: RAY_ADDRESS, if "
                                                        "set.")] = None,
    ray: Annotated[Optional[bool], typer.Option("--ray/--no-ray", help="Run candidates side by side on Ray "
                                                "(default: when installed) or one after another here.")] = None,
    json: JsonOpt = None,
) -> None:
    """Run every candidate of a recipe's sweep (each an ordinary run) and pick the best that passes the gates.
    Exit 0 with a winner, 1 when no candidate passes the gates, 2 bad input."""
    from toolkit.pipeline.sweep import sweep as run_sweep
    from toolkit.pipeline.sweep_report import show_sweep
    from toolkit.recipe import load_recipe

    if resume and force:
        raise RtkError("give --resume (keep the finished candidates) or --force (start over), not both")
    loaded = load_recipe(recipe)
    _json_not_a_recipe_input(loaded, json)
    _json_not_in_state(json, output, (".rtk", ".cache", "candidates"))
    with ui.progress(f"sweeping {loaded.name}") as progress:
        result = run_sweep(loaded, output, resume=resume, force=force, address=address, use_ray=ray,
                           source=str(recipe), progress=progress, notice=ui.warn)
    show_sweep(result)
    emit_json(json, result)
    failed = [c for c in result.candidates if c.status != "ok"]
    if len(failed) == len(result.candidates):    # nothing measured: no gate decided, say why they failed
        code = max(c.exit_code or 3 for c in failed)
        hint = (f"; for the traceback: rtk --debug run {Path(failed[0].folder) / 'recipe.yaml'} -o DIR" if code == 3
                else "")
        ui.error(f"all {len(failed)} candidates failed and none was measured (the lines above, "
                 f"{output / 'sweep.md'}){hint}")
        raise typer.Exit(code)
    ui.ok(f"sweep: {output / 'sweep.md'}" + "".join(f" · plot: {output / p}" for p in result.plots)
          + (f" · winner's recipe: {output / 'best.yaml'}" if result else ""))
    if not result:
        raise GateFailed("no candidate passed every gate; see sweep.md for what failed")


@recipe_app.command("schema")
@command
def recipe_schema() -> None:
    """Print the recipe JSON Schema."""
    import json as _json

    from toolkit.recipe import schema

    print(_json.dumps(schema(), indent=2))


@recipe_app.command("check")
@command
def recipe_check(recipe: Annotated[Path, typer.Argument(help="Recipe YAML.")]) -> None:
    """Validate a recipe against the schema, its files and this machine, without running it."""
    from toolkit.pipeline.run import check_machine
    from toolkit.recipe import load_recipe

    r = load_recipe(recipe)
    check_machine(r)
    if r.sweep is not None:
        from toolkit.pipeline.candidates import expand

        merged: list[str] = []
        count = len(expand(r, str(recipe), merged=merged))
        for line in merged:
            ui.warn(line)
        ui.ok(f"{recipe}: recipe {r.name!r} is valid, with {count} sweep candidate{'' if count == 1 else 's'}")
        return
    ui.ok(f"{recipe}: recipe {r.name!r} is valid")


__all__ = ["demo", "recipe_check", "recipe_schema", "run_", "sweep"]
