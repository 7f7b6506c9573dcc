"""The facts files beside TensorRT's binary artifacts, and the rules that read them.

An engine's sidecar `<engine>.json` records the TensorRT version (and its major/minor) and GPU that built it,
whether it is version-compatible, its build settings, the source ONNX's sha256 and the ModelMeta (key "meta").
Engines are not portable, so the runner checks the sidecar before TensorRT is asked to load one: an ordinary
engine runs only on the TensorRT version that built it, a version-compatible one (`--version-compatible`) on that
version or a newer one, and either only on the GPU model it was built for.

A timing cache `<cache>.json` records the TensorRT version and GPU that measured it; a cache from elsewhere is
ignored with a warning and rebuilt (TensorRT's timings are only meaningful where they were taken).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.artifact import ModelMeta
from toolkit.backends.tensorrt.bindings import SUPPORTED, version_tuple
from toolkit.errors import RtkError

REBUILD = "rebuild it here with `rtk compile --target tensorrt`"


def sidecar_path(path: Path) -> Path:
    """`model.engine` -> `model.engine.json`."""
    return Path(f"{path}.json")


def check_compatible(sidecar: dict[str, Any], *, tensorrt: str, gpu: str, compute_capability: str,
                     path: Path) -> None:
    """Refuse an engine this TensorRT or this GPU cannot run (engines are not portable)."""
    built = str(sidecar.get("tensorrt"))
    if sidecar.get("version_compatible"):
        if version_tuple(tensorrt) < version_tuple(built):
            raise RtkError(f"{path}: built with TensorRT {built} (version-compatible: it runs on {built} or newer), "
                           f"this machine has {tensorrt}; {REBUILD}")
    elif built != tensorrt:
        raise RtkError(f"{path}: built with TensorRT {built}, this machine has {tensorrt}; {REBUILD} (or build "
                       f"with --version-compatible to run on later versions); rtk supports {SUPPORTED}")
    if sidecar.get("compute_capability") != compute_capability or sidecar.get("gpu") != gpu:
        raise RtkError(f"{path}: built for {sidecar.get('gpu')} (sm {sidecar.get('compute_capability')}), this GPU "
                       f"is {gpu} (sm {compute_capability}); {REBUILD}")


def read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise RtkError(f"{path}: its sidecar {side.name} is missing; rebuild with `rtk compile --target tensorrt`")
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RtkError(f"{side}: not valid JSON; rebuild with `rtk compile --target tensorrt`") from None


def read_engine_meta(path: Path) -> ModelMeta:
    """The ModelMeta an engine's sidecar carries (checked against the engine's bindings when TensorRT loads it)."""
    side = read_sidecar(Path(path))
    try:
        meta = ModelMeta.model_validate(side.get("meta", {}) if isinstance(side, dict) else None)
    except ValueError as exc:
        from toolkit.onnx_file import _first_error

        raise RtkError(f"{sidecar_path(Path(path))}: its rtk metadata is damaged ({_first_error(exc)}); rebuild with "
                       "`rtk compile --target tensorrt`") from None
    if meta.preprocess.embedded:        # rtk's engines take float input: only an IR embeds the preprocessing
        raise RtkError(f"{sidecar_path(Path(path))}: its rtk metadata says the preprocessing is embedded, which no "
                       "engine rtk builds does; rebuild with `rtk compile --target tensorrt`")
    return meta


def timing_cache_bytes(path: Path | None, facts: dict[str, str]) -> tuple[bytes, str | None]:
    """(the cache's bytes to start from, a warning): empty, with the reason, when it was made elsewhere."""
    if path is None or not path.is_file():
        return b"", None
    side = sidecar_path(path)
    try:
        recorded = json.loads(side.read_text()) if side.is_file() else None
    except json.JSONDecodeError:
        recorded = None
    if recorded != facts:
        made = ("without a record of where it was made" if recorded is None else
                f"by TensorRT {recorded.get('tensorrt')} on {recorded.get('gpu')}")
        return b"", (f"timing cache {path.name} was made {made}; this is TensorRT {facts['tensorrt']} on "
                     f"{facts['gpu']}: starting a new one (the old one is replaced)")
    return path.read_bytes(), None
