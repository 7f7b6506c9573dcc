"""Deterministic, procedurally drawn image classification data set.

The toolkit needs labelled images to train, quantise and prune a classifier
without downloading anything. ``synth`` draws them: each class is a shape or
texture, placed at a random position, scale and tilt (up to 20 degrees) over a
gradient background with a few distractor strokes and sensor-like noise, with
every colour drawn at random so that a model has to learn shape and texture
rather than colour. The difficulty is set so that a ResNet50 trained from
scratch for a few minutes on 2 CPU cores reaches high but not perfect val
top-1 (measured numbers in benchmarks/results/LATEST.md): full rotation and
clutter drawn over the shape made the same budget reach only about 55%. The
result is written as a torchvision ``ImageFolder`` tree::

    DIR/train/<class_name>/00000.png ...
    DIR/val/<class_name>/00000.png ...
    DIR/classes.txt

Every image is drawn from its own generator, seeded by
``(seed, split, label, index)``, so the same seed always gives byte-identical
files, whatever the order or subset of images drawn.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from toolkit.io import fresh_temp_name
from toolkit.progress import Progress, silent

__all__ = ["CLASS_NAMES", "SynthSummary", "draw", "synth"]

CLASS_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "stripes",
    "checker",
    "star",
    "ellipse",
    "dots",
    "hexagon",
    "crescent",
)

SPLITS: tuple[tuple[str, int], ...] = (("train", 0), ("val", 1))
SUPERSAMPLE = 4
"""Shapes are rasterised at this many sub-pixels per pixel, for anti-aliasing."""

MAX_TILT = math.radians(20)
"""Shapes are tilted by up to this much either way; full rotation made them too slow to learn in minutes."""

Mask = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class SynthSummary:
    """What ``synth`` wrote: where, which classes (in ImageFolder label order), how many images per split."""

    root: Path
    classes: list[str]
    train: int
    val: int
    size: int
    seed: int


def _polygon(u: np.ndarray, v: np.ndarray, sides: int) -> np.ndarray:
    """Inside of a regular polygon with unit circumradius and a vertex on +u."""
    sector = 2 * math.pi / sides
    phi = np.mod(np.arctan2(v, u), sector) - sector / 2
    return np.hypot(u, v) * np.cos(phi) <= math.cos(sector / 2)


def _star(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    points = int(rng.integers(5, 8))
    inner = rng.uniform(0.38, 0.5)
    half = math.pi / points
    phi = np.mod(np.arctan2(v, u), 2 * half)
    phi = np.minimum(phi, 2 * half - phi)
    rho = np.hypot(u, v)
    px, py = rho * np.cos(phi) - 1.0, rho * np.sin(phi)
    bx, by = inner * math.cos(half) - 1.0, inner * math.sin(half)
    return bx * py - by * px <= 0


def _region(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Patch that holds a texture: a disc or a square, so its outline says nothing."""
    if rng.random() < 0.5:
        return np.hypot(u, v) <= 1.0
    return np.maximum(np.abs(u), np.abs(v)) <= 0.85


