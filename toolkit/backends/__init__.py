"""Runtimes by name: which files each opens, how to import it lazily, what to install when it is missing."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from toolkit.artifact import ModelMeta, read_meta
from toolkit.backends.base import Runner, RunnerOptions
from toolkit.errors import RtkError, install_command


@dataclass(frozen=True)
class Target:
    name: str
    runner: str                    # "module:Class", imported only when used
    opens: tuple[str, ...]         # file extensions this runtime can run
    package: str                   # import name that must be present
    install: str                   # what to tell the user when it is missing


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("torch", "toolkit.backends.torch:TorchRunner", (".pt",), "torch", install_command("torch")),
    Target("onnxruntime", "toolkit.backends.onnxruntime:OnnxRuntimeRunner", (".onnx",), "onnxruntime",
           install_command("onnxruntime")),
    Target("openvino", "toolkit.backends.openvino:OpenVINORunner", (".xml", ".onnx"), "openvino",
           install_command("openvino")),
    Target("tensorrt", "toolkit.backends.tensorrt:TensorRTRunner", (".engine", ".plan"), "tensorrt",
           "pip install 'rtk[tensorrt]' on a machine with an NVIDIA GPU"),
)}

DEFAULT_TARGET = {".pt": "torch", ".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt",
                  ".plan": "tensorrt"}


def available(name: str) -> bool:
    return importlib.util.find_spec(TARGETS[name].package) is not None


def resolve_target(path: Path, target: str | None = None) -> Target:
    """The runtime for `path`: `target` when given (checked against the file type), else by extension."""
    suffix = Path(path).suffix.lower()
    if target is None:
        if suffix not in DEFAULT_TARGET:
            raise RtkError(f"{path}: no runtime opens {suffix or 'files without an extension'}; "
                           f"expected one of {', '.join(DEFAULT_TARGET)}")
        target = DEFAULT_TARGET[suffix]
    if target not in TARGETS:
        raise RtkError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    spec = TARGETS[target]
    if suffix not in spec.opens:
        raise RtkError(f"{path}: target {target} cannot run {suffix} files (it runs {', '.join(spec.opens)})")
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
    module_name, cls_name = spec.runner.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(path, meta=meta or read_meta(path), options=options)


__all__ = ["TARGETS", "Target", "Runner", "RunnerOptions", "open_runner", "resolve_target", "available"]
