"""Images in, top-K class names with probabilities out, through the artifact's own preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from toolkit.backends import RunnerOptions, open_runner
from toolkit.preprocess import preprocess_files
from toolkit.errors import RtkError
from toolkit.remote import DeviceInfo
from toolkit.settings import PredictSettings


class Guess(BaseModel):
    label: str
    index: int
    probability: float


class Prediction(BaseModel):
    image: str
    top: list[Guess]
    device: DeviceInfo | None = Field(None, description="The SSH device it ran on (`remote`), from its rtk doctor.")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(images: Sequence[str | Path], model: str | Path, *, target: str | None = None,
            settings: PredictSettings | None = None, options: RunnerOptions | None = None,
            say: Callable[[str], None] | None = None) -> list[Prediction]:
    """The top classes of each image; on the SSH device `settings.remote` names when it is set."""
    settings = settings or PredictSettings()
    top = settings.top
    if not images:
        raise RtkError("give at least one image")
    if settings.remote:
        from toolkit.remote.commands import predict_on_device

        return predict_on_device(images, model, target=target, settings=settings, say=say)
    with open_runner(model, target, options=options) as runner:
        meta = runner.meta
        x = preprocess_files(images, meta.preprocess)
        fixed = runner.fixed_batch
        if fixed:
            outs = [runner.infer(np.resize(x[i:i + 1], (fixed, *x.shape[1:])))[:1] for i in range(len(x))]
            logits = np.concatenate(outs)
        else:
            logits = runner.infer(x)
    probs = softmax(logits.astype(np.float64))
    k = min(top, probs.shape[1])
    results = []
    for path, p in zip(images, probs):
        order = np.argsort(-p)[:k]
        results.append(Prediction(image=str(path), top=[
            Guess(label=meta.class_names[i], index=int(i), probability=float(p[i])) for i in order]))
    return results
