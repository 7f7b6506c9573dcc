"""The calibration set for post-training INT8: which images, preprocessed exactly as the model expects, and checks.

Images come from a folder (an ImageFolder with one sub-folder per class, or a flat folder of images), or
from a definition file (`--calib-list`: one path per line relative to the folder, as in MLPerf's
`cal_image_list_option_1.txt`). The pick is seeded and class-balanced: classes are shuffled independently
and taken in turn, so 300 images from 10 classes are 30 per class. Preprocessing is the artifact's own
`ModelMeta.preprocess` through `preprocess.eval_array`, the same path validation uses.

Random tensors (`calib="random"`) exist only for speed tests: the artifact records that source, and its
accuracy means nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field

from toolkit.artifact import Preprocess
from toolkit.images import IMAGE_EXTENSIONS, class_files, load_image, split_dir, symlink_loop
from toolkit.io import read_small_text, write_text_atomic
from toolkit.preprocess import eval_array
from toolkit.progress import Progress, silent
from toolkit.errors import RtkError

DEFAULT_SUBSET = 300
RANDOM = "random"


class CalibrationFacts(BaseModel):
    """What the calibration set was; stored in the INT8 artifact's metadata."""

    source: str
    images: int
    seed: int
    list_file: str | None = None
    per_class: dict[str, int] | None = None
    missing_classes: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    mean: list[float]
    std: list[float]
    min: float
    max: float
    preprocess_seconds: float
    warnings: list[str] = Field(default_factory=list)


@dataclass
class CalibrationSet:
    samples: np.ndarray          # (N, 3, H, W) float32, preprocessed
    facts: CalibrationFacts

    def __len__(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class Candidate:
    path: Path
    label: str | None


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_EXTENSIONS) and not path.name.startswith(".")


def list_images(root: Path) -> list[Candidate]:
    """Every image file under `root`: labeled by class folder when it has class folders, else flat."""
    loop = symlink_loop(root)
    if loop:
        raise RtkError(f"{loop} is a symlink back to a folder that contains it (a loop); remove the link")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    labeled = [Candidate(Path(p), classes[i]) for p, i in class_files(root, classes) if _is_image(Path(p))]
    seen = {os.path.realpath(c.path) for c in labeled}
    flat = []
    for p in sorted(root.iterdir()):
        if _is_image(p) and os.path.realpath(p) not in seen:
            seen.add(os.path.realpath(p))
            flat.append(Candidate(p, None))
    return labeled + flat if labeled else flat


def read_list(root: Path, list_file: Path) -> list[Candidate]:
    """The files a definition file names (first token per line; blank lines and # comments ignored)."""
    entries = []
    text = read_small_text(Path(list_file), f"--calib-list {list_file}",
                           "give a text file with one image path per line, relative to --calib", limit=64 << 20)
    for line in text.splitlines():
        token = line.split("#", 1)[0].split()
        if token:
            entries.append(token[0])
    if not entries:
        raise RtkError(f"--calib-list {list_file} names no files; write one image path per line, relative to --calib")
    outside = [e for e in entries if not (root / e).resolve().is_relative_to(Path(root).resolve())]
    if outside:
        raise RtkError(f"--calib-list {list_file}: {outside[0]} is outside {root}; list paths inside --calib")
    missing = [e for e in entries if not (root / e).is_file()]
    if missing:
        raise RtkError(f"--calib-list {list_file}: {len(missing)} listed files are not under {root} "
                       f"(first: {missing[0]}); paths are relative to --calib")
    return [Candidate(root / e, Path(e).parts[0] if len(Path(e).parts) > 1 else None) for e in entries]


def balanced_order(candidates: Sequence[Candidate], seed: int) -> list[Candidate]:
    """All candidates in a seeded order that takes the classes in turn (a plain shuffle when unlabeled)."""
    rng = np.random.default_rng(seed)
    groups: dict[str | None, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.label, []).append(c)
    shuffled = [[g[i] for i in rng.permutation(len(g))] for _, g in sorted(groups.items(), key=lambda kv: str(kv[0]))]
    longest = max((len(g) for g in shuffled), default=0)
    return [g[i] for i in range(longest) for g in shuffled if i < len(g)]


def select_files(root: Path, *, subset: int | None, seed: int, list_file: Path | None = None) -> list[Candidate]:
    """The calibration pick, in order of preference: the whole list, or `subset` balanced images of the folder."""
    root = split_dir(Path(root), "train")
    if not root.is_dir():
        raise RtkError(f"calibration folder {root} not found; pass a folder of images (class sub-folders optional)")
    if list_file is not None:
        chosen = read_list(root, list_file)
        return chosen if subset is None or subset >= len(chosen) else balanced_order(chosen, seed)[:subset]
    found = list_images(root)
    if not found:
        raise RtkError(f"calibration folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS[:3])}, ...); "
                       "pass a folder of images from the deployment domain")
    return balanced_order(found, seed)


