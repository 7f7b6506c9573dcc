"""Files out: one atomic write for single- and multi-file artifacts, strict JSON, hashes and timestamps.

Every file rtk writes goes through `atomic_outputs`, so a failure or Ctrl-C never leaves a half-written
artifact under its final name, and an artifact made of several files (an IR's `.xml` + `.bin`, an engine and
its sidecar) appears as a unit: the file that names the others is moved into place last.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from pydantic import BaseModel

from toolkit.errors import RtkError


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_small_text(path: Path, what: str, hint: str, *, limit: int = 1 << 20, encoding: str = "utf-8") -> str:
    """The text of a small regular file (a recipe, a labels file, a list), refused with one line otherwise.

    Opened without blocking and checked with fstat before any read, so a FIFO or a device never hangs the
    command or streams forever (`/dev/zero`), and at most `limit` bytes are read. `what` names the file in
    the message (e.g. "--labels x.txt"); `hint` says what to give instead.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise RtkError(f"{what}: file not found; {hint}") from None
    except OSError as exc:
        raise RtkError(f"{what}: cannot be read ({type(exc).__name__}); {hint}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):            # before fdopen, which refuses a folder with IsADirectoryError
        os.close(fd)
        raise RtkError(f"{what} is not a regular file (a folder, pipe or device); {hint}")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > limit:
            raise RtkError(f"{what}: {st.st_size} bytes is too large (limit {limit}); {hint}")
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise RtkError(f"{what}: cannot be read ({type(exc).__name__}); {hint}") from None
    if len(data) > limit:
        raise RtkError(f"{what}: over {limit} bytes is too large; {hint}")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise RtkError(f"{what}: not {encoding} text; {hint}") from None


def check_output(path: Path, *, flag: str = "-o", example: str | None = None) -> Path:
    """Refuse, before any work is done, an output file path (given with `flag`) that names a folder, lies under a
    file, or whose folder is missing or not writable; `example` is the file name the advice suggests."""
    path = Path(path)
    if path.is_dir():
        raise RtkError(f"{flag} {path} is a folder; give a file name, e.g. "
                       f"{path / (example or 'model' + (path.suffix or '.onnx'))}")
    blocker = file_in_the_way(path)
    if blocker:
        raise RtkError(f"{flag} {path}: {blocker} is a file, not a folder; choose another path")
    if not path.parent.is_dir():
        raise RtkError(f"{flag} {path}: folder {path.parent} does not exist; create it first or choose another path")
    if not os.access(path.parent, os.W_OK):
        raise RtkError(f"{flag} {path}: folder {path.parent} is not writable; choose another path")
    return path


def file_in_the_way(path: Path) -> Path | None:
    """The file among `path`'s parents, if one is (a/photo.jpg/x.json: no folder can ever be made there)."""
    for parent in Path(path).parents:
        if parent.exists():
            return parent if not parent.is_dir() else None
    return None


FOLDER = ("/",)        # an output that is a folder (a run folder), not a file with an extension


def artifact_files(path: Path) -> list[Path]:
    """The files one artifact path stands for: an IR's `.xml` and its `.bin`, an engine and its `.json` sidecar."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return [path, path.with_suffix(".bin")]
    if suffix in (".engine", ".plan"):
        return [path, Path(f"{path}.json")]
    return [path]


def external_data(path: Path) -> list[Path]:
    """The files an ONNX model keeps its weights in (external data, e.g. model.bin beside model.onnx): outputs
    must not replace them either. Read only for a file under 16 MB (a larger one holds its weights inline) and
    where the `onnx` package is installed (not in the runtime-only install)."""
    path = Path(path)
    try:
        if path.suffix.lower() != ".onnx" or not path.is_file() or path.stat().st_size > 16 << 20:
            return []
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:       # not readable as ONNX: the command itself says so, with its own message
        return []
    names = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    return [path.parent / name for name in sorted(names)]


def real_path(path: Path | str) -> Path:
    """`path` absolute with its links followed; a symlink loop is bad input (Path.resolve raises RuntimeError)."""
    try:
        return Path(os.path.abspath(path)).resolve()
    except (RuntimeError, OSError):
        raise RtkError(f"{path}: a symbolic link that loops; point it at a real file or folder") from None


def _same_file_keys(path: Path) -> set:
    """Names under which `path` is the same file: its resolved path (links followed), and its inode if it exists
    (a hard link has another name but the same inode)."""
    keys: set = {str(real_path(path))}
    try:
        st = os.stat(path)
        keys.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    return keys


def inside(path: Path, folder: Path) -> bool:
    """`path` is `folder` or lies under it, links followed."""
    return real_path(path).is_relative_to(real_path(folder))


def check_io(*, inputs: Iterable[Path], outputs: Sequence[tuple[str, Path, tuple[str, ...]]]) -> None:
    """Refuse, before any work, an output that would replace an input or another output, or whose extension is
    not the format written there.

    `outputs` are (flag, path, suffixes the format takes; FOLDER for a folder). Paths are compared with links
    followed (symbolic and hard), and an artifact stands for all its files (`artifact_files`): `-o m.xml` also
    writes `m.bin`. A folder output may not hold an input (a run folder is rewritten by `--force`), and a file
    output may not lie inside an input folder (a data folder's walk would read it, or it replaces a file there).
    """
    inputs = [Path(given) for given in inputs]
    taken: dict[Any, Path] = {}
    for given in inputs:
        given = Path(given)
        for f in artifact_files(given) + external_data(given):
            for key in _same_file_keys(f):
                taken.setdefault(key, given)
    folders = [Path(given) for given in inputs if Path(given).is_dir()]
    written: dict[Any, tuple[str, Path]] = {}
    for flag, path, suffixes in outputs:
        path = Path(path)
        blocker = file_in_the_way(path)
        if blocker is not None:
            raise RtkError(f"{flag} {path}: {blocker} is a file, not a folder; choose another path")
        if suffixes == FOLDER:
            for key, given in taken.items():
                if isinstance(key, str) and key == str(real_path(path)):
                    raise RtkError(f"{flag} {path} is the input {given}; choose another folder for the output")
                if isinstance(key, str) and inside(Path(key), path):
                    raise RtkError(f"{flag} {path}: the input {given} is inside this folder, which the run rewrites; "
                                   "choose another folder")
                if isinstance(key, str) and Path(key).is_dir() and inside(path, Path(key)):
                    raise RtkError(f"{flag} {path} is inside the input folder {given}, whose files the run reads; "
                                   "choose a folder outside it")
            continue
        folder = next((f for f in folders if inside(path, f)), None)
        if path.is_dir():
            stem = {"--json": "result", "--dump-recipe": "recipe"}.get(flag, "model")
            where = path if folder is None else folder.parent     # the example lies outside the input folders
            for _ in range(len(folders)):
                holder = next((f for f in folders if inside(where, f)), None)
                if holder is None:
                    break
                where = real_path(holder).parent    # "." or another input folder holds it
            raise RtkError(f"{flag} {path} is a folder; give a file name, e.g. {where / (stem + suffixes[0])}"
                           if suffixes else f"{flag} {path} is a folder; give a file name")
        for f in artifact_files(path):
            hit = next((taken[k] for k in _same_file_keys(f) if k in taken), None)
            if hit is not None:
                raise RtkError(f"{flag} {path} would overwrite the input {hit}; choose another output path")
        if folder is not None:
            raise RtkError(f"{flag} {path} is inside the input folder {folder}, whose files are read; choose a path "
                           "outside it")
        if suffixes and path.suffix.lower() not in suffixes:
            raise RtkError(f"{flag} {path}: this output is written as {' or '.join(suffixes)}; give a file name with "
                           f"that extension, e.g. {path.with_suffix(suffixes[0]).name}")
        for f in artifact_files(path):
            keys = _same_file_keys(f)
            other = next((written[k] for k in keys if k in written), None)
            if other is not None:
                raise RtkError(f"{flag} {path} is also the output of {other[0]} ({other[1]}); give each output its "
                               "own file")
            for key in keys:
                written[key] = (flag, path)


def fresh_temp_name(folder: Path, prefix: str, suffix: str = "") -> Path:
    """A hidden name in `folder` for a temporary file or folder, not yet created.

    Create it inside the `try` whose `finally` removes it. `tempfile.mkstemp`/`mkdtemp` create it before that
    `try` is entered, and a Ctrl-C landing in between leaves it behind (the interrupt test caught one)."""
    return Path(folder) / f"{prefix}{secrets.token_hex(6)}{suffix}"


TEMP_NAME = re.compile(r"^\..+[.-][0-9a-f]{12}(\.[A-Za-z0-9]+)?$")     # what fresh_temp_name makes


def remove_leftover_temps(root: Path) -> list[Path]:
    """Remove the temporary files and staging folders under `root` that a killed process (SIGKILL, power loss)
    could not clean up; call it only while holding the folder's lock. Returns what was removed."""
    removed = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            if TEMP_NAME.match(name):
                path = Path(dirpath) / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        dirnames[:] = [d for d in dirnames if not TEMP_NAME.match(d)]
    return removed


@contextlib.contextmanager
def atomic_outputs(*paths: Path, make_folder: bool = False) -> Iterator[tuple[Path, ...]]:
    """Temporary names for `paths` (all in one folder), moved to those paths only if the block succeeds.

    The temporaries live in a hidden staging folder beside the outputs (`.<first name>.<random>/`) under the
    outputs' own names, so the files of one artifact find each other there (an `.xml` names its `.bin`).
    On success they are moved in reverse order, the first path last: give the file that refers to the others
    first (the `.xml` before its `.bin`, an engine before its sidecar) and it never appears without them. When
    an artifact is replaced, its old first file is removed before the others are moved, and SIGINT/SIGTERM wait
    until the moves are done, so no moment shows an old `.xml` beside a new `.bin` (a pair from two models).
    Any exception, Ctrl-C included, removes the staging folder, and with `make_folder` the output folder too
    (with any missing parents: it creates them) when this call created it.
    """
    paths = tuple(Path(p) for p in paths)
    folder = paths[0].parent
    if any(p.parent != folder for p in paths):
        raise ValueError("atomic_outputs: every output must be in one folder")
    created = make_folder and not folder.exists()
    if not created:
        for p in paths:
            check_output(p)
    top = folder            # the outermost folder this call creates (-o new/dir/model.xml creates new/)
    while created and not top.parent.exists():
        top = top.parent
    if created and not top.parent.is_dir():
        raise RtkError(f"output folder {top.parent} is not a folder; choose another -o")
    stage = fresh_temp_name(folder, f".{paths[0].name}.")
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stage.mkdir()
        except OSError as exc:
            raise RtkError(f"cannot write in {folder} ({exc.strerror or type(exc).__name__}); "
                           "choose another output") from None
        yield tuple(stage / p.name for p in paths)
        missing = [p.name for p in paths if not (stage / p.name).is_file()]
        if missing:
            raise RuntimeError(f"atomic_outputs: the block did not write {', '.join(missing)}")
        _hold_for_test(paths[0])
        with _signals_held():
            try:
                if len(paths) > 1 and paths[0].exists():
                    os.unlink(paths[0])         # the old pair loses its head first: never an old head on new files
                for p in reversed(paths):
                    os.replace(stage / p.name, p)
            except OSError as exc:
                raise RtkError(f"cannot write {p} ({exc.strerror or type(exc).__name__}); "
                               "choose another output") from None
    except BaseException:
        if created:
            shutil.rmtree(top, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Defer SIGINT and SIGTERM (delivered when the block ends) in the main thread, where Python handles them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


HOLD = "RTK_TEST_HOLD"


def _hold_for_test(path: Path) -> None:
    """For tests only: with RTK_TEST_HOLD=NAME:READY, writing the output named NAME stops with every file staged,
    creates the file READY and waits for a signal, so an interrupt lands mid-write every time."""
    name, _, ready = os.environ.get(HOLD, "").partition(":")
    if name and path.name == name:
        Path(ready).touch()
        while True:
            time.sleep(0.05)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_outputs(path) as (tmp,):
        tmp.write_text(text)


def json_text(data: Any) -> str:
    """`data` (a pydantic model or plain JSON value) as indented, strict JSON text: NaN and Infinity are not JSON
    (Python's json writes them, most readers refuse them), so a value that is not a number is written as null."""
    return json.dumps(finite(jsonable(data)), indent=2, sort_keys=False, allow_nan=False) + "\n"


def finite(data: Any) -> Any:
    """`data` with every NaN or infinite float replaced by None (JSON null)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, list):
        return [finite(v) for v in data]
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    return data


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    write_text_atomic(Path(path), json_text(data))


def jsonable(data: Any) -> Any:
    """Pydantic models (also inside lists and dicts) as plain JSON values."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, (list, tuple)):
        return [jsonable(v) for v in data]
    if isinstance(data, dict):
        return {k: jsonable(v) for k, v in data.items()}
    return data
