"""PyTorch -> ONNX with the checker, shape inference, metadata, and a parity check on real images."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from toolkit.artifact import ModelMeta
from toolkit.io import atomic_outputs, check_output, sha256_file
from toolkit.onnx_file import write_onnx_meta
from toolkit.preprocess import sample_inputs
from toolkit.errors import RtkError
from toolkit.settings import ExportSettings
from toolkit.validate import mean_cosine



class Parity(BaseModel):
    """ONNX Runtime vs PyTorch on the same preprocessed images."""

    images: int
    source: str
    max_abs_diff: float
    cosine: float
    top1_agreement: float
    atol: float
    passed: bool

    def __bool__(self) -> bool:
        return self.passed


class ExportResult(BaseModel):
    output: str
    sha256: str
    opset: int
    dynamic_batch: bool
    input_size: int
    size_mb: float
    seconds: float
    parity: Parity


def torch_to_onnx(model: torch.nn.Module, path: Path, *, size: int, settings: ExportSettings) -> Path:
    """The one call of the ONNX exporter: TorchScript-based, constant-folded, input "input" and output "logits",
    batch dynamic or fixed at `settings.batch`. No checks: `export_onnx` adds them."""
    dummy = torch.zeros(1 if settings.dynamic_batch else settings.batch, 3, size, size)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (dummy,), str(path), opset_version=settings.opset, dynamo=False,
                          do_constant_folding=True, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if settings.dynamic_batch
                          else None)
    return Path(path)


def export_onnx(model: torch.nn.Module, meta: ModelMeta, output: Path, *, settings: ExportSettings | None = None,
                data: Path | None = None, parent: Path | None = None) -> ExportResult:
    """Export `model` to ONNX at `meta.preprocess.crop`, check it, store metadata, and prove parity on `data`
    (default: built-in drawings).

    The file appears at `output` only if the checker passes and ONNX Runtime agrees with PyTorch
    (max |diff| <= atol and top-1 agreement >= 99%); otherwise RtkError and nothing is written.
    """
    import onnx

    s = settings or ExportSettings()
    opset, dynamic_batch, batch, atol = s.opset, s.dynamic_batch, s.batch, s.atol
    output = check_output(Path(output))
    started = time.perf_counter()
    model = model.eval()
    size = meta.preprocess.crop
    out_meta = meta.derived("export", parent=parent, opset=opset, dynamic_batch=dynamic_batch)
    with atomic_outputs(output) as (tmp,):
        torch_to_onnx(model, tmp, size=size, settings=s)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto, full_check=True)
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        proto.producer_name, proto.producer_version = "rtk", _version()
        proto.doc_string = f"{meta.arch} classifier, {meta.num_classes} classes, exported by rtk"
        write_onnx_meta(proto, out_meta)
        onnx.save(proto, str(tmp))
        parity = check_parity(model, tmp, meta, data=data, atol=atol, batch=None if dynamic_batch else batch)
        if not parity:
            raise RtkError(f"export parity failed: max |diff| {parity.max_abs_diff:.2e} (atol {atol}), top-1 agreement "
                           f"{parity.top1_agreement:.1f}%; nothing written, report it with `rtk doctor` output")
    return ExportResult(output=str(output), sha256=sha256_file(output), opset=opset, dynamic_batch=dynamic_batch,
                        input_size=size, size_mb=output.stat().st_size / 1e6,
                        seconds=time.perf_counter() - started, parity=parity)


def check_parity(model: torch.nn.Module, onnx_path: Path, meta: ModelMeta, *, data: Path | None, atol: float,
                 batch: int | None = None) -> Parity:
    from toolkit.backends.onnxruntime import OnnxRuntimeRunner

    images, source = sample_inputs(meta.preprocess, data)
    with torch.inference_mode():
        ref = model(torch.from_numpy(images)).numpy()
    with OnnxRuntimeRunner(onnx_path, meta=meta) as runner:
        step = batch or len(images)
        chunks = [images[i:i + step] for i in range(0, len(images), step)]
        if batch:
            chunks = [c for c in chunks if len(c) == batch] or [np.resize(images, (batch, *images.shape[1:]))]
        got = np.concatenate([runner.infer(c) for c in chunks])
    ref = ref[: len(got)]
    diff = float(np.abs(got - ref).max())
    agree = 100.0 * float(np.mean(got.argmax(1) == ref.argmax(1)))
    return Parity(images=len(got), source=source, max_abs_diff=diff, cosine=mean_cosine(got, ref),
                  top1_agreement=agree, atol=atol, passed=diff <= atol and agree >= 99.0)


def _version() -> str:
    from toolkit import __version__

    return __version__
