"""Images in, tensors out: the one preprocessing path used by finetune, calibration, validation and predict.

Data sets are torchvision ImageFolder trees (one folder per class). Files that are not images, or that
cannot be decoded, are skipped and counted (`ImageSet.skipped`), and the count is reported; a folder with
no usable image is refused.
"""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageFile
from torchvision import datasets, transforms
from torchvision.transforms import InterpolationMode

from toolkit.artifact import Preprocess
from toolkit.errors import RtkError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
ImageFile.LOAD_TRUNCATED_IMAGES = False
_INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
           "nearest": InterpolationMode.NEAREST}


def eval_transform(pre: Preprocess) -> transforms.Compose:
    return transforms.Compose([
        transforms.Resize(pre.resize, interpolation=_INTERP[pre.interpolation], antialias=True),
        transforms.CenterCrop(pre.crop),
        transforms.ToTensor(),
        transforms.Normalize(pre.mean, pre.std),
    ])


AUGMENT = ("full", "flip", "none")


def train_transform(pre: Preprocess, *, augment: str = "full",
                    scale: tuple[float, float] = (0.6, 1.0)) -> transforms.Compose:
    """Training augmentation sized by the same Preprocess: "full" is the ImageNet-style random-resized crop + flip,
    "flip" the eval transform plus a horizontal flip, "none" the eval transform."""
    if augment not in AUGMENT:
        raise RtkError(f"augmentation {augment!r}: use one of {', '.join(AUGMENT)}")
    if augment != "full":
        flip = [transforms.RandomHorizontalFlip()] if augment == "flip" else []
        return transforms.Compose([*flip, eval_transform(pre)])
    return transforms.Compose([
        transforms.RandomResizedCrop(pre.crop, scale=scale, interpolation=_INTERP[pre.interpolation], antialias=True),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(pre.mean, pre.std),
    ])


def load_image(path: str | Path) -> Image.Image:
    """Decode any common image into 8-bit RGB (grayscale, RGBA, CMYK, palette, 16-bit included)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RtkError(f"{path}: image is too large to decode safely (over {Image.MAX_IMAGE_PIXELS} px); resize it") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise RtkError(f"{path}: cannot decode image ({exc}); remove or replace the file") from None


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _readable_image(path: str) -> bool:
    """A regular file (not a FIFO or device, which would block) that PIL can verify and is not a decompression bomb."""
    if not path.lower().endswith(IMAGE_EXTENSIONS):
        return False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.verify()
        return True
    except Exception:
        return False


def _symlink_loop(root: Path) -> str | None:
    """The first folder symlink under `root` that points back at one of its own ancestors (os.walk would loop)."""
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        here = os.path.realpath(dirpath)
        for name in dirnames:
            link = os.path.join(dirpath, name)
            if os.path.islink(link):
                target = os.path.realpath(link)
                if here == target or here.startswith(target.rstrip(os.sep) + os.sep):
                    return link
    return None


@dataclass
class ImageSet:
    """An ImageFolder of usable images plus what was left out of it."""

    root: Path
    folder: datasets.ImageFolder
    skipped: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return list(self.folder.classes)

    def __len__(self) -> int:
        return len(self.folder)

    @property
    def samples(self) -> list[tuple[str, int]]:
        """(path, class index) of every usable image, in order."""
        return self.folder.samples

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.folder.targets, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}


def split_dir(root: Path, split: str) -> Path:
    """`root/split` when the data set has splits, else `root` itself."""
    root = Path(root)
    return root / split if (root / split).is_dir() else root


def image_folder(root: str | Path, pre: Preprocess, *, train: bool = False, augment: str = "full") -> ImageSet:
    """Open an ImageFolder with the eval (or `augment`ed train) transform of `pre`; refuse empty or missing folders."""
    root = Path(root)
    if not root.is_dir():
        raise RtkError(f"data folder {root} not found; pass a folder with one sub-folder of images per class")
    loop = _symlink_loop(root)
    if loop:
        raise RtkError(f"{loop} is a symlink back to a folder that contains it (a loop); remove the link")
    seen: list[str] = []
    skipped: list[str] = []

    def valid(path: str) -> bool:
        ok = _readable_image(path)
        (seen if ok else skipped).append(path)
        return ok

    tf = train_transform(pre, augment=augment) if train else eval_transform(pre)
    try:
        folder = datasets.ImageFolder(str(root), transform=tf, loader=load_image, is_valid_file=valid,
                                      allow_empty=True)
    except (FileNotFoundError, OSError) as exc:
        raise RtkError(f"data folder {root}: {exc}; it needs one sub-folder of images per class") from None
    if len(folder) == 0:
        raise RtkError(f"data folder {root} holds no readable images; it needs one sub-folder of images per class")
    return ImageSet(root=root, folder=folder, skipped=sorted(skipped))


class _Listed(datasets.ImageFolder):
    """An ImageFolder over (path, class index) pairs already known, e.g. one shard of a scanned folder: the
    folder is not scanned again."""

    def __init__(self, root: Path, classes: Sequence[str], samples: Sequence[tuple[str, int]], transform) -> None:
        self._known = (list(classes), [(str(p), int(c)) for p, c in samples])
        super().__init__(str(root), transform=transform, loader=load_image, allow_empty=True)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = self._known[0]
        return classes, {name: i for i, name in enumerate(classes)}

    def make_dataset(self, *args, **kwargs) -> list[tuple[str, int]]:
        return self._known[1]


def from_samples(root: str | Path, classes: Sequence[str], samples: Sequence[tuple[str, int]],
                 pre: Preprocess) -> ImageSet:
    """The ImageSet of listed images (a shard of `image_folder(root)`'s samples), with the eval transform."""
    return ImageSet(root=Path(root), folder=_Listed(Path(root), classes, samples, eval_transform(pre)))


def check_classes(model_classes: Sequence[str], data: ImageSet, what: str = "model") -> None:
    """Refuse data whose class folders are not the model's classes in the model's order."""
    if list(model_classes) == data.classes:
        return
    missing = [c for c in model_classes if c not in data.classes]
    extra = [c for c in data.classes if c not in model_classes]
    if missing or extra:
        raise RtkError(f"{what} classes do not match the folders of {data.root}: missing {missing[:5]}, "
                       f"unexpected {extra[:5]}; use data with the model's classes")
    raise RtkError(f"{what} lists its classes in another order than {data.root} (folders sort alphabetically); "
                   "re-train or re-export with the folder order")


def loader(data: ImageSet, *, batch_size: int, shuffle: bool = False, seed: int = 0,
           workers: int = 1) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(data.folder, batch_size=batch_size, shuffle=shuffle, generator=generator,
                                       num_workers=workers, persistent_workers=False)


def batches(data: ImageSet, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images NCHW float32, labels int64) in file order, decoded once, with a loader worker.

    An image that stops decoding after the folder was scanned fails with its own one-line message, not the
    worker's traceback that torch puts into the re-raised error.
    """
    try:
        for images, labels in loader(data, batch_size=batch_size):
            yield images.numpy(), labels.numpy()
    except RtkError as exc:
        raise RtkError(worker_message(str(exc))) from None


def worker_message(text: str) -> str:
    """The original one-line message of an RtkError re-raised by a DataLoader worker."""
    marker = "RtkError: "
    last = text.strip().splitlines()[-1] if text.strip() else text
    return last.split(marker, 1)[1] if marker in last else last


def preprocess_files(paths: Sequence[str | Path], pre: Preprocess) -> np.ndarray:
    tf = eval_transform(pre)
    return np.stack([tf(load_image(p)).numpy() for p in paths])
