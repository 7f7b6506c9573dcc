"""Runtimes by name: one table of what each can run, build and read, imported lazily.

Each runtime is a package (`backends/<name>/`) holding its loader/builder, runner and checks; this table is
the only place that knows them all. Entries name code as "module:attribute" strings, so importing the
registry imports no runtime: `rtk --help` works without TensorRT, and a missing runtime says what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.artifact import ModelMeta
from toolkit.backends.base import CompileJob, Compiled, Runner, RunnerOptions
from toolkit.errors import RtkError, install_command


@dataclass(frozen=True, kw_only=True)
class Backend:
    """One runtime's capabilities."""

    name: str
    package: str                        # import name that must be present
    install: str                        # what to tell the user when it is missing
    runner: str                         # "module:Class" of its Runner
    runs: tuple[str, ...]               # file extensions it can run
    owns: tuple[str, ...] = ()          # extensions of its own artifact format: it is their default runtime
    meta: str | None = None             # "module:function" reading the ModelMeta of a file it owns
    compiler: str | None = None         # "module:function" of `rtk compile --target NAME` (CompileJob -> Compiled)
    check_only: bool = False            # `rtk compile --check-only`: what it would refuse, without the runtime
    calibrates: bool = False            # `rtk compile --calibration DIR`: INT8 from a float ONNX at compile time
    int8: str | None = None             # the INT8 form `rtk quantize --target NAME` makes for it ("nncf", "trt_qdq")

    @property
    def searches(self) -> bool:
        """It can time a pruning candidate (a checkpoint or an ONNX export), as the latency search does."""
        return ".pt" in self.runs or ".onnx" in self.runs


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend(name="torch", package="torch", install=install_command("torch"),
            runner="toolkit.backends.torch.runner:TorchRunner", runs=(".pt",), owns=(".pt",),
            meta="toolkit.models:checkpoint_meta"),
    Backend(name="onnxruntime", package="onnxruntime", install=install_command("onnxruntime"),
            runner="toolkit.backends.onnxruntime.runner:OnnxRuntimeRunner", runs=(".onnx",), owns=(".onnx",),
            meta="toolkit.onnx_file:read_onnx_meta", int8="nncf"),
    Backend(name="openvino", package="openvino", install=install_command("openvino"),
            runner="toolkit.backends.openvino.runner:OpenVINORunner", runs=(".xml", ".onnx"), owns=(".xml",),
            meta="toolkit.backends.openvino.loader:read_ir_meta", compiler="toolkit.backends.openvino.builder:compile_ir",
            calibrates=True, int8="nncf"),
    Backend(name="tensorrt", package="tensorrt", install=install_command("tensorrt"),
            runner="toolkit.backends.tensorrt.runner:TensorRTRunner", runs=(".engine", ".plan"),
            owns=(".engine", ".plan"), meta="toolkit.backends.tensorrt.sidecar:read_engine_meta",
            compiler="toolkit.backends.tensorrt.builder:compile_engine", check_only=True, int8="trt_qdq"),
)}

DEFAULT_TARGET = {suffix: b.name for b in BACKENDS.values() for suffix in b.owns}
COMPILE_TARGETS = tuple(name for name, b in BACKENDS.items() if b.compiler)
CAPABILITIES = {"compile": lambda b: b.compiler is not None, "int8": lambda b: b.int8 is not None,
                "search": lambda b: b.searches, "check_only": lambda b: b.check_only}


def targets_with(capability: str) -> tuple[str, ...]:
    """The runtimes that have `capability` (a key of CAPABILITIES), in table order."""
    return tuple(name for name, b in BACKENDS.items() if CAPABILITIES[capability](b))


def load(ref: str) -> Any:
    """The object a "module:attribute" string names, importing its module now."""
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def available(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[name].package) is not None


def read_meta(path: str | Path) -> ModelMeta:
    """The metadata stored in an artifact of any format rtk writes, read by the runtime that owns the format."""
    path = Path(path)
    owner = DEFAULT_TARGET.get(path.suffix.lower())
    if owner is not None:
        return load(BACKENDS[owner].meta)(path)
    side = Path(f"{path}.json")
    if side.is_file():
        return load(BACKENDS["tensorrt"].meta)(path)
    raise RtkError(f"{path}: no rtk metadata found (expected a .pt, .onnx, .xml or a {side.name} sidecar)")


def resolve_target(path: Path, target: str | None = None) -> Backend:
    """The runtime for `path`: `target` when given (checked against the file type), else by extension."""
    suffix = Path(path).suffix.lower()
    if target is None:
        if suffix not in DEFAULT_TARGET:
            raise RtkError(f"{path}: no runtime opens {suffix or 'files without an extension'}; "
                           f"expected one of {', '.join(DEFAULT_TARGET)}")
        target = DEFAULT_TARGET[suffix]
    if target not in BACKENDS:
        raise RtkError(f"unknown target {target!r}; choose one of {', '.join(BACKENDS)}")
    spec = BACKENDS[target]
    if suffix not in spec.runs:
        raise RtkError(f"{path}: target {target} cannot run {suffix} files (it runs {', '.join(spec.runs)})")
    if not available(target):
        raise RtkError(f"target {target} needs the {spec.package} package: {spec.install}")
    return spec


def open_runner(path: str | Path, target: str | None = None, *, meta: ModelMeta | None = None,
                options: RunnerOptions | None = None) -> Runner:
    """A runner (not yet loaded: use it as a context manager) for the artifact at `path`."""
    path = Path(path)
    if not path.is_file():
        raise RtkError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise RtkError(f"{path}: file is empty (0 bytes); produce it again")
    spec = resolve_target(path, target)
    return load(spec.runner)(path, meta=meta or read_meta(path), options=options)


def compiler(target: str) -> Backend:
    """The backend `rtk compile --target` builds for; refuses a runtime without an artifact format of its own."""
    spec = BACKENDS.get(target)
    if spec is None or spec.compiler is None:
        raise RtkError(f"--target {target!r}: rtk compiles for {' or '.join(COMPILE_TARGETS)}")
    return spec


__all__ = ["BACKENDS", "COMPILE_TARGETS", "Backend", "CompileJob", "Compiled", "Runner", "RunnerOptions", "available",
           "compiler", "load", "open_runner", "read_meta", "resolve_target", "targets_with"]
