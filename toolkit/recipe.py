"""A whole pipeline as one typed object: each stage's section is that stage's settings model (toolkit.settings),
so a recipe and the command line build the same objects.

Recipes are versioned (`version: 1`), strict (an unknown key is an error naming the key and its line) and
safe (YAML aliases are refused, so an alias bomb cannot expand). `rtk recipe schema` prints the JSON Schema.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit.errors import RtkError
from toolkit.io import read_small_text
from toolkit.settings import (REMOTE_FIELDS, BenchSettings, CompileSettings, DeviceSpec, ExportSettings,
                              FinetuneSettings, Gates, MAX_CLASSES, MAX_INPUT, MIN_CLASSES, MIN_INPUT, PruneSettings,
                              QuantizeSettings, SEED_MAX, SweepSettings, SynthSettings, Target, ValidateSettings)
from toolkit.yaml_text import MAX_BYTES, flow, key_lines, refuse_aliases, refuse_deep, refuse_duplicates

RECIPE_VERSION = 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataSpec(Strict):
    """Where images come from: `synth` or an ImageFolder `root` with train/ and val/."""

    synth: SynthSettings | None = Field(None, description="The built-in synthetic set, drawn into <output>/data.")
    root: Path | None = None
    calibration: Path | None = Field(None, description="Calibration images (default: the train split).")
    validation: Path | None = Field(None, description="Labeled validation images (default: the val split).")

    @model_validator(mode="after")
    def _one_source(self) -> "DataSpec":
        if self.synth is not None and self.root is not None:
            raise ValueError("give data.synth or data.root, not both")
        return self


class ModelSpec(Strict):
    source: str = Field("none", description="imagenet-v1, imagenet-v2, random, none (scratch) or a checkpoint path.")
    num_classes: int | None = Field(None, ge=MIN_CLASSES, le=MAX_CLASSES)
    input_size: int | None = Field(None, ge=MIN_INPUT, le=MAX_INPUT)


class CompileStage(CompileSettings):
    """The compile stage: `CompileSettings` for each of `targets` (onnxruntime runs the ONNX as it is)."""

    targets: list[Target] = Field(default_factory=lambda: ["onnxruntime"], min_length=1)

    @field_validator("targets")
    @classmethod
    def _deployable(cls, v: list[str]) -> list[str]:
        from toolkit.backends import targets_with

        allowed = targets_with("int8")
        bad = [t for t in v if t not in allowed]
        if bad:
            raise ValueError(f"{bad[0]} is not a deployment target; choose from {', '.join(allowed)}")
        return v


class ValidateStage(ValidateSettings):
    """The validate stage: here, against the FP32 reference; with `on_devices` also on every device."""

    on_devices: bool = Field(False, description="Also validate on every device of `devices:` (against the FP32 "
                                                "ONNX there: the device has no PyTorch), on its `data` or a copy.")


class BenchStage(BenchSettings):
    """The bench stage: `BenchSettings` for every artifact but the PyTorch reference, `repeats` times."""

    repeats: int = Field(3, ge=1, le=100, description="Independent measurements per artifact, for a confidence interval.")


def _is_true(value: object) -> bool:
    """A compile.embed_preprocess value as the recipe will read it ("false" is False); a bad one is not True."""
    try:
        return CompileSettings(embed_preprocess=value).embed_preprocess
    except ValueError:
        return False


class Recipe(Strict):
    version: Literal[1] = RECIPE_VERSION
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of every random step (init, shuffling, calibration).")
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    finetune: FinetuneSettings | None = None
    prune: PruneSettings | None = None
    export: ExportSettings = Field(default_factory=ExportSettings)
    quantize: QuantizeSettings | None = None
    compile: CompileStage = Field(default_factory=CompileStage)
    validate_: ValidateStage = Field(default_factory=ValidateStage, alias="validate")
    bench: BenchStage = Field(default_factory=BenchStage)
    gates: Gates = Field(default_factory=Gates)
    devices: dict[str, DeviceSpec] = Field(default_factory=dict, description="SSH devices the bench stage (and "
                                           "validate, with validate.on_devices) runs on, by name: nuc: pi@10.0.0.7, "
                                           "or nuc: {dest: ..., rtk: ~/venv/bin/rtk, data: ~/val}.")
    sweep: SweepSettings | None = Field(None, description="Candidates for `rtk sweep`: value lists over the fields "
                                                           "above and the objective.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _consistent(self) -> "Recipe":
        if self.model.source.lower() == "none" and self.finetune is None:
            raise ValueError("model.source none (scratch) needs a finetune stage to train it")
        if (self.finetune or self.prune) and self.data.synth is None and self.data.root is None:
            raise ValueError("finetune and prune train on data: set data.root (train/ and val/) or data.synth")
        if self.quantize and self.data.synth is None and self.data.root is None and self.data.calibration is None:
            raise ValueError("quantize needs calibration images: set data.root, data.synth or data.calibration")
        if self.quantize and self.compile.precision not in ("auto", "int8"):
            raise ValueError(f"compile.precision {self.compile.precision} and a quantize: block: quantize makes the "
                             "INT8 model that compile builds; set compile.precision auto, or drop quantize")
        if self.quantize and "tensorrt" in self.compile.targets and len(set(self.compile.targets)) > 1:
            raise ValueError("INT8 for tensorrt and for CPU targets are different artifacts; use one recipe per family")
        if self.quantize and self.quantize.isa and self.quantize_target == "tensorrt":
            raise ValueError("quantize.isa picks NNCF's settings for a CPU; tensorrt's INT8 runs on a GPU: drop it")
        if self.quantize and self.quantize.form == "ir" and self.quantize_target != "openvino":
            raise ValueError("quantize.form ir makes an INT8 IR for openvino: add openvino to compile.targets")
        if self.quantize and self.quantize.form == "ir" and self.compile.embed_preprocess:
            raise ValueError("compile.embed_preprocess puts the preprocessing in the IR compile makes, and "
                             "quantize.form ir makes the IR itself: drop one of them")
        swept = self.sweep.swept_targets() if self.sweep else set()
        built = set(self.compile.targets) | swept
        candidates_build = swept or set(self.compile.targets)     # swept targets replace the recipe's own
        embeds = [self.compile.embed_preprocess, *(self.sweep.values.get("compile.embed_preprocess", [])
                                                   if self.sweep else [])]
        if any(map(_is_true, embeds)) and "openvino" not in candidates_build:
            raise ValueError("compile.embed_preprocess puts the preprocessing in the OpenVINO IR, and compile.targets "
                             "builds none: add openvino to compile.targets, or drop embed_preprocess")
        for name in ("max_p50_ms", "max_p99_ms"):
            extra = sorted({k.rpartition("/")[2] for k in getattr(self.gates, name)} - built)
            if extra:
                raise ValueError(f"gates.{name} names {extra}, which compile.targets does not build")
        e, exported = self.export, Path(self.model.source).suffix.lower() != ".onnx"
        if exported and not e.dynamic_batch and self.bench.batches != [e.batch]:
            raise ValueError(f"export.dynamic_batch false makes an ONNX of batch {e.batch} only: set bench.batches "
                             f"[{e.batch}], or export with a dynamic batch")
        self._check_devices()
        q, g = self.quantize, self.gates
        if q and q.max_drop is not None and g.max_drop_pt is not None and q.max_drop > g.max_drop_pt:
            raise ValueError(f"quantize.max_drop {q.max_drop} allows more than gates.max_drop_pt {g.max_drop_pt}")
        return self

    def _check_devices(self) -> None:
        from toolkit.remote import ssh_destination

        for name, spec in self.devices.items():
            try:
                ssh_destination(spec.dest)
            except RtkError:
                raise ValueError(f"devices.{name}.dest {spec.dest!r}: give an SSH destination as user@host, an alias "
                                 "from ~/.ssh/config, or ssh://user@host:port") from None
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"device name {name!r}: use letters, digits, '.', '_' and '-' (gates name it as "
                                 "NAME/target)")
        if [f for f in REMOTE_FIELDS if getattr(self.validate_, f) is not None]:
            raise ValueError("validate.remote*: name the device under devices: and set validate.on_devices: true")
        if self.bench.remote and self.devices:
            raise ValueError("give the devices under devices: (bench.remote is the one-device shorthand), not both")
        if self.validate_.on_devices and not self.devices:
            raise ValueError("validate.on_devices needs a devices: block")
        named = set(self.device_names)
        for gate in ("max_p50_ms", "max_p99_ms"):
            unknown = sorted({k.rpartition("/")[0] for k in getattr(self.gates, gate) if "/" in k} - named)
            if unknown:
                raise ValueError(f"gates.{gate} names device {unknown[0]!r}, which devices: does not list")

    @property
    def device_names(self) -> list[str]:
        """The devices the bench stage runs on: devices:, or bench.remote's one (empty: it runs here)."""
        return list(self.devices) or ([self.bench.remote] if self.bench.remote else [])

    @property
    def quantize_target(self) -> Target:
        targets = self.compile.targets
        return "tensorrt" if "tensorrt" in targets else ("openvino" if "openvino" in targets else "onnxruntime")


