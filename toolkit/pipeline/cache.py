"""Stages shared between runs: a sweep's candidates make the same checkpoint, export or INT8 model once.

An entry is found by the stage key (run.py: the stage's settings, the content of its inputs and rtk's version,
with paths inside a run folder counted by their place in it, so the same stage of two candidates has one key).
It holds the stage's outputs as hard links (nothing is copied; rtk replaces a file, never rewrites it, so a link
keeps what the stage wrote) and the stage's result with its run-folder paths written as `<run>`.

An entry appears whole or not at all (built in a hidden folder, then renamed), and a file lock per key makes the
second of two runs that need the same stage wait for the first instead of doing the work twice; the lock is a
file lock so it holds between processes (Ray workers), and it dies with the process that held it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from toolkit.io import fresh_temp_name, write_json

RUN = "<run>"


def _swap(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        if value == old or value.startswith(old + os.sep):
            return new + value[len(old):]
        return value
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    if isinstance(value, dict):
        return {_swap(k, old, new): _swap(v, old, new) for k, v in value.items()}
    return value


def portable(value: Any, root: Path) -> Any:
    """`value` (JSON-like; paths become strings) with every path inside `root` written from `<run>`."""
    plain = json.loads(json.dumps(value, default=str))
    return _swap(plain, str(root), RUN)


def rooted(value: Any, root: Path) -> Any:
    """The inverse of `portable`: `<run>` becomes `root`."""
    return _swap(value, RUN, str(root))


def _link(source: Path, target: Path) -> None:
    """Hard-link `source` at `target` (a copy where links are not possible), replacing `target` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_temp_name(target.parent, f".{target.name}.")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _link_tree(source: Path, target: Path) -> None:
    """A folder of links to `source`'s files, renamed into place at `target` whole."""
    tmp = fresh_temp_name(target.parent, f".{target.name}.")
    try:
        for f in sorted(p for p in source.rglob("*") if p.is_file()):
            _link(f, tmp / f.relative_to(source))
        tmp.mkdir(exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class StageCache:
    """Stage outputs and results by stage key, under `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _entry(self, key: str) -> Path:
        return self.folder / key[:2] / key

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Hold the key's lock: whoever holds it makes the entry, the others wait and then find it."""
        locks = self.folder / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{key}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def cacheable(outputs: list[Path], root: Path) -> bool:
        return all(Path(p).is_relative_to(root) for p in outputs)

    def get(self, key: str, root: Path, outputs: list[Path]) -> dict[str, Any] | None:
        """Link the entry's outputs into `root` and return its state entry there (None: no entry)."""
        entry = self._entry(key)
        if not (entry / "entry.json").is_file() or not self.cacheable(outputs, root):
            return None
        for out in outputs:
            stored = entry / "files" / Path(out).relative_to(root)
            if stored.is_dir():
                _link_tree(stored, Path(out))
            elif stored.is_file():
                _link(stored, Path(out))
            else:
                return None
        return rooted(json.loads((entry / "entry.json").read_text()), root)

    def put(self, key: str, root: Path, outputs: list[Path], state: dict[str, Any]) -> None:
        """Keep a finished stage: links to its outputs and its state entry (result, output hashes, seconds)."""
        entry = self._entry(key)
        if entry.exists() or not self.cacheable(outputs, root):
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = fresh_temp_name(entry.parent, f".{key[:12]}.")
        try:
            for out in map(Path, outputs):
                stored = tmp / "files" / out.relative_to(root)
                if out.is_dir():
                    for f in sorted(p for p in out.rglob("*") if p.is_file()):
                        _link(f, stored / f.relative_to(out))
                elif out.is_file():
                    _link(out, stored)
            tmp.mkdir(exist_ok=True)
            write_json(tmp / "entry.json", portable(state, root))
            os.rename(tmp, entry)
        except OSError:
            pass            # another run kept the same entry first, or the disk refused: the stage result stands
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
