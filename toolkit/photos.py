"""Photo in, label out: decode and preprocess on a thread pool, overlapped with inference, in input order.

A folder is a pipeline. `ordered_map` decodes up to `depth` images ahead on `workers` threads (Pillow and
numpy release the GIL while they decode, resample and convert; ONNX Runtime and OpenVINO release it while
they infer), hands them on in input order whatever order they finish in, and never holds more than `depth`
decoded-but-not-yet-inferred images: the memory bound. Each image's decode and preprocess times are taken in
its worker; inference is timed per batch in the caller. Where the runtime has parallel requests (OpenVINO
THROUGHPUT), `inferred_batches` has each thread also infer its batch on a request of its own, so that no one
thread hands every photo on. tests/test_photos.py proves the order and the bound of both.

The fast decode (`toolkit.images.load_image(draft=...)`, `--fast-decode`) changes the pixels, so it is on by
default only for an artifact whose metadata records that it passed on validation images (`rtk run` with
`validate.fast_decode` writes that artifact, toolkit.deploy); elsewhere the exact decode is the default.
`FastDecodeCheck` is the rule `rtk validate --fast-decode` judges it by: top-1 within `MAX_DROP_PT` of the exact
decode and top-1 agreement at least `MIN_AGREEMENT_PCT`, on the same images.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal, Sequence, TypeVar

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from toolkit.artifact import DECODE_RECORD, Preprocess
from toolkit.content import content_sha256
from toolkit.errors import RtkError
from toolkit.images import load_image
from toolkit.preprocess import eval_array

MAX_DROP_PT = 0.1          # the fast decode's top-1 may be at most this far below the exact decode's
MIN_AGREEMENT_PCT = 99.5   # and agree with its top-1 on at least this share of the images
Decode = Literal["fast", "exact"]
# why a decode path was taken: asked for; the artifacts' record; no record; records on some of the artifacts only;
# a record rtk does not trust (damaged, edited, or failing rtk's rule)
DecodeBy = Literal["flag", "artifact", "default", "mixed", "refused"]
T = TypeVar("T")
R = TypeVar("R")


class FastDecodeCheck(BaseModel):
    """The exact and the fast decode scored on the same labeled images, and the verdict of the rule above. Top-1 and
    agreement are over the images the fast decode changed (`scaled` of `images`): elsewhere it is the exact decode,
    and counting those images would dilute a difference."""

    images: int = Field(ge=0)
    scaled: int = Field(ge=0, description="Images the fast decode actually decoded at a reduced DCT scale.")
    exact_top1: float = Field(ge=0, le=100)
    fast_top1: float = Field(ge=0, le=100)
    agreement: float = Field(ge=0, le=100)
    max_drop_pt: float = MAX_DROP_PT
    min_agreement_pct: float = MIN_AGREEMENT_PCT

    @property
    def passed(self) -> bool:
        return self.exact_top1 - self.fast_top1 <= self.max_drop_pt + 1e-9 and self.agreement >= self.min_agreement_pct

    @property
    def deployable(self) -> bool:
        """Passed on images it really changed, and possible (a top-1 that moved is an image that disagrees): the
        check a deploy copy may record, and the only record predict and bench trust."""
        possible = abs(self.exact_top1 - self.fast_top1) <= 100.0 - self.agreement + 1e-6
        return self.passed and possible and 0 < self.scaled <= self.images

    def __str__(self) -> str:
        return (f"fast JPEG decode on the {self.scaled} of {self.images} images it changes: top-1 "
                f"{self.fast_top1:.2f}% vs {self.exact_top1:.2f}% exact, agreement {self.agreement:.2f}% (needs drop "
                f"<= {self.max_drop_pt} pt, agreement >= {self.min_agreement_pct}%)")


def recorded_check(meta, path: Path | str) -> FastDecodeCheck | None:
    """The fast decode's check the metadata of the artifact at `path` records, if it passes rtk's rule (judged with
    rtk's own limits, not the record's) on images the fast decode really changed, and was measured on this content
    (its `content_sha256`: a model edited, re-quantized or given another's record keeps no claim); else None (no
    record, a failed, damaged or foreign one)."""
    rec = meta.extra.get(DECODE_RECORD)
    if not isinstance(rec, dict):
        return None
    try:
        check = FastDecodeCheck.model_validate({k: rec[k] for k in ("images", "scaled", "exact_top1", "fast_top1",
                                                                    "agreement")}, strict=True)
    except (KeyError, TypeError, ValidationError):
        return None
    if not check.deployable:
        return None
    try:       # last: it reads the whole artifact
        return check if rec.get("content_sha256") == content_sha256(Path(path)) else None
    except (OSError, RtkError):
        return None


def decode_record(meta, path: Path | str) -> Literal["trusted", "refused"] | None:
    """What an artifact's fast-decode record is worth: trusted (`recorded_check`), refused (damaged, edited, failing
    rtk's rule, or on other content), or None where it carries none."""
    if DECODE_RECORD not in meta.extra:
        return None
    return "trusted" if recorded_check(meta, path) is not None else "refused"


