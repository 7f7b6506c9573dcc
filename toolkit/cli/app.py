"""The typer application, the error handling every command shares, and the helpers for --json and --dump-recipe."""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from typer.core import TyperGroup

from toolkit import console as ui
from toolkit.errors import SIGNALLED, GateFailed, RtkError, internal_error, missing_extra
from toolkit.settings import TARGETS

def _usage_errors() -> tuple[type, ...]:
    """click's UsageError, and the copy of click that typer 0.2x vendors (typer._click), whichever exist."""
    import importlib

    found = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(importlib.import_module(module).UsageError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


USAGE_ERRORS = _usage_errors()


class OneLineErrors(TyperGroup):
    """A command line typer/click cannot parse (`--runs abc`, a missing option) is one `error:` line naming the
    flag and exit 2, like every other bad input, instead of a usage box."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USAGE_ERRORS as exc:
            where = " ".join(["rtk", *(exc.ctx.command_path.split()[1:] if exc.ctx is not None else [])])
            message = " ".join(exc.format_message().split()).rstrip(".")
            ui.error(f"{message}; see `{where} --help`")
            raise typer.Exit(2) from None


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rtk: take a ResNet50 classifier from PyTorch to an edge runtime and prove it still works.")
data_app = typer.Typer(no_args_is_help=True, help="Data sets: the built-in synthetic set.")
app.add_typer(data_app, name="data")
recipe_app = typer.Typer(no_args_is_help=True, help="Recipes: print the schema, check a recipe.")
app.add_typer(recipe_app, name="recipe")

JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="Also write the result as JSON to this file.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Inference threads (default: the runtime's choice).")]
TargetOpt = Annotated[Optional[str], typer.Option(help=f"Runtime: {', '.join(TARGETS)} (default: by file "
                                                       "extension).")]
DumpOpt = Annotated[Optional[Path], typer.Option("--dump-recipe", help="Write the recipe that replays this "
                                                  "command with `rtk run`, and exit without running it.")]
_debug = {"on": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    _debug["on"] = debug
    if not debug:
        quiet_libraries()


# Loggers of the libraries rtk drives that print on their own (torch's "No CUDA runtime is found" when NNCF
# imports it, ONNX Runtime's and OpenVINO's Python-side notices): rtk reports what matters in its own words.
LIBRARY_LOGGERS = ("torch", "torch.utils.cpp_extension", "torch.onnx", "nncf", "onnxruntime", "openvino", "urllib3")


def quiet_libraries() -> None:
    """Keep stderr to rtk's own lines: library loggers at ERROR and Python warnings off (rtk's checks that need a
    warning, such as Pillow's decompression-bomb warning, turn it into an error locally, which still works).
    `rtk --debug` leaves them on."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


Writes = dict[str, "tuple[str, ...] | Callable[[dict], list[tuple[str, Path, tuple[str, ...]]]]"]
OUTPUT_FLAGS = {"output": "-o", "json": "--json", "dump_recipe": "--dump-recipe"}
ALWAYS: Writes = {"json": (".json",), "dump_recipe": (".yaml", ".yml")}


def command(fn: Callable | None = None, *, writes: Writes | None = None) -> Callable:
    """Turn library errors into one line on stderr and the documented exit codes (2 input, 1 gate).

    Before the command runs, every path it writes (`writes`: parameter -> the extensions of its format, or a
    function of the arguments giving (flag, path, extensions); --json and --dump-recipe always) is checked
    against every path it reads (`toolkit.io.check_io`), so no command can write over its input.
    An optional package missing from this install (torch for a making command, openvino for an IR) is bad
    input too: the line names the extra to install."""
    if fn is None:
        return functools.partial(command, writes=writes)
    plan = {**ALWAYS, **(writes or {})}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            _check_paths(plan, kwargs)          # first: its example for a folder lies outside the input folders
            _check_json_path(kwargs.get("json"))
            try:
                return fn(*args, **kwargs)
            except ImportError as exc:
                raise missing_extra(exc, what=f"rtk {fn.__name__.strip('_').replace('_', ' ')}") or exc
        except KeyboardInterrupt as exc:
            received = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
            _interrupted(SIGNALLED[-1] if SIGNALLED else received, exc)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if SIGNALLED:              # a library that caught the interrupt and raised its own error for it
                _interrupted(SIGNALLED[-1], exc)
            if _debug["on"]:
                raise
            if isinstance(exc, (RtkError, GateFailed)):
                ui.error(str(exc))
                raise typer.Exit(exc.exit_code) from None
            if isinstance(exc, OSError) and exc.errno in PLACE_ERRORS:    # the place, not rtk: exit 2
                where = f" ({exc.filename})" if exc.filename else ""
                ui.error(f"{os.strerror(exc.errno)}{where}; {PLACE_ERRORS[exc.errno]}, then run again (nothing was "
                         "left half-written)")
                raise typer.Exit(2) from None
            # a bug, not bad input: say so in one line, keep 1 and 2 for gates and input
            ui.error(f"{internal_error(exc)}; this is a bug in rtk: rerun with `rtk --debug ...` for the traceback "
                     "and report it")
            raise typer.Exit(3) from None

    return wrapper


PLACE_ERRORS = {errno.ENOSPC: "free space or write elsewhere", errno.EDQUOT: "free space or write elsewhere",
                errno.ENAMETOOLONG: "choose a shorter path", errno.EROFS: "write to a writable place",
                errno.EACCES: "choose paths you may read and write", errno.EPERM: "choose paths you may read and write"}


def _check_paths(plan: Writes, kwargs: dict) -> None:
    """Every output of the call against every input (any other path argument, or a string naming a file)."""
    from toolkit.io import check_io

    outputs: list[tuple[str, Path, tuple[str, ...]]] = []
    for name, rule in plan.items():
        if callable(rule):
            outputs += rule(kwargs)
        elif isinstance(kwargs.get(name), Path):
            outputs.append((OUTPUT_FLAGS.get(name, "--" + name.replace("_", "-")), kwargs[name], rule))
    inputs: list[Path] = []
    for name, value in kwargs.items():
        if name in plan or name in OUTPUT_FLAGS:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, Path) or (isinstance(v, str) and v and os.path.exists(v)):
                inputs.append(Path(v))
    check_io(inputs=inputs, outputs=outputs)


