"""What every artifact carries (ModelMeta), where it is stored per format, and atomic writes.

An artifact is a file on disk (`.pt`, `.onnx`, `.xml` + `.bin`, `.engine`) plus the metadata deployment
needs: class names, preprocessing, precision and provenance. The metadata travels inside the file where
the format has room for it (checkpoint dict, ONNX `metadata_props`, OpenVINO `rt_info`) and in a
sidecar `<file>.json` where it does not (TensorRT engines).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolkit.errors import RtkError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ONNX_META_KEY = "rtk.meta"

Precision = Literal["fp32", "fp16", "int8", "mixed"]


class Preprocess(BaseModel):
    """The one preprocessing definition: eval = resize shorter side, center crop, scale to [0, 1], normalise."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop)

    def at_size(self, crop: int) -> "Preprocess":
        """The same preprocessing for another input size, keeping the resize/crop ratio."""
        return self.model_copy(update={"crop": crop, "resize": round(crop * self.resize / self.crop)})


class ModelMeta(BaseModel):
    """Everything a deployed classifier needs besides its weights."""

    model_config = ConfigDict(extra="forbid")

    arch: str = "resnet50"
    num_classes: int
    class_names: list[str]
    preprocess: Preprocess = Field(default_factory=Preprocess)
    precision: Precision = "fp32"
    arch_config: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    def derived(self, step: str, parent: Path | None = None, **facts: Any) -> "ModelMeta":
        """A copy for an artifact made from this one by `step`, recording the parent's hash.

        No wall-clock time is recorded, so the same inputs give a byte-identical artifact; run times are
        in the run manifest and the commands' JSON results.
        """
        history = list(self.provenance.get("history", []))
        entry: dict[str, Any] = {"step": step, **facts}
        if parent is not None and parent.is_file():
            entry["parent"] = parent.name
            entry["parent_sha256"] = sha256_file(parent)
        history.append(entry)
        return self.model_copy(deep=True, update={"provenance": {**self.provenance, "history": history}})

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output(path: Path) -> Path:
    """Refuse an output path whose folder is missing or which names a folder, before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise RtkError(f"output {path} is a folder; give a file name, e.g. {path / 'model'}{path.suffix or '.onnx'}")
    if not path.parent.is_dir():
        raise RtkError(f"output folder {path.parent} does not exist; create it first or choose another -o")
    if not os.access(path.parent, os.W_OK):
        raise RtkError(f"output folder {path.parent} is not writable; choose another -o")
    return path


def fresh_temp_name(folder: Path, prefix: str, suffix: str = "") -> Path:
    """A hidden name in `folder` for a temporary file or folder, not yet created.

    Create it inside the `try` whose `finally` removes it. `tempfile.mkstemp`/`mkdtemp` create it before that
    `try` is entered, and a Ctrl-C landing in between leaves it behind (the interrupt test caught one)."""
    return Path(folder) / f"{prefix}{secrets.token_hex(6)}{suffix}"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary name in the same folder; rename it to `path` only if the block succeeds.

    Any exception (including KeyboardInterrupt) removes the temporary file, so a failed or interrupted
    step never leaves a partial artifact under the final name.
    """
    path = check_output(Path(path))
    tmp_path = fresh_temp_name(path.parent, f".{path.name}.", ".tmp")
    try:
        try:
            os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise RtkError(f"cannot write in {path.parent} ({exc.strerror or type(exc).__name__}); "
                           "choose another output") from None
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_umask())
        try:
            os.replace(tmp_path, path)
        except OSError as exc:
            raise RtkError(f"cannot write {path} ({exc.strerror or type(exc).__name__}); choose another output") from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any) -> None:
    """Write `data` (a pydantic model or plain JSON value) as indented JSON, atomically."""
    data = jsonable(data)
    write_text_atomic(Path(path), json.dumps(data, indent=2, sort_keys=False) + "\n")


def jsonable(data: Any) -> Any:
    """Pydantic models (also inside lists and dicts) as plain JSON values."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, (list, tuple)):
        return [jsonable(v) for v in data]
    if isinstance(data, dict):
        return {k: jsonable(v) for k, v in data.items()}
    return data


def sidecar_path(path: Path) -> Path:
    return Path(f"{path}.json")


def read_meta(path: Path) -> ModelMeta:
    """The metadata stored in an artifact of any format rtk writes."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pt":
        from toolkit.models import read_checkpoint

        return read_checkpoint(path)[1]
    if suffix == ".onnx":
        return read_onnx_meta(path)
    if suffix == ".xml":
        from toolkit.backends.openvino import read_ir_meta

        return read_ir_meta(path)
    side = sidecar_path(path)
    if side.is_file():
        return ModelMeta.model_validate(json.loads(side.read_text()).get("meta", {}))
    raise RtkError(f"{path}: no rtk metadata found (expected a .pt, .onnx, .xml or a {side.name} sidecar)")