def choose_decode(fast_decode: bool | None, records: Iterable[str | None]) -> tuple[Decode, DecodeBy]:
    """The decode path and why: --fast-decode/--exact-decode when given, else the fast decode where every artifact's
    record (`decode_record`; read only when no flag decides) is trusted, else the exact decode ("refused" where a
    record is not trusted, "mixed" where only some artifacts carry one)."""
    if fast_decode is not None:
        return ("fast" if fast_decode else "exact"), "flag"
    records = list(records)
    if records and all(r == "trusted" for r in records):
        return "fast", "artifact"
    if "refused" in records:
        return "exact", "refused"
    return "exact", "mixed" if "trusted" in records else "default"


def draft_size(pre: Preprocess, decode: Decode) -> int | None:
    """The `draft` argument of `load_image` for a decode path: the resize target, or None for the exact decode."""
    return pre.resize if decode == "fast" else None


@dataclass(frozen=True)
class Decoded:
    """One image ready for the network, with what it took to get there."""

    index: int
    path: str
    x: np.ndarray | None        # CHW float32 (None once inferred)
    decode_ms: float
    preprocess_ms: float
    scaled: bool                # decoded at a reduced DCT scale


def decode_one(index: int, path: str | Path, pre: Preprocess, decode: Decode) -> Decoded:
    t0 = time.perf_counter()
    img = load_image(path, draft=draft_size(pre, decode))
    t1 = time.perf_counter()
    x = eval_array(img, pre)
    t2 = time.perf_counter()
    with_scale = decode == "fast" and _full_size(path) != img.size
    return Decoded(index=index, path=str(path), x=x, decode_ms=(t1 - t0) * 1e3, preprocess_ms=(t2 - t1) * 1e3,
                   scaled=with_scale)