def _check_json_path(path: Path | None) -> None:
    """Refuse a --json path that cannot be written before the work, not after it."""
    from toolkit.io import check_output

    if isinstance(path, Path):
        check_output(path, flag="--json", example="result.json")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (temporary files removed) but exiting 143."""


def _interrupted(signum: int, exc: BaseException | None = None) -> None:
    kept = getattr(exc, "kept", None)   # a complete output the command wrote before (finetune's best epoch so far)
    if kept:
        ui.warn(kept)
    ui.error("interrupted; nothing was left half-written")
    raise typer.Exit(143 if signum == signal.SIGTERM else 130) from None


def _terminate(signum: int, frame: object) -> None:
    SIGNALLED.append(signum)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a repeated TERM (remote.sh sends one each second) must not
    raise Terminated()                              # cut the clean-up short


def _interrupt(signum: int, frame: object) -> None:
    SIGNALLED.append(signum)
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # a second Ctrl-C must not cut the clean-up short either (it
    raise KeyboardInterrupt()                       # left a sweep's Ray instance running and exited 1)


def dump(path: Path, command: str, **recipe) -> None:
    """Write the recipe that replays `rtk <command>` (its settings model plus its inputs) and say how to run it."""
    from pydantic import ValidationError

    from toolkit.io import check_output, write_text_atomic
    from toolkit.recipe import Recipe, dump_recipe

    path = check_output(Path(path), flag="--dump-recipe", example="recipe.yaml")
    try:
        built = Recipe(**recipe)
    except ValidationError as exc:
        raise RtkError(f"--dump-recipe: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    text = f"# Replays `rtk {command}` (written by --dump-recipe): rtk run {path} -o runs/{built.name}\n"
    write_text_atomic(path, text + dump_recipe(built))
    ui.ok(f"wrote {path}; replay it with: rtk run {path} -o runs/{built.name}")


def recipe_name(command: str, model: str | Path) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(str(model)).stem) or "model"
    return f"{command}-{stem}"


def emit_json(path: Path | None, result) -> None:
    if path is not None:
        from toolkit.io import write_json

        write_json(path, result)


def _unraisable(event: Any) -> None:
    """After an interrupt, an error in a finalizer (a DataLoader's, whose workers the signal killed too) is its echo,
    not news: the one line `_interrupted` prints is enough."""
    if not SIGNALLED:
        sys.__unraisablehook__(event)


def main() -> None:
    sys.unraisablehook = _unraisable
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not where SIGINT is ignored (background)
        signal.signal(signal.SIGINT, _interrupt)
    app(prog_name="rtk")

