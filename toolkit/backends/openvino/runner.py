"""OpenVINO: IR from ONNX (FP32, FP16-compressed, INT8 from QDQ or NNCF) and a runner for `.xml` and `.onnx`.

The IR carries rtk's ModelMeta as JSON in its `rt_info` (key rtk/meta), so an `.xml` + `.bin` pair is a
complete artifact. The runner compiles with a performance hint: LATENCY for one request at a time,
THROUGHPUT for parallel requests, which `infer_many` drives through an AsyncInferQueue.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from toolkit.artifact import ModelMeta, Preprocess, default_class_names, fresh_temp_name
from toolkit.backends.base import Runner
from toolkit.errors import RtkError

META_PATH = ["rtk", "meta"]
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


@functools.cache
def _core() -> Any:
    import openvino as ov

    return ov.Core()


def _one_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return (lines[0] if lines else type(exc).__name__)[:200]


def bin_path(xml: Path) -> Path:
    return Path(xml).with_suffix(".bin")


def _require_bin(xml: Path) -> None:
    if not bin_path(xml).is_file():
        raise RtkError(f"{xml}: its weights file {bin_path(xml).name} is missing; keep the .xml and .bin together "
                       "or compile again with `rtk compile --target openvino`")


def read_model(path: Path) -> Any:
    """An ov.Model from `.xml` (with its `.bin`) or `.onnx`, with one-line errors."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        _require_bin(path)
    try:
        return _core().read_model(str(path))
    except Exception as exc:
        raise RtkError(f"{path}: OpenVINO cannot read it ({_one_line(exc)})") from None


def read_ir_meta(path: Path) -> ModelMeta:
    """Metadata stored in an IR's rt_info; an IR rtk did not write gets ImageNet defaults sized to its input."""
    model = read_model(Path(path))
    if model.has_rt_info(META_PATH):
        return ModelMeta.model_validate_json(str(model.get_rt_info(META_PATH).astype(str)))
    shape = model.input(0).get_partial_shape()
    out = model.output(0).get_partial_shape()
    crop = shape[3].get_length() if shape.rank.is_static and shape[3].is_static else 224
    if not (out.rank.is_static and out[out.rank.get_length() - 1].is_static):
        raise RtkError(f"{path}: the IR output has no static class dimension and no rtk metadata; compile it with rtk")
    classes = out[out.rank.get_length() - 1].get_length()
    return ModelMeta(num_classes=classes, class_names=default_class_names(classes),
                     preprocess=Preprocess().at_size(crop),
                     provenance={"source": "foreign-ir", "file": Path(path).name})


def ir_output(output: Path) -> Path:
    """The `.xml` an `-o` names: itself when it ends in .xml, else `model.xml` inside that folder."""
    output = Path(output)
    xml = output if output.suffix.lower() == ".xml" else output / "model.xml"
    folder = xml.parent
    if folder.exists() and not folder.is_dir():
        raise RtkError(f"output {folder} is a file; give a folder or a .xml path")
    if not folder.is_dir() and not folder.parent.is_dir():
        raise RtkError(f"output folder {folder.parent} does not exist; create it first or choose another -o")
    if not os.access(folder if folder.is_dir() else folder.parent, os.W_OK):
        raise RtkError(f"output folder {folder} is not writable; choose another -o")
    return xml


def convert_onnx(source: Path) -> Any:
    """An ov.Model from ONNX through `ov.convert_model`, whose MOC passes fold the ONNX frontend's shape
    sub-graphs (ShapeOf/Broadcast around every conv bias) that `Core.read_model` leaves in. NNCF needs the
    folded form: on the raw one, bias correction finds no biases (measured with NNCF's full bias correction:
    0.33 vs 0.07 pt INT8 drop)."""
    import openvino as ov

    try:
        return ov.convert_model(str(source))
    except Exception as exc:
        raise RtkError(f"{source}: OpenVINO cannot convert it ({_one_line(exc)})") from None