def calibration_set(calib: Path | Literal["random"], pre: Preprocess, *, subset: int | None = None, seed: int = 0,
                    allow_small: bool = False, list_file: Path | None = None,
                    progress: Progress = silent) -> CalibrationSet:
    """Preprocessed calibration images (or seeded random tensors), with the facts and warnings about them."""
    if subset is not None and subset < 1:
        raise RtkError(f"--subset {subset}: give a positive number of calibration images")
    started = time.perf_counter()
    if str(calib) == RANDOM:
        count = subset or DEFAULT_SUBSET
        rng = np.random.default_rng(seed)
        samples = rng.standard_normal((count, *pre.input_shape), dtype=np.float32)
        return CalibrationSet(samples, _facts(samples, source=RANDOM, seed=seed, started=started, warnings=[
            "calibrated on random tensors (--calib random): for speed tests only, the INT8 accuracy means nothing"]))
    wanted = subset if subset is not None or list_file is not None else DEFAULT_SUBSET
    ordered = select_files(Path(calib), subset=subset, seed=seed, list_file=list_file)
    target = len(ordered) if wanted is None else min(wanted, len(ordered))
    tensors, chosen, skipped = [], [], []
    for cand in ordered:
        if len(chosen) == target:
            break
        try:
            x = eval_array(load_image(cand.path), pre)
        except RtkError:
            skipped.append(str(cand.path))
            continue
        tensors.append(x)
        chosen.append(cand)
        progress("calibration images", len(chosen), target)
    root = split_dir(Path(calib), "train")
    if not tensors:
        raise RtkError(f"calibration folder {root}: none of its images can be decoded; pass a folder of readable images")
    requested = wanted if wanted is not None else len(ordered)
    if len(tensors) < requested and not allow_small:
        raise RtkError(f"calibration folder {root} gives {len(tensors)} usable images but {requested} were asked for; "
                       "add images, lower --subset, or pass --allow-small")
    samples = np.stack(tensors).astype(np.float32)
    warnings = []
    if len(tensors) < requested:
        warnings.append(f"only {len(tensors)} calibration images instead of {requested} (--allow-small)")
    if skipped:
        warnings.append(f"{len(skipped)} unreadable images skipped (first: {skipped[0]})")
    per_class, missing = None, []
    labels = sorted({c.label for c in ordered if c.label is not None})
    if labels:
        per_class = {name: sum(c.label == name for c in chosen) for name in labels}
        missing = [name for name, n in per_class.items() if n == 0]
        if missing:
            warnings.append(f"{len(missing)} of {len(labels)} classes have no calibration image "
                            f"(e.g. {missing[0]}); raise --subset to cover every class")
    return CalibrationSet(samples, _facts(samples, source=str(root), seed=seed, started=started, warnings=warnings,
                                          scale=_pixel_scale(pre),
                                          list_file=str(list_file) if list_file else None, per_class=per_class,
                                          missing_classes=missing, skipped=skipped))


def _pixel_scale(pre: Preprocess) -> float:
    """How far above a normalised scale the model's own preprocess puts its tensors by design: 255 for Caffe's
    mean-subtracted 0-255 pixels without std, 1 for a normalising preprocess (ImageNet's std gives about 4)."""
    scale = (255.0 if pre.pixels == "0-255" else 1.0) / min(pre.std)
    return scale if scale > 20 else 1.0


def _facts(samples: np.ndarray, *, source: str, seed: int, started: float, warnings: list[str], scale: float = 1.0,
           **extra) -> CalibrationFacts:
    mean = samples.mean(axis=(0, 2, 3)).astype(float).tolist()
    std = samples.std(axis=(0, 2, 3)).astype(float).tolist()
    lo, hi = float(samples.min()), float(samples.max())
    if source != RANDOM:
        warnings = warnings + stats_warnings([m / scale for m in mean], [v / scale for v in std], lo / scale,
                                             hi / scale)
    return CalibrationFacts(source=source, images=len(samples), seed=seed, mean=mean, std=std, min=lo, max=hi,
                            preprocess_seconds=time.perf_counter() - started, warnings=warnings, **extra)


def stats_warnings(mean: Sequence[float], std: Sequence[float], lo: float, hi: float) -> list[str]:
    """Signs that the tensors are not what a normalised classifier expects (0-255 pixels, wrong mean/std)."""
    found = []
    if max(abs(lo), abs(hi)) > 20:
        found.append(f"calibration tensors span {lo:.1f}..{hi:.1f}, like 0-255 pixels: check the model's "
                     "preprocess (mean/std) in its metadata")
    elif any(abs(m) > 1.5 for m in mean) or any(s < 0.1 or s > 3.0 for s in std):
        found.append("calibration tensors have channel mean " + "/".join(f"{m:.2f}" for m in mean) + " and std "
                     + "/".join(f"{s:.2f}" for s in std) + ", far from normalised (about 0 and 1): check the "
                     "images and the model's preprocess")
    return found


def write_list(root: Path, output: Path, *, subset: int = DEFAULT_SUBSET, seed: int = 0) -> int:
    """Write a calibration-set definition (relative paths, one per line) for `root`; returns the count."""
    root = split_dir(Path(root), "train")
    chosen = select_files(root, subset=None, seed=seed)[:subset]
    lines = [str(c.path.relative_to(root)) for c in chosen]
    header = f"# rtk calibration list: {len(lines)} images, seed {seed}, class-balanced; paths relative to the folder\n"
    write_text_atomic(Path(output), header + "".join(f"{line}\n" for line in lines))
    return len(lines)
