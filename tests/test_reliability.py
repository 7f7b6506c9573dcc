"""The bad-input catalogue (docs/bad-inputs.md), one parametrised case per row, and reproducibility.

Refused inputs: exit 2, one `error:` line naming the file and what to do, nothing left in the work folder.
Handled inputs: exit 0 (unusual images are converted to RGB; unreadable files in data folders are skipped
and counted). Cases for commands owned elsewhere that misbehave are xfail(strict) with the reason.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"


# ---------------------------------------------------------------- input makers

def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (a decompression bomb by its size) with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def jpeg_bytes(size: int = 48) -> bytes:
    buf = io.BytesIO()
    pixels = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def unusual_images(folder: Path) -> dict[str, Path]:
    """CMYK, 16-bit, grayscale, RGBA, palette and 1x1 images: inputs that must work."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = (np.random.default_rng(1).random((40, 52, 3)) * 255).astype(np.uint8)
    made = {
        "cmyk": ("cmyk.jpg", Image.fromarray(rgb).convert("CMYK")),
        "16bit": ("gray16.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)),
        "gray": ("gray.png", Image.fromarray(rgb).convert("L")),
        "rgba": ("rgba.png", Image.fromarray(rgb).convert("RGBA")),
        "palette": ("palette.png", Image.fromarray(rgb).convert("P")),
        "1x1": ("one.png", Image.new("RGB", (1, 1), (9, 99, 199))),
    }
    out = {}
    for key, (name, img) in made.items():
        img.save(folder / name)
        out[key] = folder / name
    return out


def tiny_onnx(path: Path, *, meta: str | None = None, shape=(1, 10)) -> Path:
    """A one-node ONNX (Relu); with `meta` it carries that text as its rtk metadata."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if meta is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "rtk.meta", meta
    onnx.save(model, str(path))
    return path


class Payload:
    """Pickled code: unpickling it would run `exec` and create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


# ---------------------------------------------------------------- the catalogue

@dataclass
class Ctx:
    work: Path
    data: Path            # tiny_data root (train/ val/)
    onnx: Path            # random_onnx, 64x64, the tiny classes
    ckpt: Path            # random_ckpt
    trunc: Path           # random_onnx cut in half

    def copy_val(self, name: str = "val") -> Path:
        dst = self.work / name
        shutil.copytree(self.data / "val", dst)
        return dst

    def first_class(self, folder: Path) -> Path:
        return sorted(p for p in folder.iterdir() if p.is_dir())[0]

    def image(self) -> Path:
        return next((self.data / "val").rglob("*.png"))


@dataclass
class Case:
    id: str
    command: str
    build: Callable[[Ctx], list]          # -> CLI args; creates its inputs in ctx.work
    names: tuple[str, ...] = ()           # fragments the one-line error must contain
    outcome: str = "refused"              # refused | handled | skipped
    skipped: int = 0                      # for "skipped": files the data folder must report as skipped
    images_added: int = 0                 # for "skipped": usable images beyond the copied val split
    xfail: str | None = None
    needs_non_root: bool = False
    marks: list = field(default_factory=list)


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


def _pickled(ctx: Ctx) -> Path:
    return ctx.work / "evil.pt"


def _evil(ctx: Ctx) -> Path:
    path = _pickled(ctx)
    torch.save({"state_dict": Payload(ctx.work / "PWNED")}, path)
    return path


def _rtk_ckpt(ctx: Ctx, name: str, **payload) -> Path:
    path = ctx.work / name
    torch.save({"format": "rtk.checkpoint", "version": 1, **payload}, path)
    return path


def _resnet18(ctx: Ctx) -> Path:
    import torchvision

    path = ctx.work / "resnet18.pt"
    torch.save(torchvision.models.resnet18(num_classes=4).state_dict(), path)
    return path


def _data_with(ctx: Ctx, name: str, data: bytes) -> Path:
    val = ctx.copy_val()
    _write(ctx.first_class(val) / name, data)
    return val


def _loop_link(ctx: Ctx) -> Path:
    """l1.jpg -> l2.jpg -> l1.jpg"""
    os.symlink("l2.jpg", ctx.work / "l1.jpg")
    os.symlink("l1.jpg", ctx.work / "l2.jpg")
    return ctx.work / "l1.jpg"


def _image_bytes(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 40, 200)).save(buf, "PNG")
    return buf.getvalue()


