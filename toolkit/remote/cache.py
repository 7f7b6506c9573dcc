"""What goes into the device's content-addressed cache, and the tar stream that carries it there.

An artifact and its companions (an IR's .bin, an engine's sidecar) land in <cache>/artifacts/<key>/<name>: <key>
is the sha256 of their `sha256sum`-style list (names and contents, so the same bytes under two names are two
entries). A folder (`--data`): the files of its class folders, as the local scan reads them, land in
<cache>/data/<key>: <key> is their tree hash (the sha256 of the sorted relative-path + file-sha256 list). Either
way the tar carries the files' `sha256sum` list beside them; the device checks every file against it, renames
the entry into place and keeps the list as <entry>.sums. Before every run the device checks each entry the run
uses against its list again (remote.sh `whole`): one that changed there since is copied again, so a run never
uses a damaged or stale copy, and an intact one is not copied twice.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable

from toolkit.backends.tensorrt.sidecar import sidecar_path
from toolkit.io import sha256_file
from toolkit.remote.channel import RemoteError

SUMS = ".rtk-sums"      # the folder's `sha256sum` list, beside its tree in the tar
TREE = "tree"           # the folder's files, under this name in the tar


@dataclass(frozen=True)
class Folder:
    """A folder on this host to copy whole (a data set): in `remote_run`'s argv, the device's rtk gets its copy."""

    path: Path


@dataclass(frozen=True)
class DevicePath:
    """A path on the device itself (`--remote-data`), not copied: ~/ and relative paths are resolved there, from
    the login folder, as the device's rtk path is."""

    path: str


@dataclass(frozen=True)
class Upload:
    """Files under one content key: an artifact with its companions (`tree` False), or a whole folder."""

    key: str
    files: tuple[tuple[Path, str, str], ...]     # (local path, name in the copy, sha256); the artifact last
    tree: bool = False
    dropped: tuple[str, ...] = ()   # a folder's entries in its class folders that are no file (a broken symlink):
                                    # not copied; their host paths

    @property
    def folder(self) -> str:
        return f"{'data' if self.tree else 'artifacts'}/{self.key}"

    @property
    def bytes(self) -> int:
        return sum(path.stat().st_size for path, _, _ in self.files)

    @property
    def remote(self) -> str:
        """What the device's rtk is given: the artifact in the cache (relative to it), or the folder."""
        return self.folder if self.tree else str(PurePosixPath(self.folder, self.files[-1][1]))


def companions(path: Path) -> list[Path]:
    """Files an artifact needs beside it: an IR's weights, an engine's sidecar."""
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return [path.with_suffix(".bin")]
    if suffix in (".engine", ".plan") and sidecar_path(path).is_file():
        return [sidecar_path(path)]
    return []


_DIGESTS: dict[tuple, str] = {}     # (path, size, mtime, inode) -> sha256: a folder is read once per process


def _digest(path: Path) -> str:
    st = path.stat()
    known = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if known not in _DIGESTS:
        _DIGESTS[known] = sha256_file(path)
    return _DIGESTS[known]


def upload_of(path: Path) -> Upload:
    """An artifact file and its companions."""
    if path.is_dir():
        raise RemoteError(f"{path}: a folder; remote runs copy artifact files only")
    files = [*companions(path), path]
    for f in files:
        if not f.is_file():
            raise RemoteError(f"{f}: file not found" + ("" if f == path else f" (it belongs with {path.name})"))
    sums = [(f, f.name, _digest(f)) for f in files]     # names in the key: one copy per (bytes, name), so a
    key = hashlib.sha256(                               # renamed copy is never looked for under the old name
        "".join(f"{s}  {n}\n" for _, n, s in sorted(sums, key=lambda fs: fs[1])).encode()).hexdigest()
    return Upload(key=key, files=tuple(sums))


def folder_upload(path: Path) -> Upload:
    """A folder's class folders keyed by their tree hash: the files the local scan walks (`class_files`: links
    followed, a file reached twice once, a link to another class's image or back up the tree refused before
    anything is copied), so the device scores what a local run would."""
    from toolkit.images import class_files, class_folders

    if not path.is_dir():
        raise RemoteError(f"{path}: folder not found; give a folder of class folders on this host, or "
                          "--remote-data PATH for one already on the device")
    try:
        found = [Path(p) for p, _ in class_files(path, class_folders(path))]
        names = sorted(p for p in found if p.is_file())
        sums = tuple((p, p.relative_to(path).as_posix(), _digest(p)) for p in names)
        dropped = tuple(str(p) for p in found if not p.is_file())
    except OSError as exc:
        raise RemoteError(f"{exc.filename or path}: cannot read it ({exc.strerror or exc}); fix its permissions or "
                          "leave it out of the folder") from None
    key = hashlib.sha256("".join(f"{n}\0{s}\n" for _, n, s in sums).encode()).hexdigest()
    return Upload(key=key, files=sums, tree=True, dropped=dropped)


def _sums_line(name: str, digest: str) -> str:
    """One `sha256sum` line; a name with a backslash or a newline is escaped the way GNU sha256sum -c reads it."""
    if "\\" in name or "\n" in name or "\r" in name:
        return "\\" + digest + "  " + name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r") + "\n"
    return f"{digest}  {name}\n"


def tar_of(upload: Upload) -> Callable[[IO[bytes]], None]:
    """Write the upload's tar to a stream: its sums list, and its files under tree/."""
    def entry(name: str, size: int, *, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.type = size, mode, kind
        return info

    def feed(stream: IO[bytes]) -> None:
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            sums = "".join(_sums_line(n, s) for _, n, s in upload.files).encode()
            tar.addfile(entry(SUMS, len(sums)), io.BytesIO(sums))
            tar.addfile(entry(TREE, 0, mode=0o755, kind=tarfile.DIRTYPE))
            for path, name, _ in upload.files:
                with open(path, "rb") as f:
                    tar.addfile(entry(f"{TREE}/{name}", path.stat().st_size), f)
    return feed
