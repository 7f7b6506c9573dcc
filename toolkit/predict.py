"""Images in, top-K class names with probabilities out, through the artifact's own preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from pydantic import BaseModel

from toolkit.backends import RunnerOptions, open_runner
from toolkit.backends.base import finite
from toolkit.preprocess import preprocess_files
from toolkit.errors import RtkError


class Guess(BaseModel):
    label: str
    index: int
    probability: float


class Prediction(BaseModel):
    image: str
    top: list[Guess]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(images: Sequence[str | Path], model: str | Path, *, top: int = 5, target: str | None = None,
            options: RunnerOptions | None = None) -> list[Prediction]:
    if not images:
        raise RtkError("give at least one image")
    if top < 1:
        raise RtkError(f"--top {top}: give a positive number of classes")
    with open_runner(model, target, options=options) as runner:
        meta = runner.meta
        x = preprocess_files(images, meta.preprocess)
        fixed = runner.fixed_batch
        if fixed:
            outs = [runner.infer(np.resize(x[i:i + 1], (fixed, *x.shape[1:])))[:1] for i in range(len(x))]
            logits = np.concatenate(outs)
        else:
            logits = runner.infer(x)
        logits = finite(logits, runner.path)
    probs = softmax(logits.astype(np.float64))
    k = min(top, probs.shape[1])
    results = []
    for path, p in zip(images, probs):
        order = np.argsort(-p)[:k]
        results.append(Prediction(image=str(path), top=[
            Guess(label=meta.class_names[i], index=int(i), probability=float(p[i])) for i in order]))
    return results