def _full_size(path: str | Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as img:
        return img.size


class InFlight:
    """Counts items started but not yet released by the consumer, and the most there ever were at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.now = 0
        self.peak = 0

    def start(self) -> None:
        with self._cond:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def release(self, count: int = 1) -> None:
        with self._cond:
            self.now -= count
            self._cond.notify_all()

    def wait_below(self, limit: int) -> None:
        """Block until fewer than `limit` items are in flight (another thread releases them)."""
        with self._cond:
            self._cond.wait_for(lambda: self.now < limit)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, depth: int,
                counter: InFlight | None = None, consumer_releases: bool = False,
                stop: threading.Event | None = None) -> Iterator[R]:
    """`fn` over `items` on `workers` threads, yielded in input order, with at most `depth` items submitted and
    not yet released at any time.

    An item is released when the consumer comes back for the next one, or, with `consumer_releases`, when the
    consumer calls `counter.release()` (a consumer that gathers batches releases a batch once it has run it, from
    any thread; when all `depth` are the consumer's, the next item waits for a release). When the consumer stops
    early (an error, Ctrl-C), items not started are cancelled and `stop` is set before the running ones are
    waited for, so a long `fn` can cut its work short.
    """
    if depth < 1 or workers < 1:
        raise ValueError("depth and workers must be at least 1")
    counter = counter or InFlight()
    source = iter(items)
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        def top_up() -> None:
            while counter.now < depth:
                item = next(source, _END)
                if item is _END:
                    return
                counter.start()
                pending.append(pool.submit(fn, item))

        try:
            top_up()
            while pending:
                yield pending.popleft().result()
                if not consumer_releases:
                    counter.release()
                top_up()
                if not pending and consumer_releases:   # all in flight are the consumer's: wait for it to let go
                    counter.wait_below(depth)
                    top_up()
        finally:
            if stop is not None:
                stop.set()
            for fut in pending:
                fut.cancel()


_END = object()


def decoded_batches(paths: Sequence[str | Path], pre: Preprocess, *, decode: Decode, batch_size: int, workers: int,
                    depth: int, counter: InFlight, skippable: set[str] | None = None,
                    skipped: list[str] | None = None) -> Iterator[list[Decoded]]:
    """The images of `paths` decoded ahead on a thread pool, in input order, grouped into batches; a batch's
    images count against `depth` until the caller calls `counter.release(len(batch))` (once it is inferred).
    An image of `skippable` (found in a folder) that fails to decode is left out and named in `skipped`; any other
    decode failure stops the run (RtkError)."""
    def load(item: tuple[int, str | Path]) -> Decoded | str:
        try:
            return decode_one(item[0], item[1], pre, decode)
        except RtkError as exc:
            if skippable is not None and str(item[1]) in skippable:
                return str(item[1])
            raise exc

    batch: list[Decoded] = []
    for item in ordered_map(load, enumerate(paths), workers=workers, depth=max(depth, batch_size), counter=counter,
                            consumer_releases=True):
        if isinstance(item, str):
            counter.release()
            if skipped is not None:
                skipped.append(item)
            continue
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def inferred_batches(paths: Sequence[str | Path], pre: Preprocess, infer: Callable[[np.ndarray], np.ndarray], *,
                     decode: Decode, batch_size: int, threads: int, counter: InFlight,
                     skippable: set[str] | None = None, skipped: list[str] | None = None
                     ) -> Iterator[tuple[list[str], np.ndarray | None, int]]:
    """The photos of `paths` in batches, each batch decoded and inferred by one of `threads` threads, yielded in
    input order as (its photos, their logits, how many were DCT-scaled). `infer` must be thread-safe (OpenVINO's
    parallel requests: `Runner.request_pool`). No one thread hands every photo on, so the rate is not capped by
    one thread's Python work, and at most `threads` batches are decoded and not yet inferred (`counter` counts
    their images). Photos of `skippable` that fail to decode are left out and named in `skipped` (in no set
    order), any other failure stops the run."""
    def run(chunk: list[tuple[int, str | Path]]) -> tuple[list[str], np.ndarray | None, int]:
        got: list[Decoded] = []
        for index, path in chunk:
            if stop.is_set():           # the run is over (an error, Ctrl-C): no more decoding
                counter.release(len(got))
                return [], None, 0
            counter.start()
            try:
                got.append(decode_one(index, path, pre, decode))
            except RtkError:
                counter.release()
                if skippable is None or str(path) not in skippable:
                    raise
                if skipped is not None:
                    skipped.append(str(path))
        if not got:
            return [], None, 0
        try:
            return [d.path for d in got], infer(np.stack([d.x for d in got])), sum(d.scaled for d in got)
        finally:
            counter.release(len(got))

    items = list(enumerate(paths))
    chunks = (items[i:i + batch_size] for i in range(0, len(items), batch_size))
    stop = threading.Event()
    yield from ordered_map(run, chunks, workers=threads, depth=2 * threads, stop=stop)


def labeled_batches(samples: Sequence[tuple[str, int]], pre: Preprocess, *, decode: Decode, batch_size: int,
                    workers: int = 2, depth: int | None = None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]]:
    """(images NCHW float32, labels, exact inputs) per batch of a labeled folder, decoded the `decode` way.

    With the fast decode, every image it DCT-scaled is also decoded exactly, and that input is given by its
    row in the batch: what `rtk validate` needs to score the exact path on the same images without decoding
    the rest twice.
    """
    def load(item: tuple[int, tuple[str, int]]) -> tuple[Decoded, int, np.ndarray | None]:
        index, (path, label) = item
        got = decode_one(index, path, pre, decode)
        return got, label, eval_array(load_image(path), pre) if got.scaled else None

    rows: list = []
    for item in ordered_map(load, enumerate(samples), workers=workers, depth=depth or 2 * batch_size):
        rows.append(item)
        if len(rows) == batch_size:
            yield _stack(rows)
            rows = []
    if rows:
        yield _stack(rows)


def _stack(rows: list) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    return (np.stack([d.x for d, _, _ in rows]), np.asarray([label for _, label, _ in rows], dtype=np.int64),
            {i: exact for i, (_, _, exact) in enumerate(rows) if exact is not None})