def read_onnx_meta(path: Path, model: Any = None) -> ModelMeta:
    """Metadata from an ONNX file; an ONNX file rtk did not write gets ImageNet defaults sized to its input.

    With `model` (an onnx.ModelProto the caller already holds) it is read from there; otherwise ONNX Runtime
    reads the file, which the runtime-only install has (the `onnx` package is only in the export extra) and
    which is faster than importing onnx and parsing the whole protobuf (0.18 s against 0.88 s for a ResNet50).
    """
    path = Path(path)
    if model is not None:
        props = {p.key: p.value for p in model.metadata_props}
        inputs = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
        outputs = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
    else:
        props, inputs, outputs = _onnx_facts(Path(path))
    if ONNX_META_KEY in props:
        try:
            return ModelMeta.model_validate_json(props[ONNX_META_KEY])
        except ValueError as exc:
            raise RtkError(f"{path}: its rtk metadata ({ONNX_META_KEY}) is damaged ({type(exc).__name__}); "
                           "re-export it with `rtk export`") from None
    if len(inputs) != 1 or len(outputs) < 1:
        raise RtkError(f"{path}: not an image classifier (it has {len(inputs)} inputs); "
                       "rtk runs models with one NCHW image input")
    dims, outs = inputs[0], outputs[0]
    if len(dims) != 4 or dims[1] not in (0, 3) or len(outs) != 2:
        shape = "x".join(str(d or "?") for d in dims)
        raise RtkError(f"{path}: not an image classifier (input {shape or 'without a shape'}, output rank {len(outs)}); "
                       "rtk runs models with an N x 3 x H x W input and N x classes logits")
    crop = dims[-1] or 224
    classes = outs[-1]
    if not classes:
        raise RtkError(f"{path}: the ONNX output has no static class dimension and no rtk metadata; export it with rtk")
    return ModelMeta(
        num_classes=classes,
        class_names=default_class_names(classes),
        preprocess=Preprocess().at_size(crop),
        provenance={"source": "foreign-onnx", "file": path.name},
    )


def _onnx_facts(path: Path) -> tuple[dict[str, str], list[list[int]], list[list[int]]]:
    """(metadata_props, input shapes, output shapes; 0 for a dynamic dimension) as ONNX Runtime reads them."""
    _check_file(path)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception:  # ORT raises several unrelated types for garbage input
        raise RtkError(f"{path}: not a readable ONNX model; re-export it with `rtk export`") from None

    def shape(value: Any) -> list[int]:
        return [d if isinstance(d, int) and d > 0 else 0 for d in (value.shape or [])]

    props = dict(session.get_modelmeta().custom_metadata_map)
    return props, [shape(i) for i in session.get_inputs()], [shape(o) for o in session.get_outputs()]


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise RtkError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise RtkError(f"{path}: file is empty (0 bytes); re-export it with `rtk export`")


def load_onnx(path: Path, load_external_data: bool = True) -> Any:
    """onnx.load with one-line errors for missing, empty and non-ONNX files."""
    import onnx

    path = Path(path)
    _check_file(path)
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf raises several unrelated types for garbage input
        raise RtkError(f"{path}: not a readable ONNX model ({type(exc).__name__}); re-export it with `rtk export`") from None


def write_onnx_meta(model: Any, meta: ModelMeta) -> None:
    """Store `meta` in the model's metadata_props (replacing any previous rtk entry)."""
    keep = [p for p in model.metadata_props if p.key not in (ONNX_META_KEY, "class_names")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in ((ONNX_META_KEY, meta.to_json()), ("class_names", json.dumps(meta.class_names))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def default_class_names(num_classes: int) -> list[str]:
    """ImageNet's class names for a 1000-class model, else class_0, class_1, ...

    The names ship with rtk (imagenet_classes.txt, torchvision's list; a test keeps the two equal) rather than
    coming from torchvision, so a device with the runtime-only install labels a foreign model as the build
    machine does.
    """
    if num_classes == 1000:
        from importlib.resources import files

        return files("toolkit").joinpath("imagenet_classes.txt").read_text().splitlines()
    return [f"class_{i}" for i in range(num_classes)]
