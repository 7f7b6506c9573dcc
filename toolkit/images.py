"""Image files in, 8-bit RGB out, and labeled image folders scanned: no torch, so a device install can validate.

A labeled folder is an ImageFolder tree (one sub-folder per class), read by the rules of torchvision's
`datasets.ImageFolder`: class folders sorted by name, files under each (sub-folders included) in sorted
`os.walk` order (GIFs are images here, first frame, as in `rtk predict`). Files that are not images, whose header
cannot be read, JPEGs cut short in their data (`jpeg_data_ends`) and images over 64:1 are skipped and counted
(`ImageSet.skipped`); a folder with no usable image is refused. tests/test_preprocess.py proves the scan equal
to torchvision's on a tree with nested folders, hidden files, broken images and a symlinked class.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageFile

from toolkit.errors import RtkError

# torchvision's IMG_EXTENSIONS plus .gif, which `rtk predict` reads too (its first frame): one rule for a single
# image and a data folder, so a GIF is never a photo in one command and a skipped file in another.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
ImageFile.LOAD_TRUNCATED_IMAGES = False
MAX_ASPECT = 64     # a 1,000,000 x 1 px PNG (3 KB) would be resized to 256,000,000 x 256 px (16 GB)


def too_elongated(size: tuple[int, int]) -> bool:
    """Over MAX_ASPECT:1: resizing its shorter side to the model's would make the image huge."""
    return max(size) > MAX_ASPECT * max(1, min(size))


def load_image(path: str | Path, *, draft: int | None = None) -> Image.Image:
    """Decode any common image into 8-bit RGB (grayscale, RGBA, CMYK, palette, 16-bit included).

    `draft` (the fast decode): a JPEG is decoded with libjpeg's DCT scaling (Pillow's `Image.draft`) to the
    smallest 1/2, 1/4 or 1/8 scale whose sides are still at least `draft` pixels, so a 4000x3000 photo for a
    256-pixel resize decodes at 1/8 scale (500x375) instead of in full; other formats decode in full.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):   # a FIFO would block the open, a device stream forever
            raise RtkError(f"{path} is not a regular file (a folder, pipe or device); give an image file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if too_elongated(img.size):
                    raise RtkError(f"{path}: image {img.width}x{img.height} is too elongated to classify (over "
                                   f"{MAX_ASPECT}:1: resizing its shorter side would make it huge); crop it first")
                if draft and img.format == "JPEG":
                    img.draft("RGB", (draft, draft))
                img.load()
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RtkError(f"{path}: image is too large to decode safely (over {Image.MAX_IMAGE_PIXELS} px); resize it") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise RtkError(f"{path}: cannot decode image ({exc}); remove or replace the file") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB: 16-bit scaled to 8 bits, transparency composited onto black, every other mode converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")     # an RGB image as it is: no copy


def readable_image(path: str) -> bool:
    """A regular file (not a FIFO or device, which would block) that PIL can verify, not a decompression bomb and not
    too elongated to classify (MAX_ASPECT): what a folder scan keeps; the rest is skipped and counted."""
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
                whole = img.format not in ("JPEG", "MPO") or jpeg_data_ends(path)
                return whole and not too_elongated(img.size)
    except Exception:
        return False


def jpeg_data_ends(path: str, *, chunk: int = 1 << 16) -> bool:
    """Whether a JPEG's image data is whole: an end-of-image marker (FF D9) follows its first start-of-scan (FF DA).
    Entropy-coded data never holds FF D9 (an FF there is followed by 00 or a restart marker), so a file cut in its
    data has none after the scan starts, and an EXIF thumbnail's comes before it. Searched from the end, where it
    is unless a trailer (a motion photo's video) follows: a whole JPEG costs one read of its last bytes."""
    with open(path, "rb") as f:
        if f.read(2) != b"\xff\xd8":
            return False
        while True:         # the segments before the first scan: marker, then a 2-byte length that counts itself
            code = _next_marker(f)
            if code is None:
                return False
            if code == 0xDA:
                scan = f.tell()
                break
            if 0xD0 <= code <= 0xD8 or code == 0x01:    # standalone markers carry no length
                continue
            size = f.read(2)
            if len(size) < 2:
                return False
            f.seek(int.from_bytes(size, "big") - 2, os.SEEK_CUR)
        end = f.seek(0, os.SEEK_END)
        while end > scan:
            start = max(scan, end - chunk)
            f.seek(start)
            if b"\xff\xd9" in f.read(end - start + 1):    # one byte past the block: a marker split between two
                return True
            end = start
        return False


def _next_marker(f) -> int | None:
    """The code of the next JPEG marker, skipping stray bytes and fill bytes before it as libjpeg does; None at the
    end of the file."""
    while True:
        b = f.read(1)
        while b and b != b"\xff":
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        if b != b"\x00":       # FF 00 is not a marker
            return b[0]


def symlink_loop(root: Path) -> str | None:
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


def class_files(root: Path, classes: Sequence[str]) -> Iterator[tuple[str, int]]:
    """Every file under the class folders of `root` once, as (path, class index), in ImageFolder order.

    Links are followed, but a file is labelled by the class folder it really lives in: a link in class A to a
    file of class B (or a linked folder holding B's files), here or in another tree such as the train split
    (the nearest folder of its real path named like a class), is refused with one line, since counting it
    under A would score the model against a wrong label. A file reached twice (two links to one file) is seen once.
    """
    real = {name: os.path.realpath(os.path.join(str(root), name)) for name in classes}
    by_real: dict[str, str] = {}
    for name in classes:
        for other, folder in by_real.items():
            if real[name] == folder or real[name].startswith(folder + os.sep) or folder.startswith(real[name] + os.sep):
                raise RtkError(f"class folders {other} and {name} of {root} are the same folder or one holds the "
                               "other (a link); remove the link so each image has one class")
        by_real[name] = real[name]
    seen: dict = {}
    for index, name in enumerate(classes):
        class_dir = os.path.join(str(root), name)
        if not os.path.isdir(class_dir):
            continue
        for dirpath, _, files in sorted(os.walk(class_dir, followlinks=True)):
            for fname in sorted(files):
                path = os.path.join(dirpath, fname)
                target = os.path.realpath(path)
                owner = next((c for c, folder in real.items() if target.startswith(folder + os.sep)), None)
                if owner is None:       # outside this root: the folder it lives in elsewhere (another split) decides
                    owner = next((part for part in reversed(Path(target).parent.parts) if part in real), name)
                if owner != name:
                    raise RtkError(f"{path} is a link to {target}, an image of class {owner}; it would also be "
                                   f"counted as {name}: remove the link")
                try:
                    st = os.stat(path)
                    identity = (st.st_dev, st.st_ino)     # a hard link is the same file under another name
                except OSError:
                    identity = target
                first = seen.get(identity) or seen.get(target)
                if first is not None:
                    if first[1] != name:
                        raise RtkError(f"{path} is the same file as {first[0]} (a link) of class {first[1]}; it would "
                                       f"also be counted as {name}: remove one of them")
                    continue
                seen[identity] = seen[target] = (path, name)
                yield path, index


@dataclass
class ImageSet:
    """The usable images of a labeled folder, in ImageFolder order, plus what was left out of it."""

    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]          # (path, class index)
    skipped: list[str] = field(default_factory=list)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}