def as_written(loc: tuple, data: Any) -> tuple[str, ...]:
    """pydantic's loc as the recipe writes it: a key that is a date, true or null in YAML (its repr, or 1 for true,
    in the loc) the way YAML writes it."""
    out, node = [], data
    for part in loc:
        key = next((k for k in node if k == part or repr(k) == part), part) if isinstance(node, dict) else part
        node = node.get(key) if isinstance(node, dict) else None
        out.append(flow(key))
    return tuple(out)


def first_error(error: ValidationError, data: Any) -> tuple[tuple[str, ...], str, str]:
    """The first error's loc and field as the recipe writes them (field "gates.max_p50_ms: key true" for a bad key,
    "recipe" for a rule across fields), and its message."""
    first = error.errors()[0]
    loc = as_written(tuple(p for p in first["loc"] if p != "[key]" and not str(p).startswith("function-after")), data)
    field = ".".join(loc[:-1]) + f": key {loc[-1]}" if "[key]" in first["loc"] else ".".join(loc) or "recipe"
    return loc, field, re.sub(r" or instance of \w+", "", first["msg"].removeprefix("Value error, "))


def _explain(error: ValidationError, lines: dict[tuple, int], path: Path, data: Any) -> str:
    loc, key, message = first_error(error, data)
    lines = {tuple(map(str, k)): v for k, v in lines.items()}    # a YAML key 3 is "3" here, 3 in pydantic's loc
    line = next((lines[k] for n in range(len(loc), -1, -1) if (k := tuple(map(str, loc[:n]))) in lines), None)
    if loc in ((), ("sweep", "values")):   # a rule across fields or value lists: the line of the first field its
        named = re.findall(r"\b[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+", message) + message.split(" ")[:1]  # names
        places = [tuple(n.split(".")) for n in named] + [("sweep", "values", n) for n in named]
        if loc:        # a value list's rule: its key under sweep.values, not the same field in the recipe body
            places = places[len(named):]
        line = next((lines[p] for p in places if p in lines), line)
    where = f"{path}:{line}" if line else str(path)
    if error.errors()[0]["type"] == "extra_forbidden":
        return f"{where}: unknown key {key!r}; check its spelling against `rtk recipe schema`"
    return f"{where}: {key}: {message}; fix the recipe (see `rtk recipe schema`)"


