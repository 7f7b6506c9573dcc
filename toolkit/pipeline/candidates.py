"""A sweep's candidates: every combination of the `sweep.values` lists, each a complete recipe of its own.

A value list names a recipe field by its dotted path (`prune.ratio`, `quantize.subset`, `bench.threads`; a
section missing from the recipe is created with its defaults), or one of two shorthands: `precision` (fp32 and
fp16 drop the quantize stage and compile at that precision; int8 keeps the recipe's quantize settings, or the
defaults) and `targets` (the runtime, or list of runtimes, to build and time). Shorthands apply after the dotted
fields, so an fp32 or fp16 candidate never quantizes; quantize.* values apply to int8 candidates only, and an fp32
combination that differs from an earlier one only in them is the same candidate, made once. Per-target gates
follow the candidate's targets. Every candidate is checked like any recipe before anything runs.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from toolkit.errors import RtkError
from toolkit.recipe import Recipe, first_error, refuse_bools
from toolkit.settings import TARGETS
from toolkit.yaml_text import flow

MAX_CANDIDATES = 512
FIELD = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")  # a recipe field's dotted name
SHORTHANDS = ("precision", "targets")
TRAINING = ("seed", "data", "model", "finetune", "prune", "export")   # the sections that decide what is trained


@dataclass(frozen=True)
class Candidate:
    id: str
    values: dict[str, Any]
    recipe: Recipe

    @property
    def label(self) -> str:
        return show_values(self.values)


def _show(value: Any) -> str:
    """A swept value as the recipe writes it: true/false, a date as written, a list in brackets."""
    return flow(value)


def show_values(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={_show(v)}" for k, v in values.items())


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, last = dotted.split(".")
    node = tree
    for i, part in enumerate(sections):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RtkError(f"sweep.values: {dotted}: {'.'.join(sections[:i + 1])} is not a section of the recipe; "
                           "name a field such as prune.ratio")
        node = child
    node[last] = value


_DROPPED = object()


def _get(tree: dict[str, Any], dotted: str) -> Any:
    """The value at `dotted`, or _DROPPED when a shorthand removed its section (quantize.* at fp32)."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _DROPPED
        node = node[part]
    return node


def _apply(tree: dict[str, Any], key: str, value: Any) -> None:
    if not FIELD.fullmatch(key):
        raise RtkError(f"sweep.values: {key!r} is not a recipe field; name one as section.field, e.g. prune.ratio")
    if key.split(".")[0] in ("sweep", "name", "version", "description"):
        raise RtkError(f"sweep.values: {key} cannot be swept (it describes the sweep, not a candidate); name a "
                       "stage field such as prune.ratio")
    if key == "precision":
        if value not in ("fp32", "fp16", "int8"):
            raise RtkError(f"sweep.values: precision {_show(value)}: use fp32, fp16 or int8")
        tree.setdefault("compile", {})["precision"] = "auto" if value == "int8" else value
        if value == "int8":
            tree["quantize"] = tree.get("quantize") or {}
        else:
            tree.pop("quantize", None)
    elif key == "targets":
        tree.setdefault("compile", {})["targets"] = value if isinstance(value, list) else [value]
    else:
        _set(tree, key, value)


def _fit_gates(tree: dict[str, Any]) -> None:
    """Per-target latency gates (and compile.embed_preprocess, OpenVINO's) apply to the candidates that build that
    target."""
    comp = tree.get("compile") if isinstance(tree.get("compile"), dict) else {}    # anything else: refused later
    listed = comp.get("targets", ["onnxruntime"])
    targets = {t for t in listed if isinstance(t, str)} if isinstance(listed, list) else set()
    if "openvino" not in targets and comp.get("embed_preprocess"):
        comp["embed_preprocess"] = False
    gates = tree.get("gates", {})
    for name in ("max_p50_ms", "max_p99_ms"):      # a key that names no runtime is left for validation to refuse
        if isinstance(gates, dict) and isinstance(gates.get(name), dict):
            gates[name] = {t: v for t, v in gates[name].items() if t in targets or t not in TARGETS}


