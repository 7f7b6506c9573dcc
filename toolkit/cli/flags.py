"""The one place where command-line flags become settings models (toolkit.settings).

Flags are named after the fields they set (`--batch-size` sets `batch_size`), take their help text and default
from the field, and are checked by the field's range: `build(FinetuneSettings, epochs=0)` fails as
`--epochs 0: Input should be greater than or equal to 1`, the same rule a recipe gets.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from toolkit.errors import RtkError

M = TypeVar("M", bound=BaseModel)
# Flags not named `--<field>`, for every command that has them: `build` names them in errors, `to_argv` writes them.
FLAG_NAMES = {"batches": "--batch", "max_drop_pt": "--max-drop", "min_agreement_pct": "--min-agreement",
              "fast_decode": "--fast-decode/--exact-decode"}


def flag_name(field: str, flags: dict[str, str] | None = None) -> str:
    return (flags or {}).get(field, "--" + field.replace("_", "-"))


def opt(model: type[BaseModel], field: str, *names: str, **kwargs: Any) -> Any:
    """A typer option for `model.field`: the field's description is its help."""
    return typer.Option(*names, help=model.model_fields[field].description, **kwargs)


def default(model: type[BaseModel], field: str) -> Any:
    """The field's default, so the CLI shows and uses the one the model defines."""
    return model.model_fields[field].get_default(call_default_factory=True)


def build(model: type[M], *, flags: dict[str, str] | None = None, **values: Any) -> M:
    """`model` from flag values named after its fields; `flags` names the flags that are not `--<field>`.

    A value outside its field's range is one line naming the flag, exit 2 (RtkError)."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise RtkError(explain(exc, values, flags)) from None


def to_argv(settings: BaseModel, *, model: type[BaseModel] | None = None, flags: dict[str, str] | None = None,
            exclude: tuple[str, ...] = ()) -> list[str]:
    """The flags that `build` turns back into `settings` (the fields of `model`, default its own type): how a
    command is handed to another rtk (`toolkit.remote`). A field left at None is left out (its default)."""
    out: list[str] = []
    for field in (model or type(settings)).model_fields:
        value = getattr(settings, field)
        if field in exclude or value is None:
            continue
        if isinstance(value, bool):
            on, _, off = flag_name(field, flags).partition("/")        # "--x", or "--x/--y" as typer spells it
            out.append(on if value else off or "--no-" + on.removeprefix("--"))
        else:
            out += [flag_name(field, flags), ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return out


def explain(exc: ValidationError, values: dict[str, Any], flags: dict[str, str] | None = None) -> str:
    """The first validation error as one line in the command line's terms."""
    first = exc.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    fields = [p for p in first["loc"] if isinstance(p, str)]
    if not fields:   # a rule across fields ("give runs or seconds, not both"): name them as flags
        for name in sorted(values, key=len, reverse=True):
            message = re.sub(rf"(?<![-\w]){name}\b", flag_name(name, flags).partition("/")[0], message, count=1)
        return message
    field = fields[0]
    value = values.get(field)
    shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    if first["type"] == "literal_error":
        return f"{flag_name(field, flags)} {shown!r}: unknown {field.replace('_', ' ')}; {message.lower()}"
    return f"{flag_name(field, flags)} {shown}: {message}"


def int_list(text: str, flag: str, example: str = "1,8") -> list[int]:
    """A comma-separated list of integers, e.g. `--batch 1,8`."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise RtkError(f"{flag} {text!r}: give integers separated by commas, e.g. {example}") from None
