"""Training data on torch: torchvision transforms and a torch Dataset over a scanned ImageFolder.

Decoding and the folder scan are torch-free (toolkit.images), and so is the eval transform that feeds
artifacts (toolkit.preprocess); this module adds what training needs on top: torchvision's augmentation, the
same eval transform as a torchvision Compose for the PyTorch side (tests prove the two equal), and a
DataLoader. Its older names (load_image, to_rgb, IMAGE_EXTENSIONS, split_dir, check_classes, ...) still
import from here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from toolkit import images, preprocess
from toolkit.artifact import Preprocess
from toolkit.errors import RtkError
from toolkit.settings import AUGMENT
from toolkit.images import (IMAGE_EXTENSIONS, check_classes, load_image, readable_image as _readable_image,
                            split_dir, to_rgb)

_INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
           "nearest": InterpolationMode.NEAREST}


def eval_transform(pre: Preprocess) -> transforms.Compose:
    return transforms.Compose([
        transforms.Resize(pre.resize, interpolation=_INTERP[pre.interpolation], antialias=True),
        transforms.CenterCrop(pre.crop),
        transforms.ToTensor(),
        transforms.Normalize(pre.mean, pre.std),
    ])


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


class Folder(torch.utils.data.Dataset):
    """A scanned ImageSet as a torch Dataset: (transformed image tensor, label), with ImageFolder's attributes."""

    def __init__(self, data: images.ImageSet, transform: Callable):
        self.root, self.classes, self.samples = str(data.root), data.classes, data.samples
        self.targets, self.transform = data.targets, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        return self.transform(load_image(path)), label


@dataclass
class ImageSet(images.ImageSet):
    """A scanned ImageFolder plus the preprocessing it was opened with; `folder` is its torch Dataset view."""

    preprocess: Preprocess | None = None
    transform: Callable | None = None

    @functools.cached_property
    def folder(self) -> Folder:
        return Folder(self, self.transform)


def image_folder(root: str | Path, pre: Preprocess, *, train: bool = False, augment: str = "full") -> ImageSet:
    """Open an ImageFolder with the eval (or `augment`ed train) transform of `pre`; refuse empty or missing folders."""
    tf = train_transform(pre, augment=augment) if train else eval_transform(pre)
    scan = images.scan_folder(root)
    return ImageSet(root=scan.root, classes=scan.classes, samples=scan.samples, skipped=scan.skipped,
                    preprocess=pre, transform=tf)


def loader(data: ImageSet, *, batch_size: int, shuffle: bool = False, seed: int = 0,
           workers: int = 1) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(data.folder, batch_size=batch_size, shuffle=shuffle, generator=generator,
                                       num_workers=workers, persistent_workers=False)


def batches(data: ImageSet, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images NCHW float32, labels int64) in file order through the torch-free eval transform."""
    return preprocess.batches(data, data.preprocess, batch_size)


def preprocess_files(paths: Sequence[str | Path], pre: Preprocess) -> np.ndarray:
    return preprocess.preprocess_files(paths, pre)