def ir_from_onnx(source: Path, xml: Path, *, meta: ModelMeta, compress_to_fp16: bool = False,
                 batch: int | None = None, quantize: Callable[[Any], Any] | None = None) -> list[Path]:
    """Convert ONNX to IR at `xml` (+ `.bin`), optionally with a static batch and INT8 (`quantize` maps the
    converted ov.Model to its INT8 form); returns both files.

    Both files are written into a temporary folder beside the output and moved in `.bin` first, so an `.xml`
    never appears without its weights and a failure leaves nothing behind.
    """
    model = convert_onnx(source)
    if quantize is not None:
        model = quantize(model)
    if batch is not None:
        shape = model.input(0).get_partial_shape()
        shape[0] = batch
        model.reshape({model.input(0): shape})
    model.set_rt_info(meta.to_json(), META_PATH)
    return _save_atomic(model, Path(xml), compress_to_fp16=compress_to_fp16)


def _save_atomic(model: Any, xml: Path, *, compress_to_fp16: bool) -> list[Path]:
    import openvino as ov

    folder = xml.parent
    created = not folder.exists()
    tmp = fresh_temp_name(folder, ".rtk-ir-")
    try:
        folder.mkdir(exist_ok=True)
        tmp.mkdir()
        ov.save_model(model, str(tmp / xml.name), compress_to_fp16=compress_to_fp16)
        os.replace(tmp / bin_path(xml).name, bin_path(xml))
        os.replace(tmp / xml.name, xml)
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [xml, bin_path(xml)]


class OpenVINORunner(Runner):
    """One `.xml` or `.onnx` compiled for an OpenVINO device with a LATENCY or THROUGHPUT hint."""

    target = "openvino"

    def load(self) -> None:
        hint = self.options.hint.lower()
        if hint not in HINTS:
            raise RtkError(f"--hint {self.options.hint!r}: choose latency or throughput")
        if self.path.suffix.lower() == ".xml":
            _require_bin(self.path)
        core = _core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[hint]}
        if self.options.cache_dir is not None:
            Path(self.options.cache_dir).mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(self.options.cache_dir)
        if self.options.threads:
            config["INFERENCE_NUM_THREADS"] = self.options.threads
        precision = self.options.inference_precision or ("f32" if self.meta.precision == "fp32" else None)
        if precision and self.options.device.upper().startswith("CPU"):
            config["INFERENCE_PRECISION_HINT"] = precision
        try:
            self.compiled = core.compile_model(str(self.path), self.options.device, config)
        except Exception as exc:
            raise RtkError(f"{self.path}: OpenVINO cannot compile it for {self.options.device} "
                           f"({_one_line(exc)})") from None
        self.request = self.compiled.create_infer_request()
        self._queue = None
        shape = self.compiled.input(0).get_partial_shape()
        self._batch = shape[0].get_length() if shape[0].is_static else None

    @property
    def fixed_batch(self) -> int | None:
        return self._batch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True)
        return self.request.get_output_tensor(0).data.copy()

    @property
    def parallel_requests(self) -> int:
        return int(self._property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") or 1)

    def infer_many(self, batch: np.ndarray, count: int) -> None:
        """`count` inferences spread over the device's optimal number of parallel requests."""
        import openvino as ov

        if self._queue is None:
            self._queue = ov.AsyncInferQueue(self.compiled, self.parallel_requests)
        x = np.ascontiguousarray(batch, dtype=np.float32)
        for _ in range(count):
            self._queue.start_async({0: x}, share_inputs=True)
        self._queue.wait_all()

    def _property(self, name: str) -> Any:
        try:
            return self.compiled.get_property(name)
        except Exception:
            return None

    def close(self) -> None:
        self._queue = self.request = self.compiled = None

    def describe(self) -> dict[str, object]:
        import openvino as ov

        precision = self._property("INFERENCE_PRECISION_HINT")
        return {"target": self.target, "version": ov.get_version(), "device": self.options.device,
                "hint": self.options.hint.lower(), "streams": self._property("NUM_STREAMS"),
                "infer_requests": self._property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"),
                "threads": self._property("INFERENCE_NUM_THREADS") or "default",
                "inference_precision": precision.get_type_name() if precision is not None else None,
                "cache_dir": str(self.options.cache_dir) if self.options.cache_dir else None}
