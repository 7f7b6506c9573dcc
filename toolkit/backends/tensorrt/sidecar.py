"""An engine's sidecar `<engine>.json`: the TensorRT version and GPU that built it, its build settings, the source
ONNX's sha256 and the ModelMeta (key "meta"). Engines are not portable, so the runner checks the sidecar first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.artifact import ModelMeta, sidecar_path
from toolkit.errors import RtkError


def check_compatible(sidecar: dict[str, Any], *, tensorrt: str, gpu: str, compute_capability: str,
                     path: Path) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU (engines are not portable)."""
    built = sidecar.get("tensorrt")
    if built != tensorrt:
        raise RtkError(f"{path}: built with TensorRT {built}, this machine has {tensorrt}; rebuild it here with "
                       "`rtk compile --target tensorrt`")
    if sidecar.get("compute_capability") != compute_capability or sidecar.get("gpu") != gpu:
        raise RtkError(f"{path}: built for {sidecar.get('gpu')} (sm {sidecar.get('compute_capability')}), this GPU "
                       f"is {gpu} (sm {compute_capability}); rebuild it here with `rtk compile --target tensorrt`")


def read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise RtkError(f"{path}: its sidecar {side.name} is missing; rebuild with `rtk compile --target tensorrt`")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError:
        raise RtkError(f"{side}: not valid JSON; rebuild with `rtk compile --target tensorrt`") from None




def read_engine_meta(path: Path) -> ModelMeta:
    """The ModelMeta an engine's sidecar carries."""
    return ModelMeta.model_validate(read_sidecar(Path(path)).get("meta", {}))