def expand(recipe: Recipe, where: str = "recipe", lines: dict[tuple, int] | None = None,
           merged: list[str] | None = None) -> list[Candidate]:
    """The candidates of `recipe`'s sweep, in the order of the value lists (the last one varies fastest). With the
    recipe file's `lines` (key path -> line), an error names the line of the swept key it is about. A combination
    that only differs from an earlier one in values that do not apply to it is left out, and said in `merged`."""
    if recipe.sweep is None:
        raise RtkError(f"{where} has no sweep: block; add one (see recipes/sweep-demo.yaml), or run it with rtk run")
    lists = recipe.sweep.values
    lines = lines or {}

    def at(key: str | None) -> str:
        line = lines.get(("sweep", "values", key)) or lines.get(("sweep", "values"))
        return f"{where}:{line}" if line else where

    both = next((k for k in SHORTHANDS if k in lists and f"compile.{k}" in lists), None)
    if both:
        raise RtkError(f"{at('compile.' + both)}: sweep.values: {both} and compile.{both} name the same setting; "
                       "sweep one of them")
    quantized = next((k for k in lists if k.split(".")[0] == "quantize"), None)
    if quantized and lists.get("precision") and all(v in ("fp32", "fp16") for v in lists["precision"]):
        raise RtkError(f"{at(quantized)}: sweep.values: {quantized} applies to int8 candidates, and precision lists "
                       "none; add int8 to precision, or drop the quantize values")
    count = 1
    for values in lists.values():
        count *= len(values)
    if count > MAX_CANDIDATES:
        raise RtkError(f"{at(None)}: the sweep has {count} candidates (limit {MAX_CANDIDATES}); shorten the value lists")
    base = recipe.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"sweep"})
    width = len(str(count - 1))
    out, seen, twins = [], {}, {}
    for i, combo in enumerate(itertools.product(*lists.values())):
        values = dict(zip(lists, combo))
        cid = f"c{i:0{width}d}"
        tree = json.loads(json.dumps(base))
        tree["name"] = f"{recipe.name}-{cid}"
        for key, value in sorted(values.items(), key=lambda kv: kv[0] in SHORTHANDS):     # shorthands last
            try:
                _apply(tree, key, value)
            except RtkError as exc:
                raise RtkError(f"{at(key)}: {exc}") from None
        _fit_gates(tree)
        used = {k: v if k in SHORTHANDS else _get(tree, k) for k, v in values.items()}    # as used, once fitted
        values = {k: v for k, v in used.items() if v is not _DROPPED}
        refuse_bools(tree, Recipe, {tuple(k.split(".")): lines.get(("sweep", "values", k)) for k in lists}, where)
        try:
            built = Recipe.model_validate(tree)
        except ValidationError as exc:
            _, field, message = first_error(exc, tree)
            message = "not a recipe field" if exc.errors()[0]["type"] == "extra_forbidden" else message
            dotted = field.split(": key ")[0]
            swept = next((k for k in lists if dotted == k or dotted.startswith(k + ".") or k.startswith(dotted + ".")
                          or (k in SHORTHANDS and dotted.startswith("compile."))), None)
            raise RtkError(f"{at(swept)}: sweep candidate {cid} ({show_values(values)}): {field}: {message}; fix "
                           "sweep.values") from None
        key = json.dumps(built.model_dump(mode="json", exclude={"name"}), sort_keys=True)
        same = seen.setdefault(key, Candidate(id=cid, values=values, recipe=built))
        if same.id != cid and same.label == show_values(values):    # it differs only in values that do not apply
            twins.setdefault(same.id, []).append(cid)
            continue
        if same.id != cid:
            raise RtkError(f"{at(None)}: sweep candidates {same.id} and {cid} are the same recipe ({same.label} / "
                           f"{show_values(values)}); give each value once in sweep.values")
        out.append(Candidate(id=cid, values=values, recipe=built))
    if merged is not None:
        labels = {c.id: c.label for c in out}
        merged += [f"sweep candidate{'s' if len(ids) > 1 else ''} {', '.join(ids)} {'are' if len(ids) > 1 else 'is'} "
                   f"{first} ({labels[first]}): the values {'they differ' if len(ids) > 1 else 'it differs'} in do "
                   f"not apply to it, so {first} runs once" for first, ids in twins.items()]
    return out


def leaders_first(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates in an order where the first of each training setting come first, round-robin: runs that start
    together train different models instead of waiting for the same one, and later runs reuse them."""
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        tree = c.recipe.model_dump(mode="json", include=set(TRAINING))
        groups.setdefault(json.dumps(tree, sort_keys=True), []).append(c)
    queues = list(groups.values())
    order = []
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order


def absolute(recipe: Recipe) -> Recipe:
    """`recipe` with its input paths absolute, so a worker whose working folder differs finds them."""
    data = recipe.data.model_copy(update={k: Path(v).resolve() for k in ("root", "calibration", "validation")
                                          if (v := getattr(recipe.data, k)) is not None})
    update: dict[str, Any] = {"data": data}
    source = recipe.model.source
    if Path(source).is_file():
        update["model"] = recipe.model.model_copy(update={"source": str(Path(source).resolve())})
    if recipe.quantize and recipe.quantize.calib_list:
        update["quantize"] = recipe.quantize.model_copy(update={"calib_list": recipe.quantize.calib_list.resolve()})
    return recipe.model_copy(update=update)