def _fifo(ctx: Ctx) -> Path:
    val = ctx.copy_val()
    os.mkfifo(ctx.first_class(val) / "pipe.png")
    return val


def _links(ctx: Ctx) -> Path:
    val = ctx.copy_val()
    folder = ctx.first_class(val)
    os.symlink("self.png", folder / "self.png")
    os.symlink("/nonexistent/rtk.png", folder / "dangling.png")
    return val


def _chmod000(ctx: Ctx) -> Path:
    val = ctx.copy_val()
    victim = next(ctx.first_class(val).glob("*.png"))
    victim.chmod(0)
    return val


def _dir_loop(ctx: Ctx) -> Path:
    val = ctx.copy_val()
    os.symlink("..", ctx.first_class(val) / "loop")
    return val


def _flat(ctx: Ctx) -> Path:
    flat = ctx.work / "flat"
    flat.mkdir()
    for p in list((ctx.data / "val").rglob("*.png"))[:3]:
        shutil.copy(p, flat / p.name)
    return flat


def _extra_class(ctx: Ctx) -> Path:
    val = ctx.copy_val()
    shutil.copytree(ctx.first_class(val), val / "zz_extra")
    return val


def _unusual_data(ctx: Ctx) -> Path:
    val = ctx.copy_val()
    unusual_images(ctx.first_class(val))
    return val


def _unicode_data(ctx: Ctx) -> Path:
    dst = ctx.work / "my data ü 数据" / "val"
    shutil.copytree(ctx.data / "val", dst)
    return dst


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _recipe(ctx: Ctx, text: str | bytes, name: str = "r.yaml") -> Path:
    return _write(ctx.work / name, text)


def _above_this_cpu() -> str | None:
    from toolkit.isa import TIERS, runnable

    return next((t for t in TIERS if t not in runnable()), None)


