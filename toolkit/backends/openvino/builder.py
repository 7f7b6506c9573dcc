"""OpenVINO IR from ONNX (`ir_from_onnx`): FP32, FP16-compressed, INT8 from Q/DQ or from NNCF at compile time.

`compile_ir` is what `rtk compile --target openvino` runs: the output path, the batch, the precision and the
write, in that order, every bad input refused before anything is written.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from toolkit.artifact import ModelMeta, Preprocess
from toolkit.io import atomic_outputs
from toolkit.backends.base import CompileJob, Compiled
from toolkit.backends.openvino.loader import META_PATH, bin_path, one_line
from toolkit.backends.openvino.precision import RUNTIME_PATH, runtime_config
from toolkit.errors import RtkError
from toolkit.onnx_file import input_dims


def ir_output(output: Path) -> Path:
    """The `.xml` an `-o` names: itself when it ends in .xml, else `model.xml` inside that folder."""
    output = Path(output)
    xml = output if output.suffix.lower() == ".xml" else output / "model.xml"
    folder = xml.parent
    if folder.exists() and not folder.is_dir():
        raise RtkError(f"output {folder} is a file; give a folder or a .xml path")
    base = folder                   # the folder that exists: missing ones below it are created when written
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise RtkError(f"output {base} is a file; give a folder or a .xml path")
    if not os.access(base, os.W_OK):
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
        raise RtkError(f"{source}: OpenVINO cannot convert it ({one_line(exc)})") from None


def embed_preprocess(model: Any, pre: Preprocess) -> Any:
    """`model` with the per-pixel part of `pre` in its graph (OpenVINO's PrePostProcessor): it takes the resized,
    cropped 8-bit RGB pixels as N x H x W x 3 u8, and converts them to float, orders the channels as the model
    wants them, subtracts the mean and divides by the std (both scaled to 0-255 pixels) and transposes to the
    model's layout. The resize and crop stay on the host, in Pillow, as validated: OpenVINO's resize works on one
    fixed output size, while the eval resize keeps each photo's aspect ratio before the center crop."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    inp = ppp.input()
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.RGB)
    inp.model().set_layout(ov.Layout(pre.layout))
    steps = inp.preprocess().convert_element_type(ov.Type.f32)
    if pre.channels == "BGR":
        steps.convert_color(ColorFormat.BGR)
    unit = 255.0 if pre.pixels == "0-1" else 1.0
    steps.mean([m * unit for m in pre.mean]).scale([s * unit for s in pre.std])
    return ppp.build()


def ir_from_onnx(source: Path, xml: Path, *, meta: ModelMeta, compress_to_fp16: bool = False,
                 batch: int | None = None, quantize: Callable[[Any], Any] | None = None) -> list[Path]:
    """Convert ONNX to IR at `xml` (+ `.bin`), optionally with a static batch, INT8 (`quantize` maps the
    converted ov.Model to its INT8 form) and the preprocessing embedded (where `meta`'s says so); returns both
    files.

    Both files are written by `toolkit.io.atomic_outputs`: `.bin` moved into place first, so an `.xml` never
    appears without its weights, and a failure leaves nothing behind.
    """
    model = convert_onnx(source)
    if quantize is not None:
        model = quantize(model)
    if meta.preprocess.embedded:
        if compress_to_fp16:    # the weights first, so the preprocessing's mean and scale stay the metadata's float32
            from openvino._offline_transformations import compress_model_transformation

            compress_model_transformation(model)        # what save_model(compress_to_fp16=True) applies
            compress_to_fp16 = False
        model = embed_preprocess(model, meta.preprocess)
    if batch is not None:
        shape = model.input(0).get_partial_shape()
        shape[0] = batch
        model.reshape({model.input(0): shape})
    model.set_rt_info(meta.to_json(), META_PATH)
    for key, value in runtime_config(meta.precision).items():
        model.set_rt_info(value, [*RUNTIME_PATH, key])
    return _save_atomic(model, Path(xml), compress_to_fp16=compress_to_fp16)


def _save_atomic(model: Any, xml: Path, *, compress_to_fp16: bool) -> list[Path]:
    with atomic_outputs(xml, bin_path(xml), make_folder=True) as (tmp_xml, _):
        save_model(model, tmp_xml, compress_to_fp16=compress_to_fp16, shown=xml)
    return [xml, bin_path(xml)]


def save_model(model: Any, xml: Path, *, compress_to_fp16: bool, shown: Path | None = None) -> None:
    """`ov.save_model`, with a full disk said as one (OpenVINO raises `RuntimeError: basic_ios::clear` for it)."""
    import openvino as ov

    try:
        ov.save_model(model, str(xml), compress_to_fp16=compress_to_fp16)
    except RuntimeError:
        weights = sum(op.get_byte_size() for op in model.get_ops() if op.get_type_name() == "Constant")
        if shutil.disk_usage(Path(xml).parent).free < weights:     # less room than the .bin needs: the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(shown or xml)) from None
        raise


def _batch_plan(job: CompileJob) -> tuple[int | None, str]:
    """(static batch to set, label): `--batch` fixes a dynamic batch; a static ONNX batch stays as it is."""
    s = job.settings
    if (s.min_batch, s.opt_batch, s.max_batch) != (None, None, None):
        raise RtkError("--min-batch/--opt-batch/--max-batch are TensorRT profiles; for OpenVINO use --batch "
                       "or keep the dynamic batch")
    onnx_batch = input_dims(job.model)[0]
    if onnx_batch is not None:
        return s.batch, str(s.batch or onnx_batch)
    return s.batch, str(s.batch) if s.batch else "dynamic"


def compile_ir(job: CompileJob) -> Compiled:
    """`rtk compile --target openvino`: an IR pair, INT8 through NNCF when the ONNX has no Q/DQ and
    `job.calibration` names images."""
    static_batch, batch_label = _batch_plan(job)
    output = job.output if job.output is not None else job.source.with_suffix(".xml")
    xml = ir_output(output)
    out_meta = job.output_meta(target="openvino", batch=batch_label)
    if job.settings.embed_preprocess:
        out_meta.preprocess = out_meta.preprocess.model_copy(update={"embedded": True})
    quantize = None
    if job.precision == "int8" and not job.qdq:
        from toolkit.quantize.calibration import calibration_set
        from toolkit.quantize.nncf_cpu import calibration_batch
        from toolkit.quantize.nncf_cpu import openvino_int8

        job.say("reading calibration images")
        calset = calibration_set(Path(job.calibration), job.meta.preprocess, subset=job.settings.calibration_samples,
                                 allow_small=True)
        quantize, record = openvino_int8(calset, calibration_batch(job.model))
        out_meta = out_meta.model_copy(update={"extra": {**out_meta.extra, "quantization": record}})
    job.say("converting to OpenVINO IR" + (" and quantizing with NNCF" if quantize else ""))
    files = ir_from_onnx(job.source, xml, meta=out_meta, compress_to_fp16=job.precision == "fp16",
                         batch=static_batch, quantize=quantize)
    return Compiled(batch=batch_label, files=files, main=xml, meta=out_meta)
