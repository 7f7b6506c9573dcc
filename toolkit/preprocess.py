"""The eval transform in numpy + Pillow: resize the shorter side, center crop, scale to [0, 1], normalise.

This is what feeds every artifact (validate, predict, calibration), and it needs no torch, so a device with the
runtime-only install computes the same inputs as the machine that built the model. It reproduces torchvision's
`Resize(resize, antialias=True)`, `CenterCrop(crop)`, `ToTensor()`, `Normalize(mean, std)` on PIL images step
for step: Pillow does the same resampling call, the output size and crop offsets use torchvision's integer
rules (including its zero padding when the image is smaller than the crop), and the arithmetic is the same
float32 operations. tests/test_preprocess.py proves it equal (max |diff| <= 1e-6) over image shapes, modes and
interpolations. Training augmentation stays in toolkit.data, on torchvision.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from toolkit.artifact import Preprocess
from toolkit.images import ImageSet, load_image, scan_folder, to_rgb

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
            "nearest": Image.Resampling.NEAREST}


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(width, height) with the shorter side `short` and the longer one truncated, as torchvision computes it."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def center_crop(pixels: np.ndarray, crop: int) -> np.ndarray:
    """The centre `crop` x `crop` of an HWC array; a smaller image is zero-padded first (torchvision's rule:
    the odd pixel of padding goes right/bottom, the crop offset rounds half to even)."""
    height, width = pixels.shape[:2]
    if crop > width or crop > height:
        pad_w, pad_h = max(crop - width, 0), max(crop - height, 0)
        pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        height, width = pixels.shape[:2]
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return pixels[top:top + crop, left:left + crop]


def eval_array(img: Image.Image, pre: Preprocess) -> np.ndarray:
    """A decoded image (made 8-bit RGB by `to_rgb` if it is not) as the artifact's input: `to_input` of its
    resized, center-cropped pixels."""
    return to_input(crop_pixels(img, pre), pre)


def crop_pixels(img: Image.Image, pre: Preprocess) -> np.ndarray:
    """The resized, center-cropped 8-bit RGB pixels of a decoded image, HWC uint8: what an artifact with embedded
    preprocessing takes as it is."""
    if img.mode != "RGB":
        img = to_rgb(img)
    size = resized_size(img.width, img.height, pre.resize)
    if size != img.size:
        img = img.resize(size, RESAMPLE[pre.interpolation])
    return np.ascontiguousarray(center_crop(np.asarray(img, dtype=np.uint8), pre.crop))


def to_input(pixels: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Cropped RGB pixels (HWC, or NHWC for a batch, uint8) as the artifact's input: the pixels themselves where
    it embeds its preprocessing; else float32, CHW (NCHW) or HWC (NHWC) for an NHWC model, channels in the model's
    order (BGR swaps them before mean/std, which are in that order), the 0-255 range skipping the division by 255
    (Caffe/Keras "caffe" mode: BGR, mean in pixels, std 1)."""
    if pre.embedded:
        return pixels
    if pre.channels == "BGR":
        pixels = pixels[..., ::-1]
    table = normalized_values(pre.mean, pre.std, pre.pixels)
    lead = pixels.shape[:-3]
    x = np.empty((*lead, 3, *pixels.shape[-3:-1]), np.float32)
    for c in range(3):      # mode="clip" skips take's buffered bounds check; uint8 indices are always in range
        np.take(table[c], pixels[..., c], out=x[..., c, :, :], mode="clip")
    return np.ascontiguousarray(np.moveaxis(x, -3, -1)) if pre.layout == "NHWC" else x


def random_input(pre: Preprocess, batch: int, rng: np.random.Generator) -> np.ndarray:
    """A random batch of the artifact's input (timing needs its shape and type, not a photo): uint8 pixels where
    the artifact embeds its preprocessing, else standard normal float32."""
    if pre.embedded:
        return rng.integers(0, 256, (batch, *pre.input_shape), dtype=np.uint8)
    return rng.standard_normal((batch, *pre.input_shape)).astype(np.float32)


@functools.lru_cache(maxsize=32)
def normalized_values(mean: tuple[float, ...], std: tuple[float, ...], pixels: str) -> np.ndarray:
    """(3, 256) float32: channel c's normalised value of each 8-bit pixel value, by the float32 operations
    torchvision's ToTensor + Normalize apply ((v / 255 - mean) / std, or (v - mean) / std for 0-255 pixels), so
    a lookup gives the same bits as computing every pixel (about 10x fewer passes over a 224x224 image)."""
    x = np.broadcast_to(np.arange(256, dtype=np.float32), (3, 256))
    if pixels == "0-1":
        x = x / np.float32(255)
    table = (x - np.asarray(mean, np.float32).reshape(3, 1)) / np.asarray(std, np.float32).reshape(3, 1)
    table.flags.writeable = False
    return table


def preprocess_files(paths: Sequence[str | Path], pre: Preprocess) -> np.ndarray:
    """Decode and preprocess image files into one NCHW float32 batch."""
    return np.stack([eval_array(load_image(p), pre) for p in paths])


def batches(data: ImageSet, pre: Preprocess, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images NCHW float32, labels int64) in file order, each image decoded once.

    The next batch is decoded in a second thread while the caller runs the current one (Pillow and numpy
    release the GIL while they decode, resample and convert), as a loader worker would.
    """
    def load(start: int) -> tuple[np.ndarray, np.ndarray]:
        chunk = data.samples[start:start + batch_size]
        return (np.stack([eval_array(load_image(path), pre) for path, _ in chunk]),
                np.asarray([label for _, label in chunk], dtype=np.int64))

    starts = range(0, len(data), batch_size)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, starts[0]) if starts else None
        for i in range(len(starts)):
            current = pending.result()
            pending = pool.submit(load, starts[i + 1]) if i + 1 < len(starts) else None
            yield current


def sample_inputs(pre: Preprocess, data: Path | None, count: int = 16) -> tuple[np.ndarray, str]:
    """`count` preprocessed images spread over the labeled folder `data`, else drawn from the built-in set, and
    where they came from: the inputs export's parity check and the FP16 ONNX's CPU check compare models on."""
    if data is not None:
        found = scan_folder(data)
        picks = np.linspace(0, len(found) - 1, num=min(count, len(found))).astype(int)
        return preprocess_files([found.samples[i][0] for i in picks], pre), str(data)
    from toolkit.synth import CLASS_NAMES, draw

    rng = np.random.default_rng(0)
    return (np.stack([eval_array(draw(i % len(CLASS_NAMES), rng, pre.resize), pre) for i in range(count)]),
            "built-in synthetic images")
