"""Photo to label, end to end: the naive path against rtk's on JPEG photos the benchmark makes itself.

naive: Pillow's full decode + the torchvision eval transform (Resize, CenterCrop, ToTensor, Normalize) + the
       runtime, one image at a time, as a user's first script does.
rtk:   `toolkit.predict.run_photos`: the fast JPEG decode (DCT scaling) and numpy preprocessing on a thread pool,
       overlapped with inference (OpenVINO THROUGHPUT: each thread infers its photo on a request of its own), in
       order, bounded.

Two photo sets, drawn from the synthetic classes and upscaled: 4000x3000 (a 12 MP camera frame; per-photo
latency at batch 1, LATENCY hint for both paths, rtk's phases timed one photo after another) and 500x375 (a folder; images/s of the whole folder, rtk with the
THROUGHPUT hint, against the naive loop and against the same artifact's network-only images/s with that hint).
Naive and rtk alternate per repeat, so a drift of this VM's speed hits both alike.
"""

from __future__ import annotations

import time
from pathlib import Path
from statistics import median
from typing import Any, Callable

import numpy as np

Say = Callable[[str], None]
SIZES = {"12mp": (4000, 3000), "500x375": (500, 375)}


def make_photos(folder: Path, *, count: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """`count` JPEGs (quality 90) of the synthetic classes at `size`, made once and reused."""
    from PIL import Image

    from toolkit.synth import CLASS_NAMES, draw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{i:05d}.jpg"
        if not path.is_file():
            draw(i % len(CLASS_NAMES), rng, 256).resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def naive_ms(runner, paths: list[Path]) -> list[float]:
    """Milliseconds per photo of the naive path."""
    import torch
    from PIL import Image
    from torchvision import transforms

    pre = runner.meta.preprocess
    tf = transforms.Compose([transforms.Resize(pre.resize), transforms.CenterCrop(pre.crop), transforms.ToTensor(),
                             transforms.Normalize(pre.mean, pre.std)])
    out = []
    with torch.inference_mode():
        for p in paths:
            t0 = time.perf_counter()
            x = tf(Image.open(p).convert("RGB")).unsqueeze(0).numpy()
            runner.infer(x)
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def _rtk(runner, paths: list[Path]):
    """rtk's phase report (`toolkit.predict.run_photos`, fast decode, batch 1): its images/s is the overlapped
    run's, its latency (`total_ms`, the phases) each photo timed one after another."""
    from toolkit.predict import run_photos
    from toolkit.settings import PredictSettings

    return run_photos(paths, runner, settings=PredictSettings(fast_decode=True, batch_size=1, depth=8))[2]


def network_ips(runner, photos: int, batch: int = 1) -> float:
    """The compiled model's images/s on a preprocessed tensor at `batch`: whole rounds of its parallel requests,
    at least `photos` images (the network-only side of a folder's images/s)."""
    x = np.zeros((batch, *runner.meta.preprocess.input_shape), np.float32)
    count = -(-photos // (runner.parallel_requests * batch)) * runner.parallel_requests
    t0 = time.perf_counter()
    runner.infer_many(x, count)
    return count * batch / (time.perf_counter() - t0)


def batched_folder(path: Path, target: str, photos: list[Path], *, batch: int, repeats: int) -> dict[str, Any]:
    """`rtk predict DIR --batch-size B` (fast decode, THROUGHPUT hint, the default depth: a batch per thread) on the
    folder, alternated per repeat with the same artifact's network-only images/s at that batch."""
    from toolkit.backends import RunnerOptions, open_runner
    from toolkit.predict import run_photos
    from toolkit.settings import PredictSettings

    with open_runner(path, target, options=RunnerOptions(hint="throughput", max_batch=batch)) as runner:
        network_ips(runner, 2 * runner.parallel_requests * batch, batch)       # warm: two calls per request
        net, ips = [], []
        for _ in range(repeats):
            net.append(network_ips(runner, len(photos), batch))
            ips.append(run_photos(photos, runner, settings=PredictSettings(fast_decode=True, batch_size=batch),
                                  latency_images=batch)[2].images_per_s)
    return {"batch": batch, "rtk_ips": median(ips), "network_only_ips": median(net),
            "of_network": median(r / n for r, n in zip(ips, net)), "rtk_ips_repeats": ips}


def end_to_end(artifacts: dict[str, tuple[Path, str]], *, photos: dict[str, list[Path]], repeats: int,
               batched: int | None = None, say: Say = print) -> dict[str, Any]:
    """{row key: {photo set: facts}} for every artifact (path, target) that opens; with `batched`, the folder
    also through `batched_folder` at that batch."""
    from toolkit.backends import RunnerOptions, open_runner

    out: dict[str, Any] = {}
    for key, (path, target) in artifacts.items():
        say(f"end to end: {key}")
        row: dict[str, Any] = {}
        try:
            with open_runner(path, target, options=RunnerOptions(hint="latency", max_batch=1)) as runner:
                big = photos["12mp"]
                naive_ms(runner, big[:1]), _rtk(runner, big[:1])                 # warm both paths
                naive, rtk, phases = [], [], None
                for _ in range(repeats):
                    naive.append(median(naive_ms(runner, big)))
                    rep = _rtk(runner, big)
                    rtk.append(rep.total_ms.p50)
                    phases = rep
                row["12mp"] = {"photos": len(big), "naive_ms": median(naive), "rtk_ms": median(rtk),
                               "naive_ms_repeats": naive, "rtk_ms_repeats": rtk,
                               "speedup": median(n / r for n, r in zip(naive, rtk)),
                               "rtk_phases_ms": {k: getattr(phases, f"{k}_ms").p50 for k in ("decode", "preprocess",
                                                                                             "infer")}}
                small = photos["500x375"]
                naive_ips = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    naive_ms(runner, small)
                    naive_ips.append(len(small) / (time.perf_counter() - t0))
            with open_runner(path, target, options=RunnerOptions(hint="throughput", max_batch=1)) as runner:
                rounds = runner.parallel_requests
                network_ips(runner, 2 * rounds)                                 # warm: two calls per request
                net, rtk_ips, phases = [], [], None
                for _ in range(repeats):
                    net.append(network_ips(runner, len(small)))
                    phases = _rtk(runner, small)
                    rtk_ips.append(phases.images_per_s)
                row["500x375"] = {"photos": len(small), "naive_ips": median(naive_ips), "rtk_ips": median(rtk_ips),
                                  "network_only_ips": median(net), "vs_naive": median(rtk_ips) / median(naive_ips),
                                  "of_network": median(r / n for r, n in zip(rtk_ips, net)),
                                  "rtk_phases_ms": {k: getattr(phases, f"{k}_ms").p50
                                                    for k in ("decode", "preprocess", "infer")},
                                  "hint": "throughput", "infer_requests": rounds, "threads": phases.workers,
                                  "threads_infer": phases.threads_infer}
            if batched:
                say(f"end to end: {key}, the folder at batch {batched}")
                row["500x375"]["batched"] = batched_folder(path, target, small, batch=batched, repeats=repeats)
        except Exception as exc:
            row = {"error": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
        out[key] = row
    return out


def decode_accuracy(artifact: Path, target: str, val: Path, work: Path, *, per_class: int) -> dict[str, Any]:
    """The fast decode against the exact one on 12 MP JPEGs of the val split (`per_class` per class, the first in
    file order), through `rtk validate` on the trained model: what the 0.1 pt / 99.5% rule is judged on."""
    from PIL import Image

    from toolkit.images import scan_folder
    from toolkit.settings import ValidateSettings
    from toolkit.validate import validate

    data = scan_folder(val)
    folder = work / "val-12mp"
    taken: dict[int, int] = {}
    for path, label in data.samples:
        if taken.get(label, 0) >= per_class:
            continue
        taken[label] = taken.get(label, 0) + 1
        dest = folder / data.classes[label] / (Path(path).stem + ".jpg")
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).convert("RGB").resize(SIZES["12mp"], Image.Resampling.BICUBIC).save(dest, quality=90)
    for name in data.classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
    score = validate([artifact], folder, targets=[target], settings=ValidateSettings(fast_decode=True),
                     measure_latency=False).artifacts[0]
    check = score.fast_decode
    return {"images": check.images, "scaled": check.scaled, "exact_top1": check.exact_top1,
            "fast_top1": check.fast_top1, "agreement": check.agreement, "passed": check.passed}