def _stripes(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    freq = rng.uniform(2.0, 3.2)
    return _region(u, v, rng) & (np.sin(math.pi * freq * u) > 0)


def _checker(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cells = rng.uniform(1.6, 2.6)
    parity = (np.floor(u * cells) + np.floor(v * cells)) % 2 == 0
    return _region(u, v, rng) & parity


def _dots(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cells = rng.uniform(1.6, 2.4)
    fu, fv = np.mod(u * cells, 1.0) - 0.5, np.mod(v * cells, 1.0) - 0.5
    return _region(u, v, rng) & (np.hypot(fu, fv) < rng.uniform(0.22, 0.32))


def _cross(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    arm = rng.uniform(0.22, 0.38)
    au, av = np.abs(u), np.abs(v)
    return ((au <= arm) & (av <= 1)) | ((av <= arm) & (au <= 1))


def _ring(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rho = np.hypot(u, v)
    return (rho <= 1) & (rho >= rng.uniform(0.5, 0.72))


def _ellipse(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return u**2 + (v / rng.uniform(0.35, 0.6)) ** 2 <= 1


def _crescent(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shift, cut = rng.uniform(0.35, 0.55), rng.uniform(0.8, 0.95)
    return (np.hypot(u, v) <= 1) & (np.hypot(u - shift, v) > cut)


_MASKS: dict[str, Mask] = {
    "circle": lambda u, v, rng: np.hypot(u, v) <= 1,
    "square": lambda u, v, rng: _polygon(u, v, 4),
    "triangle": lambda u, v, rng: _polygon(u, v, 3),
    "cross": _cross,
    "ring": _ring,
    "stripes": _stripes,
    "checker": _checker,
    "star": _star,
    "ellipse": _ellipse,
    "dots": _dots,
    "hexagon": lambda u, v, rng: _polygon(u, v, 6),
    "crescent": _crescent,
}


def _colour(rng: np.random.Generator, away_from: np.ndarray | None = None, distance: float = 160) -> np.ndarray:
    """A random RGB colour, at least ``distance`` (sum of channel differences) from ``away_from``."""
    while True:
        c = rng.uniform(0, 255, 3)
        if away_from is None or np.abs(c - away_from).sum() > distance:
            return c


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel centre coordinates of a ``size`` x ``size`` image, in pixels."""
    n = size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    return np.meshgrid(coords, coords, indexing="xy")


def _coverage(mask: np.ndarray, size: int) -> np.ndarray:
    """Fraction of each pixel covered by a supersampled mask, shape (size, size, 1)."""
    s = SUPERSAMPLE
    cover = mask.reshape(size, s, size, s).mean(axis=(1, 3))
    return cover[..., None]


def _place(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, radius: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates to a shape's unit frame: centred, scaled and rotated."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    return (c * dx + s * dy) / radius, (-s * dx + c * dy) / radius


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear colour gradient between two random colours."""
    a, b = _colour(rng), _colour(rng)
    angle = rng.uniform(0, 2 * math.pi)
    t = np.linspace(-1, 1, size)
    ramp = (math.cos(angle) * t[None, :] + math.sin(angle) * t[:, None]) / 2.9 + 0.5
    return a + (b - a) * ramp[..., None]


def _clutter(
    img: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    size: int,
    count: int,
) -> None:
    """Paint distractor strokes and blobs of random colour that belong to no class."""
    for _ in range(count):
        colour = _colour(rng)
        cx, cy = rng.uniform(0, size, 2)
        if rng.random() < 0.6:
            length = rng.uniform(0.15, 0.5) * size
            width = rng.uniform(0.6, 1.6) * size / 64
            u, v = _place(x, y, cx, cy, 1.0, rng.uniform(0, math.pi))
            bend = rng.uniform(-0.02, 0.02) * 64 / size
            mask = (np.abs(v - bend * u**2) <= width / 2) & (np.abs(u) <= length / 2)
        else:
            r = rng.uniform(0.03, 0.08) * size
            u, v = _place(x, y, cx, cy, r, rng.uniform(0, math.pi))
            wobble = 1 + 0.35 * np.sin(3 * np.arctan2(v, u) + rng.uniform(0, 6.3))
            mask = np.hypot(u, v * rng.uniform(1.0, 1.8)) <= wobble
        alpha = _coverage(mask, size) * rng.uniform(0.6, 1.0)
        img += (colour - img) * alpha


def draw(label: int, rng: np.random.Generator, size: int) -> Image.Image:
    """Draw one RGB image of class ``CLASS_NAMES[label]``, ``size`` pixels square."""
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label must be in 0..{len(CLASS_NAMES) - 1}, got {label}")
    x, y = _grid(size)
    img = _background(rng, size)
    _clutter(img, x, y, rng, size, int(rng.integers(0, 3)))

    radius = rng.uniform(0.3, 0.42) * size
    margin = radius * 0.8
    cx, cy = rng.uniform(margin, size - margin, 2)
    u, v = _place(x, y, cx, cy, radius, rng.uniform(-MAX_TILT, MAX_TILT))
    mask = _MASKS[CLASS_NAMES[label]](u, v, rng)
    centre = img[int(cy), int(cx)]
    img += (_colour(rng, away_from=centre, distance=250) - img) * _coverage(mask, size)
    img += rng.normal(0, rng.uniform(2, 5), img.shape)
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


def draw_split(folder: Path, classes: int, count: int, *, split_id: int, size: int, seed: int,
               done: int = 0) -> Iterator[int]:
    """Draw `count` images of each of the first `classes` classes into class folders under `folder`; image `index`
    of class `label` comes from the random stream [seed, split_id, label, index]. Yields the images drawn so far
    (from `done`), one by one."""
    for label, name in enumerate(CLASS_NAMES[:classes]):
        (folder / name).mkdir()
        for index in range(count):
            rng = np.random.default_rng([seed, split_id, label, index])
            draw(label, rng, size).save(folder / name / f"{index:05d}.png", format="PNG")
            done += 1
            yield done


def synth(
    root: Path,
    *,
    classes: int = 10,
    per_class: int = 200,
    val_per_class: int = 50,
    size: int = 64,
    seed: int = 0,
    progress: Progress = silent,
) -> SynthSummary:
    """Write a train/val ``ImageFolder`` tree of the first ``classes`` classes under ``root``.

    Each split is written to a temporary folder beside its final name and
    both are renamed into place only once every image is written, so an
    interrupted run never leaves a half-written ``train`` or ``val`` behind.
    """
    if not 2 <= classes <= len(CLASS_NAMES):
        raise ValueError(f"classes must be between 2 and {len(CLASS_NAMES)}, got {classes}")
    if per_class < 1 or val_per_class < 1 or size < 8:
        raise ValueError("per_class and val_per_class must be >= 1 and size >= 8")
    root = Path(root)
    for split, _ in SPLITS:
        if (root / split).exists():
            raise FileExistsError(f"{root / split} already exists; choose an empty folder")
    root.mkdir(parents=True, exist_ok=True)
    names = list(CLASS_NAMES[:classes])
    counts = {"train": per_class, "val": val_per_class}
    total, done = classes * (per_class + val_per_class), 0

    staged: list[tuple[Path, Path]] = []
    try:
        for split, split_id in SPLITS:
            tmp = fresh_temp_name(root, f".{split}-")
            staged.append((tmp, root / split))
            tmp.mkdir()
            tmp.chmod(0o755)
            for done in draw_split(tmp, classes, counts[split], split_id=split_id, size=size, seed=seed, done=done):
                progress("drawing images", done, total)
        listing = staged[0][0] / "classes.txt"
        listing.write_text("".join(f"{n}\n" for n in sorted(names)))
        listing.replace(root / "classes.txt")
        for tmp, final in staged:
            tmp.rename(final)
    finally:
        for tmp, _ in staged:
            shutil.rmtree(tmp, ignore_errors=True)
    return SynthSummary(root, sorted(names), classes * per_class, classes * val_per_class, size, seed)