def _closed_port() -> str:
    """host:port of a local TCP port nothing listens on (a Ray cluster address that does not answer)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


ABOVE = _above_this_cpu()
NO_ABOVE = pytest.mark.skipif(ABOVE is None, reason="this CPU runs every oneDNN tier rtk knows (AMX): none is above it")
NO_AVX2 = pytest.mark.skipif(_above_this_cpu() == "AVX2", reason="this CPU has no AVX2: no tier to cap to")
ALIAS_BOMB = "name: x\na: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
RECIPE = "version: 1\nname: t\ndata:\n  synth: {classes: 4}\nmodel:\n  source: random\n"
VAL_ARGS = ("--batch-size", "16")
SWEEP = RECIPE + "sweep:\n  values:\n    prune.ratio: [0.3, 0.5]\n"

CASES = [
    # models and artifacts
    Case("onnx-truncated", "bench", lambda c: ["bench", c.trunc, "--runs", "2", "--warmup", "0"], ("trunc.onnx",)),
    Case("onnx-truncated-quantize", "quantize", lambda c: ["quantize", c.trunc, "-o", c.work / "q.onnx", "--calib",
                                                          c.data / "train"], ("trunc.onnx",)),
    Case("onnx-truncated-compile", "compile", lambda c: ["compile", c.trunc, "--target", "openvino", "-o",
                                                        c.work / "ir"], ("trunc.onnx",)),
    Case("compile-embed-for-tensorrt", "compile", lambda c: ["compile", c.onnx, "--target", "tensorrt",
                                                            "--embed-preprocess", "-o", c.work / "m.engine"],
         ("--embed-preprocess", "--target openvino")),
    Case("compile-calibration-not-int8", "compile", lambda c: ["compile", c.onnx, "--target", "openvino",
                                                              "--precision", "fp16", "--calibration", c.data / "train",
                                                              "-o", c.work / "ir"],
         ("--calibration quantizes to INT8, and this compiles fp16", "--precision int8")),
    Case("onnx-zero-byte", "validate", lambda c: ["validate", _write(c.work / "zero.onnx", b""), "--data",
                                                 c.data / "val"], ("zero.onnx", "empty")),
    Case("onnx-not-a-classifier", "bench", lambda c: ["bench", tiny_onnx(c.work / "relu.onnx"), "--runs", "2"],
         ("relu.onnx", "not an image classifier")),
    Case("onnx-damaged-metadata", "predict", lambda c: ["predict", c.image(), "--model",
                                                       tiny_onnx(c.work / "meta.onnx", meta="{not json")],
         ("meta.onnx", "metadata")),
    Case("ir-xml-without-bin", "bench", lambda c: ["bench", _write(c.work / "model.xml", '<?xml version="1.0"?>\n'
                                                  '<net name="m" version="11"><layers/><edges/></net>\n')],
         ("model.xml", "model.bin")),
    Case("ir-zero-byte", "bench", lambda c: ["bench", _write(c.work / "empty.xml", b"")], ("empty.xml", "empty")),
    Case("ckpt-zero-byte", "export", lambda c: ["export", _write(c.work / "zero.pt", b""), "-o", c.work / "m.onnx"],
         ("zero.pt", "empty")),
    Case("ckpt-pickled-code", "bench", lambda c: ["bench", _evil(c), "--runs", "2"], ("evil.pt", "pickled")),
    Case("ckpt-pickled-code-validate", "validate", lambda c: ["validate", _evil(c), "--data", c.data / "val"],
         ("evil.pt", "pickled")),
    Case("ckpt-pickled-code-prune", "prune", lambda c: ["prune", _evil(c), "-o", c.work / "p.pt", "--measure",
                                                       "none"], ("evil.pt", "pickled")),
    Case("ckpt-other-architecture", "validate", lambda c: ["validate", _resnet18(c), "--data", c.data / "val"],
         ("resnet18.pt", "do not fit")),
    Case("ckpt-damaged-metadata", "export", lambda c: ["export", _rtk_ckpt(c, "damaged.pt", meta={"arch": "x"},
                                                      state_dict={}), "-o", c.work / "m.onnx"],
         ("damaged.pt", "metadata")),
    Case("ckpt-without-weights", "export", lambda c: ["export", _rtk_ckpt(c, "noweights.pt", meta={
        "num_classes": 2, "class_names": ["a", "b"]}), "-o", c.work / "m.onnx"], ("noweights.pt", "state_dict")),
    Case("export-negative-input-size", "export", lambda c: ["export", "--weights", "random", "--num-classes", "4",
                                                           "--input-size", "-5", "-o", c.work / "m.onnx"],
         ("--input-size",)),
    Case("export-zero-classes", "export", lambda c: ["export", "--weights", "random", "--num-classes", "0",
                                                    "-o", c.work / "m.onnx"], ("--num-classes",)),
    Case("isa-unknown-tier", "validate", lambda c: ["validate", c.onnx, "--data", c.data / "val", "--isa", "SSE9"],
         ("--isa", "unknown tier", "AVX2")),
    Case("isa-above-this-cpu", "validate", lambda c: ["validate", c.onnx, "--data", c.data / "val", "--isa", ABOVE],
         ("--isa", "lacks", "can only go down"), marks=[NO_ABOVE]),
    Case("isa-capped-process-bad-data", "validate", lambda c: ["validate", c.onnx, "--data", c.work / "missing",
                                                              "--isa", "AVX2"], ("missing", "not found"),
         marks=[NO_AVX2]),
    Case("quantize-isa-unknown-tier", "quantize", lambda c: ["quantize", c.onnx, "-o", c.work / "q.onnx", "--calib",
                                                            c.data / "train", "--isa", "AVX3"],
         ("--isa AVX3", "unknown tier", "AVX2")),
    Case("quantize-isa-for-tensorrt", "quantize", lambda c: ["quantize", c.onnx, "-o", c.work / "q.onnx", "--calib",
                                                            c.data / "train", "--target", "tensorrt", "--isa", "avx2"],
         ("--isa AVX2", "GPU", "drop --isa")),
    # single images
    Case("image-truncated-jpeg", "predict", lambda c: ["predict", _write(c.work / "cut.jpg", jpeg_bytes()[:600]),
                                                      "--model", c.onnx], ("cut.jpg", "truncated")),
    Case("image-zero-byte", "predict", lambda c: ["predict", _write(c.work / "zero.png", b""), "--model", c.onnx],
         ("zero.png",)),
    Case("image-decompression-bomb", "predict", lambda c: ["predict", _write(c.work / "bomb.png",
                                                          png_header_only(30000, 30000)), "--model", c.onnx],
         ("bomb.png", "too large")),
    Case("image-text-file", "predict", lambda c: ["predict", _write(c.work / "notes.jpg", "hello"), "--model",
                                                 c.onnx], ("notes.jpg",)),
    *[Case(f"image-{kind}", "predict", (lambda k: lambda c: ["predict", unusual_images(c.work / "img")[k], "--model",
                                                               c.onnx, "--json", c.work / "p.json"])(kind),
           outcome="handled") for kind in ("cmyk", "16bit", "gray", "rgba", "palette", "1x1")],
    # data folders
    Case("data-truncated-jpeg", "validate", lambda c: ["validate", c.onnx, "--data",
                                                      _data_with(c, "cut.jpg", jpeg_bytes()[:600]), *VAL_ARGS],
         outcome="skipped", skipped=1),
    Case("data-jpeg-cut-in-its-data", "validate", lambda c: ["validate", c.onnx, "--data", _data_with(
        c, "half.jpg", jpeg_bytes(256)[:4000]), *VAL_ARGS], outcome="skipped", skipped=1),
    Case("data-elongated-image", "validate", lambda c: ["validate", c.onnx, "--data",
                                                       _data_with(c, "strip.png", _image_bytes(1000, 10)), *VAL_ARGS],
         outcome="skipped", skipped=1),
    Case("path-symlink-loop", "predict", lambda c: ["predict", _loop_link(c), "--model", c.onnx], ("l1.jpg", "loops")),
    Case("data-decompression-bomb", "validate", lambda c: ["validate", c.onnx, "--data",
                                                          _data_with(c, "bomb.png", png_header_only(10000, 10000)),
                                                          *VAL_ARGS], outcome="skipped", skipped=1),
    Case("data-fifo", "validate", lambda c: ["validate", c.onnx, "--data", _fifo(c), *VAL_ARGS],
         outcome="skipped", skipped=1),
    Case("data-symlink-file-loop-and-dangling", "validate", lambda c: ["validate", c.onnx, "--data", _links(c),
                                                                      *VAL_ARGS], outcome="skipped", skipped=2),
    Case("data-unreadable-chmod-000", "validate", lambda c: ["validate", c.onnx, "--data", _chmod000(c), *VAL_ARGS],
         outcome="skipped", skipped=1, images_added=-1, needs_non_root=True),
    Case("data-symlink-folder-loop", "validate", lambda c: ["validate", c.onnx, "--data", _dir_loop(c)],
         ("loop", "symlink")),
    Case("data-no-class-folders", "validate", lambda c: ["validate", c.onnx, "--data", _flat(c)], ("flat",)),
    Case("data-extra-class-folder", "validate", lambda c: ["validate", c.onnx, "--data", _extra_class(c)],
         ("zz_extra",)),
    Case("data-unusual-images", "validate", lambda c: ["validate", c.onnx, "--data", _unusual_data(c), *VAL_ARGS],
         outcome="skipped", skipped=0, images_added=6),
    Case("calib-folder-empty", "quantize", lambda c: ["quantize", c.onnx, "-o", c.work / "q.onnx", "--calib",
                                                     _write(c.work / "calib" / "a" / "notes.txt", "").parent.parent],
         ("calib", "no images")),
    # recipes
    Case("yaml-alias-bomb", "recipe check", lambda c: ["recipe", "check", _recipe(c, ALIAS_BOMB)], ("r.yaml", "aliases")),
    Case("yaml-deep-nesting", "recipe check", lambda c: ["recipe", "check", _recipe(c, "[" * 5000 + "]" * 5000)],
         ("r.yaml", "nested too deeply")),
    Case("yaml-python-tag", "recipe check", lambda c: ["recipe", "check", _recipe(
        c, f"name: !!python/object/apply:os.system ['touch {c.work / 'PWNED'}']\n")], ("r.yaml", "python/object")),
    Case("yaml-unknown-key", "run", lambda c: ["run", _recipe(c, RECIPE + "bench:\n  runz: 5\n"), "-o", c.work / "o"],
         ("r.yaml:8", "bench.runz")),
    Case("yaml-wrong-type", "recipe check", lambda c: ["recipe", "check", _recipe(c, RECIPE + "seed: many\n")],
         ("r.yaml:7", "seed")),
    Case("yaml-not-utf8", "recipe check", lambda c: ["recipe", "check", _recipe(c, b"\xff\xfe\x00name")],
         ("r.yaml",)),
    Case("yaml-empty", "recipe check", lambda c: ["recipe", "check", _recipe(c, "")], ("r.yaml", "mapping")),
    # paths and outputs
    Case("paths-spaces-unicode", "predict", lambda c: ["predict", _write(c.work / "my images" / "ünï cödé 图.png",
                                                       c.image().read_bytes()), "--model", c.onnx, "--json",
                                                      _write(c.work / "out dir ü" / ".keep", "").parent / "结果.json"],
         outcome="handled"),
    Case("paths-unicode-data-folder", "validate", lambda c: ["validate", c.onnx, "--data", _unicode_data(c),
                                                             *VAL_ARGS], outcome="skipped", skipped=0),
    Case("output-is-a-folder", "export", lambda c: ["export", c.ckpt, "-o", c.work], ("is a folder",)),
    Case("output-read-only-filesystem", "export", lambda c: ["export", c.ckpt, "-o", "/proc/rtk-test.onnx"],
         ("/proc", "choose another output")),
    Case("bench-decode-flag-without-images", "bench", lambda c: ["bench", c.onnx, "--exact-decode", "--workers", "3"],
         ("--exact-decode", "--workers", "add --images DIR")),
    Case("output-json-missing-folder", "bench", lambda c: ["bench", c.onnx, "--json", c.work / "no" / "r.json"],
         ("--json", "does not exist")),
    Case("output-json-under-a-file", "bench", lambda c: ["bench", c.onnx, "--json", c.onnx / "sub" / "r.json"],
         ("--json", "is a file, not a folder")),
    Case("output-under-a-file", "export", lambda c: ["export", c.ckpt, "-o", c.ckpt / "sub" / "m.onnx"],
         ("is a file, not a folder", "choose another path")),
    Case("output-run-under-a-file", "run", lambda c: ["run", _recipe(c, RECIPE), "-o", c.onnx / "run"],
         ("is a file, not a folder",)),
    Case("output-json-is-a-folder", "validate", lambda c: ["validate", c.onnx, "--data", c.data / "val",
                                                          "--json", c.work], ("--json", "is a folder")),
    Case("output-run-folder-is-a-file", "run", lambda c: ["run", _recipe(c, RECIPE), "-o", _write(c.work / "f", "")],
         ("is a file",)),
    # sweeps and sharded validation (the faults while a sweep runs: tests/test_sweep.py)
    Case("sweep-recipe-in-run", "run", lambda c: ["run", _recipe(c, SWEEP), "-o", c.work / "out"],
         ("has a sweep: block", "rtk sweep")),
    Case("sweep-without-block", "sweep", lambda c: ["sweep", _recipe(c, RECIPE), "-o", c.work / "out"],
         ("has no sweep: block",)),
    Case("sweep-invalid-candidate", "sweep", lambda c: ["sweep", _recipe(c, SWEEP.replace("0.5]", "1.5]")), "-o",
                                                       c.work / "out"], ("candidate c1", "prune.ratio=1.5")),
    Case("sweep-duplicate-value", "sweep", lambda c: ["sweep", _recipe(c, SWEEP.replace("0.5]", "0.3]")), "-o",
                                                     c.work / "out"], ("prune.ratio lists 0.3 twice",)),
    Case("sweep-quantize-without-int8", "sweep", lambda c: ["sweep", _recipe(c, RECIPE + "sweep:\n  values:\n    "
                                                               "quantize.subset: [4, 8]\n    precision: [fp32]\n"),
                                                           "-o", c.work / "out"],
         ("r.yaml:9: sweep.values: quantize.subset applies to int8 candidates", "add int8 to precision")),
    Case("sweep-output-holds-recipe", "sweep", lambda c: ["sweep", _recipe(c, SWEEP), "-o", c.work, "--force",
                                                         "--no-ray"], ("r.yaml is inside this folder",)),
    Case("sweep-output-is-the-recipe", "sweep", lambda c: ["sweep", _recipe(c, SWEEP), "-o", c.work / "r.yaml",
                                                          "--force", "--no-ray"], ("r.yaml is the input",)),
    Case("sweep-empty-values", "sweep", lambda c: ["sweep", _recipe(c, RECIPE + "sweep:\n  values: {}\n"), "-o",
                                                  c.work / "out"], ("no field to sweep", "prune.ratio: [0.3, 0.5]")),
    Case("sweep-recipe-is-a-folder", "sweep", lambda c: ["sweep", _mkdir(c.work / "r.yaml"), "-o", c.work / "out"],
         ("is not a regular file", "give a recipe YAML file")),
    Case("sweep-output-uncreatable", "sweep", lambda c: ["sweep", _recipe(c, SWEEP), "-o", "/proc/rtk-out"],
         ("cannot create the sweep folder", "choose another -o")),
    Case("sweep-json-in-its-state", "sweep", lambda c: ["sweep", _recipe(c, SWEEP), "-o", c.work / "out", "--resume",
                                                       "--json", _mkdir(c.work / "out" / "candidates" / "c0") /
                                                       "report.json"], ("is inside", "candidates", "outside it")),
    Case("sweep-address-no-answer", "sweep", lambda c: ["sweep", _recipe(c, SWEEP), "-o", c.work / "out",
                                                       "--address", _closed_port()], ("does not answer",)),
    Case("sweep-lock-is-a-folder", "sweep", lambda c: ["sweep", _recipe(c, SWEEP), "-o", _mkdir(
        c.work / "out" / ".rtk" / "sweep.lock").parents[1], "--force", "--no-ray"],
         ("cannot open the sweep's lock", "sweep.lock (Is a directory); remove it")),
    Case("sweep-address-empty", "sweep", lambda c: ["sweep", _recipe(c, SWEEP), "-o", c.work / "out", "--address", ""],
         ("--address is empty",)),
    Case("sweep-address-and-no-ray", "sweep", lambda c: ["sweep", _recipe(c, SWEEP), "-o", c.work / "out",
                                                        "--address", "10.0.0.1:6379", "--no-ray"],
         ("drop --no-ray",)),
    Case("validate-ray-address-no-answer", "validate", lambda c: ["validate", c.onnx, "--data", c.data / "val",
                                                                 "--ray", "--address", _closed_port()],
         ("does not answer", "--address")),
    Case("validate-ray-with-isa", "validate", lambda c: ["validate", c.onnx, "--data", c.data / "val", "--ray",
                                                        "--isa", "AVX2"], ("--isa", "not both")),
]


def _params():
    out = []
    for case in CASES:
        marks = list(case.marks)
        if case.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=case.xfail))
        if case.needs_non_root and os.geteuid() == 0:
            marks.append(pytest.mark.skip(reason="running as root: chmod 000 does not stop root from reading; the "
                                                 "FIFO and dangling-symlink cases cover unreadable files instead"))
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.fixture(scope="module")
def truncated_onnx(tmp_path_factory, random_onnx) -> Path:
    data = random_onnx.read_bytes()
    path = tmp_path_factory.mktemp("trunc") / "trunc.onnx"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("case", _params())
def test_catalogue(case: Case, cli, tmp_path, tiny_data, random_onnx, random_ckpt, truncated_onnx):
    work = tmp_path / "work"
    work.mkdir()
    ctx = Ctx(work=work, data=tiny_data, onnx=random_onnx, ckpt=random_ckpt, trunc=truncated_onnx)
    args = case.build(ctx)
    report_path = tmp_path / "v.json"
    if case.outcome == "skipped":
        args = [*args, "--json", report_path]
    before = _tree(work)
    result = cli(*args)
    after = _tree(work)
    assert not [p for p in after if p.endswith(".tmp")], after
    assert not (work / "PWNED").exists(), "pickled or tagged code ran"
    if case.outcome == "refused":
        assert result.exit_code == 2, (result.exit_code, result.stdout[-500:], result.stderr[-1500:])
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        assert lines and lines[-1].startswith("error:"), result.stderr
        assert sum(line.startswith("error:") for line in lines) == 1, result.stderr
        assert "Traceback" not in result.stderr
        one = lines[-1]
        for fragment in case.names:
            assert fragment in one, (fragment, one)
        assert after == before, f"left behind: {sorted(after - before)}"
        return
    assert result.exit_code == 0, (result.stdout[-500:], result.stderr[-1500:])
    if case.outcome == "skipped":
        report = json.loads(report_path.read_text())
        assert report["skipped"] == case.skipped, result.stderr
        assert report["images"] == len(list((tiny_data / "val").rglob("*.png"))) + case.images_added
        if case.skipped:
            assert f"{case.skipped} file" in result.stderr.replace("\n", " ")
            assert len(report["skipped_files"]) == case.skipped


def test_catalogue_is_documented():
    """Every case id is a row of docs/bad-inputs.md, and the table has at least 25 rows."""
    text = DOC.read_text(encoding="utf-8")
    missing = [c.id for c in CASES if f"`{c.id}`" not in text]
    assert not missing, missing
    assert len(CASES) >= 25


def test_unusual_images_become_rgb(tmp_path):
    from toolkit.data import load_image

    for kind, path in unusual_images(tmp_path).items():
        img = load_image(path)
        assert img.mode == "RGB", kind
        assert img.size == Image.open(path).size, kind
    rgb16 = np.asarray(load_image(unusual_images(tmp_path)["16bit"]))
    assert rgb16.max() > 200, "16-bit values were not scaled to 8 bits"


def test_pickled_checkpoint_never_runs_even_in_python(tmp_path):
    """The library call itself (not only the CLI) refuses the pickle before any of it executes."""
    from toolkit.errors import RtkError
    from toolkit.models import read_checkpoint

    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save(Payload(marker), path)
    with pytest.raises(RtkError, match="pickled"):
        read_checkpoint(path)
    assert not marker.exists()


def _rtk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_traceback_only_with_debug(tmp_path):
    """A real process: one line and exit 2 by default; the traceback appears with --debug."""
    bad = _write(tmp_path / "deep.yaml", "[" * 5000 + "]" * 5000)
    plain = _rtk("recipe", "check", str(bad), cwd=tmp_path)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().count("\n") == 0 and "deep.yaml" in plain.stderr
    debug = _rtk("--debug", "recipe", "check", str(bad), cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "RtkError" in debug.stderr


# ---------------------------------------------------------------- reproducibility

def test_export_is_byte_identical_and_records_parent_hash(cli, tmp_path, random_ckpt):
    from toolkit.io import sha256_file
    from toolkit.onnx_file import read_onnx_meta

    hashes = []
    for name in ("a.onnx", "b.onnx"):
        out = tmp_path / name
        result = cli("export", random_ckpt, "-o", out, "--json", tmp_path / f"{name}.json")
        assert result.exit_code == 0, result.stderr
        reported = json.loads((tmp_path / f"{name}.json").read_text())["sha256"]
        assert reported == sha256_file(out)
        hashes.append(reported)
    assert hashes[0] == hashes[1]
    step = read_onnx_meta(tmp_path / "a.onnx").provenance["history"][-1]
    assert step["step"] == "export" and step["parent_sha256"] == sha256_file(random_ckpt)


@pytest.fixture(scope="module")
def two_int8(tmp_path_factory, random_onnx, tiny_data) -> tuple[Path, Path]:
    from toolkit.quantize import quantize_int8
    from toolkit.settings import QuantizeSettings

    folder = tmp_path_factory.mktemp("int8")
    outs = []
    for name in ("a.onnx", "b.onnx"):
        out = folder / name
        quantize_int8(random_onnx, output=out, calib=tiny_data / "train", target="onnxruntime",
                      settings=QuantizeSettings(subset=8, allow_small=True, bench_runs=0))
        outs.append(out)
    return outs[0], outs[1]


def _graph_sha(path: Path) -> str:
    import hashlib

    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def test_int8_graph_is_identical_and_records_parent_hash(two_int8, random_onnx):
    from toolkit.io import sha256_file
    from toolkit.onnx_file import read_onnx_meta

    a, b = two_int8
    assert _graph_sha(a) == _graph_sha(b), "NNCF gave different scales/weights for the same inputs and seed"
    step = read_onnx_meta(a).provenance["history"][-1]
    assert step["step"] == "quantize" and step["parent_sha256"] == sha256_file(random_onnx)


def test_int8_file_is_byte_identical(two_int8):
    from toolkit.io import sha256_file

    a, b = two_int8
    assert sha256_file(a) == sha256_file(b)


def test_a_bug_exits_3_with_one_line_and_debug_shows_the_traceback(cli, monkeypatch):
    """An unexpected exception is not bad input (2) or a failed gate (1): exit 3, one line, no traceback."""
    import toolkit.doctor

    def broken(*args, **kwargs):
        raise ValueError("cpu table has no row\nsecond line")

    monkeypatch.setattr(toolkit.doctor, "doctor", broken)
    res = cli("doctor")
    assert res.exit_code == 3
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error (ValueError: cpu table has no row)" in lines[0] and "--debug" in lines[0]
    with pytest.raises(ValueError):
        cli("--debug", "doctor")
