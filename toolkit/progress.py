"""The one progress protocol of every long step: `progress(stage, done=None, total=None, **facts)`.

`stage` names what is happening now (shown as a status line); `done` of `total` say how far, when it can be
counted (a bar per stage); `facts` ride along (loss, accuracy, ms). Library code only calls it and never
prints; `toolkit.console.progress` renders it, and `silent` is the default.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int | None = None, total: int | None = None, **facts: float | str) -> None:
        ...


def silent(stage: str, done: int | None = None, total: int | None = None, **facts: float | str) -> None:
    """The progress of a caller that shows none."""