def _types(annotation: Any) -> set:
    """Every type an annotation names (Optional, unions, list items and Literal values' types unfolded)."""
    args = get_args(annotation)
    if not args:
        return {annotation}
    if get_origin(annotation) is Literal:
        return {type(a) for a in args}
    return {t for a in args for t in _types(a)}


def refuse_bools(data: Any, model: type[BaseModel], lines: dict[tuple, int], path: Path | str,
                 prefix: tuple = ()) -> None:
    """YAML `true` where a number is meant is refused: pydantic's lax mode would read it as 1 (`seed: true`)."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            continue
        kinds = _types(field.annotation)
        items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        numeric = int in kinds or float in kinds
        if numeric and bool not in kinds and Any not in kinds and any(isinstance(v, bool) for v in items):
            line = lines.get(prefix + (key,))
            raise RtkError(f"{path}{f':{line}' if line else ''}: {'.'.join(map(str, prefix + (key,)))}: true/false is "
                           "not a number; give a number (see `rtk recipe schema`)")
        sub = next((t for t in kinds if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if sub is not None:
            refuse_bools(value, sub, lines, path, prefix + (key,))


def parse_recipe(text: str, path: Path = Path("<recipe>")) -> Recipe:
    """The Recipe in YAML `text`; any problem is an RtkError naming `path` (and the line where known)."""
    refuse_deep(text, path)
    try:
        refuse_aliases(text, path)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        refuse_duplicates(node, path)
        data = yaml.safe_load(text)
    except RecursionError:
        raise RtkError(f"{path}: YAML nested too deeply; a recipe is a few levels of mappings") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}:{mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RtkError(f"{path}:{where}: YAML not allowed in a recipe: {problem}; write plain values") from None
    if not isinstance(data, dict):
        raise RtkError(f"{path}: a recipe is a YAML mapping (name:, data:, ...); see recipes/demo.yaml")
    lines = key_lines(node) if node else {}
    refuse_bools(data, Recipe, lines, path)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RtkError(_explain(exc, lines, path, data)) from None
    if recipe.sweep is not None:      # every candidate checked now, an error at the line of its swept key
        from toolkit.pipeline.candidates import expand

        expand(recipe, str(path), lines)
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    text = read_small_text(path, f"recipe {path}", "give a recipe YAML file; see recipes/ for examples",
                           limit=MAX_BYTES)
    recipe = parse_recipe(text, path)
    return _resolve_paths(recipe, path.parent)


def _resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    """Relative paths in a recipe are relative to the working directory; check that each named input exists and
    is of its kind (a folder of images, a file), so `rtk recipe check` passing means `rtk run` will not stop
    on a path after writing models."""
    data = recipe.data
    calib_list = recipe.quantize.calib_list if recipe.quantize else None
    for label, value, folder in (("data.root", data.root, True), ("data.calibration", data.calibration, True),
                                 ("data.validation", data.validation, True),
                                 ("quantize.calib_list", calib_list, False)):
        if value is None:
            continue
        if not Path(value).exists():
            raise RtkError(f"{label}: {value} not found; fix the path in the recipe (relative to the current folder)")
        if folder and not Path(value).is_dir():
            raise RtkError(f"{label}: {value} is a file; give a folder of images (one sub-folder per class)")
        if not folder and not Path(value).is_file():
            raise RtkError(f"{label}: {value} is a folder; give a file listing one image path per line")
    has_val = data.synth is not None or data.validation is not None or (
        data.root is not None and (Path(data.root) / "val").is_dir())
    if recipe.quantize and recipe.quantize.max_drop is not None and not has_val:
        raise RtkError("quantize.max_drop needs validation images; set data.validation or use data with val/")
    timing_cache = recipe.compile.timing_cache
    if timing_cache is not None and Path(timing_cache).is_dir():
        raise RtkError(f"compile.timing_cache: {timing_cache} is a folder; give a file (created if missing)")
    source = recipe.model.source
    if source.lower() not in ("imagenet-v1", "imagenet-v2", "random", "none"):
        if not Path(source).is_file():
            raise RtkError(f"model.source: {source} not found (or not a file); give a checkpoint path or "
                           "imagenet-v1/imagenet-v2/random/none")
        if Path(source).suffix.lower() not in (".pt", ".pth", ".onnx"):
            raise RtkError(f"model.source: {source} is not a .pt checkpoint or an .onnx model; a recipe starts from "
                           "one of those")
        if Path(source).suffix.lower() == ".onnx" and (recipe.finetune or recipe.prune):
            raise RtkError("model.source is an ONNX file: prune and finetune need a .pt checkpoint")
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    data: dict[str, Any] = recipe.model_dump(mode="json", exclude_none=True, by_alias=True)
    return yaml.safe_dump(data, sort_keys=False)


def demo_recipe() -> Recipe:
    """The built-in demo: recipes/demo.yaml (from the source tree, or the copy a wheel ships as toolkit.recipes)."""
    source_tree = Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml"
    if source_tree.is_file():
        text = source_tree.read_text(encoding="utf-8")
    else:
        from importlib.resources import files

        text = (files("toolkit.recipes") / "demo.yaml").read_text(encoding="utf-8")
    return parse_recipe(text, Path("recipes/demo.yaml"))


def schema() -> dict[str, Any]:
    return Recipe.model_json_schema()
