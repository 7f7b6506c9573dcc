"""The commands over whole pipelines: run, demo, recipe schema, recipe check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolkit import console as ui
from toolkit.cli.app import JsonOpt, app, command, emit_json, recipe_app
from toolkit.errors import GateFailed


def _run_recipe(recipe, output: Path, *, resume: bool, force: bool, json: Path | None) -> None:
    from toolkit.pipeline import run as run_pipeline

    with ui.progress(f"running {recipe.name}") as progress:
        report = run_pipeline(recipe, output, resume=resume, force=force, progress=progress)
    ui.show_report(report)
    ui.ok(f"report: {output / 'report.md'} · manifest: {output / 'manifest.json'}")
    emit_json(json, report)
    if not report:
        raise GateFailed("gate failed: " + "; ".join(str(g) for g in report.gates if not g.passed))


@app.command("run")
@command
def run_(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder (artifacts, manifest, report).")],
    resume: Annotated[bool, typer.Option(help="Continue a run in this folder, skipping unchanged stages.")] = False,
    force: Annotated[bool, typer.Option(help="Redo every stage in a folder that holds another run.")] = False,
    json: JsonOpt = None,
) -> None:
    """Run a recipe: every stage, then validate, bench, gates and the report. Exit 0 pass, 1 gate failed, 2 bad input."""
    from toolkit.recipe import load_recipe

    _run_recipe(load_recipe(recipe), output, resume=resume, force=force, json=json)


@app.command()
@command
def demo(
    output: Annotated[Path, typer.Option("-o", "--output", help="Run folder.")] = Path("runs/demo"),
    force: Annotated[bool, typer.Option(help="Redo every stage instead of reusing unchanged ones.")] = False,
    json: JsonOpt = None,
) -> None:
    """The built-in default: synthetic data -> train -> prune -> INT8 -> OpenVINO -> validate, bench, report."""
    from toolkit.recipe import demo_recipe

    output.parent.mkdir(parents=True, exist_ok=True)
    _run_recipe(demo_recipe(), output, resume=not force, force=force, json=json)


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
    ui.ok(f"{recipe}: recipe {r.name!r} is valid")


__all__ = ["demo", "recipe_check", "recipe_schema", "run_"]