def scan_folder(root: str | Path) -> ImageSet:
    """The images of an ImageFolder tree in torchvision's order; refuses missing, empty or looping folders."""
    root = Path(root)
    if not root.is_dir():
        raise RtkError(f"data folder {root} not found; pass a folder with one sub-folder of images per class")
    classes = class_folders(root)
    samples: list[tuple[str, int]] = []
    skipped: list[str] = []
    for path, index in class_files(root, classes):
        if readable_image(path):
            samples.append((path, index))
        else:
            skipped.append(path)
    if not samples:
        raise RtkError(f"data folder {root} holds no readable images; it needs one sub-folder of images per class")
    return ImageSet(root=root, classes=classes, samples=samples, skipped=sorted(skipped))


def class_folders(root: Path) -> list[str]:
    """The class folders of the ImageFolder tree at `root`, in torchvision's order; refuses a link looping back up
    the tree and a folder without any."""
    loop = symlink_loop(root)
    if loop:
        raise RtkError(f"{loop} is a symlink back to a folder that contains it (a loop); remove the link")
    try:
        classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    except OSError as exc:
        raise RtkError(f"data folder {root}: {exc}; it needs one sub-folder of images per class") from None
    if not classes:
        raise RtkError(f"data folder {root}: no class folder in it; it needs one sub-folder of images per class")
    return classes


def split_dir(root: Path, split: str) -> Path:
    """`root/split` when the data set has splits, else `root` itself."""
    root = Path(root)
    return root / split if (root / split).is_dir() else root


def check_classes(model_classes: Sequence[str], data: ImageSet, what: str = "model") -> None:
    """Refuse data whose class folders are not the model's classes in the model's order."""
    if list(model_classes) == data.classes:
        return
    repeated = sorted(c for c, n in Counter(model_classes).items() if n > 1)
    if repeated:
        raise RtkError(f"{what} names more than one class {', '.join(map(repr, repeated[:3]))}, so the folders of "
                       f"{data.root} cannot be matched to its classes by name; give unique names with --labels FILE")
    missing = [c for c in model_classes if c not in data.classes]
    extra = [c for c in data.classes if c not in model_classes]
    if missing or extra:
        raise RtkError(f"{what} classes do not match the folders of {data.root}: missing {missing[:5]}, "
                       f"unexpected {extra[:5]}; use data with the model's classes")
    raise RtkError(f"{what} lists its classes in another order than {data.root} (folders sort alphabetically); "
                   "re-train or re-export with the folder order")
