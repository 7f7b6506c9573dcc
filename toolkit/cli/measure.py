"""The commands that run an artifact or read results: doctor, validate, bench, predict, compare."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from toolkit import console as ui
from toolkit.cli.app import JsonOpt, TargetOpt, ThreadsOpt, app, command, emit_json
from toolkit.artifact import describing
from toolkit.cli.flags import FLAG_NAMES, build, default, int_list, opt
from toolkit.cli.foreign import (CaffeOpt, ChannelsOpt, CropOpt, InterpOpt, LabelsOpt, LayoutOpt, MeanOpt,
                                 ResizeOpt, StdOpt, foreign_from)
from toolkit.errors import GateFailed, RtkError
from toolkit.settings import (BenchSettings as B, Gates, PredictSettings as P, RemoteSettings as R,
                              ValidateSettings as V)

FAST = FLAG_NAMES["fast_decode"]
RemoteOpt = Annotated[Optional[str], opt(R, "remote")]
RemoteRtkOpt = Annotated[Optional[str], opt(R, "remote_rtk")]


@app.command()
@command
def doctor(remote: RemoteOpt = None, remote_rtk: RemoteRtkOpt = None, json: JsonOpt = None) -> None:
    """Versions, runtimes that import, CPU model and the ISA features that decide INT8 speed (here, or on --remote)."""
    from toolkit.doctor import doctor as run

    with ui.progress("doctor") as progress:
        report = run(build(R, remote=remote, remote_rtk=remote_rtk), say=progress)
    ui.show_doctor(report)
    emit_json(json, report)


@app.command()
@command
def validate(
    artifacts: Annotated[list[Path], typer.Argument(help="One or more artifacts (.pt, .onnx, .xml, .engine).")],
    data: Annotated[Optional[Path], typer.Option(help="Labeled ImageFolder (class folders), e.g. data/shapes/val "
                                                     "(with --remote: copied there by content, once).")] = None,
    reference: Annotated[Optional[Path], typer.Option(help="The FP32 reference to compare against (.pt or .onnx).")] = None,
    max_drop: Annotated[Optional[float], typer.Option(help="Gate: largest top-1 drop in points vs the reference.")] = None,
    min_agreement: Annotated[Optional[float], typer.Option(help="Gate: smallest top-1 agreement (%) with the reference.")] = None,
    target: Annotated[Optional[list[str]], typer.Option(help="Runtime per artifact (repeat), default by extension.")] = None,
    batch_size: Annotated[int, opt(V, "batch_size")] = default(V, "batch_size"),
    threads: ThreadsOpt = None,
    ray: Annotated[bool, typer.Option("--ray", help="Validate in shards on Ray workers (a local instance, or "
                                                    "--address) and merge them exactly; needs the ray extra.")] = False,
    shards: Annotated[Optional[int], opt(V, "shards")] = None,
    address: Annotated[Optional[str], typer.Option(help="With --ray: the Ray cluster to join (host:port, or "
                                                        "auto). Default: RAY_ADDRESS, if set.")] = None,
    isa: Annotated[Optional[str], opt(V, "isa")] = default(V, "isa"),
    fast_decode: Annotated[Optional[bool], opt(V, "fast_decode", FAST)] = default(V, "fast_decode"),
    remote: RemoteOpt = None,
    remote_rtk: RemoteRtkOpt = None,
    remote_data: Annotated[Optional[str], opt(V, "remote_data")] = None,
    json: JsonOpt = None,
    labels: LabelsOpt = None, resize: ResizeOpt = None, crop: CropOpt = None, mean: MeanOpt = None, std: StdOpt = None,
    interpolation: InterpOpt = None, layout: LayoutOpt = None, channels: ChannelsOpt = None, caffe: CaffeOpt = False,
) -> None:
    """Top-1/top-5 on a labeled folder, drop and agreement vs a reference; --max-drop makes it a CI gate.

    It decodes the images the way `rtk predict` will (the exact decode, or the fast JPEG path with --fast-decode or
    where the artifact records that it passed), says which, and with the fast path checks it against the exact
    decode on the same images (exit 1 when it moves top-1)."""
    from toolkit.validate import check_sharding, validate as run

    settings = build(V, batch_size=batch_size, threads=threads, shards=shards, isa=isa, fast_decode=fast_decode,
                     remote=remote, remote_rtk=remote_rtk, remote_data=remote_data, flags=FLAG_NAMES)
    gates = build(Gates, max_drop_pt=max_drop, min_agreement_pct=min_agreement, flags=FLAG_NAMES)
    targets = list(target or [])
    if len(targets) == 1 and len(artifacts) > 1:
        targets = targets * len(artifacts)
    sharded = ray or shards is not None or address is not None
    check_sharding(settings, sharded=sharded)
    described = foreign_from(artifacts, labels=labels, resize=resize, crop=crop, mean=mean, std=std,
                             interpolation=interpolation, layout=layout, channels=channels, caffe=caffe)
    with _ray_for(sharded, address) as cpus, describing(described), ui.progress("validate") as progress:
        if sharded and settings.shards is None:
            settings = settings.model_copy(update={"shards": max(1, cpus // (settings.threads or 1))})
        report = run(artifacts, data, reference=reference, targets=targets or None, settings=settings, gates=gates,
                     progress=progress)
    ui.show_validation(report)
    emit_json(json, report)
    if not report:
        raise GateFailed("; ".join(str(g) for g in report.gates if not g.passed))


@contextlib.contextmanager
def _ray_for(sharded: bool, address: str | None) -> Iterator[int]:
    """The CPUs of the Ray cluster that sharded validation runs on (started or joined for the command)."""
    if not sharded:
        yield 0
        return
    from toolkit.distributed import cluster, cluster_cpus

    with cluster(address, what="rtk validate --ray") as ray:
        yield cluster_cpus(ray)


@app.command()
@command
def bench(
    artifact: Annotated[Path, typer.Argument(help="Artifact to time (.pt, .onnx, .xml, .engine).")],
    target: TargetOpt = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = ",".join(map(str, default(B, "batches"))),
    warmup: Annotated[int, opt(B, "warmup")] = default(B, "warmup"),
    runs: Annotated[Optional[int], opt(B, "runs")] = default(B, "runs"),
    seconds: Annotated[Optional[float], opt(B, "seconds")] = default(B, "seconds"),
    threads: ThreadsOpt = None,
    hint: Annotated[str, opt(B, "hint")] = default(B, "hint"),
    remote: RemoteOpt = None,
    remote_rtk: RemoteRtkOpt = None,
    images: Annotated[Optional[Path], typer.Option(help="A folder of photos: time photo to label end to end "
                                                        "(decode, preprocess, inference per phase).")] = None,
    fast_decode: Annotated[Optional[bool], opt(B, "fast_decode", FAST)] = default(B, "fast_decode"),
    workers: Annotated[Optional[int], opt(B, "workers")] = default(B, "workers"),
    depth: Annotated[Optional[int], opt(B, "depth")] = default(B, "depth"),
    json: JsonOpt = None,
) -> None:
    """Latency percentiles (p50/p90/p99) and throughput per batch size, on one runtime (here, or on --remote);
    with --images DIR, photo to label end to end with each phase timed."""
    from toolkit.bench import bench as run

    given = [flag for flag, value in (("--fast-decode/--exact-decode", fast_decode), ("--workers", workers),
                                      ("--depth", depth)) if value is not None]
    if given and images is None:
        raise RtkError(f"{', '.join(given)} set how photos are decoded; add --images DIR to time photo to label")
    settings = build(B, batches=int_list(batch, "--batch"), warmup=warmup, runs=runs, seconds=seconds,
                     threads=threads, hint=hint, remote=remote, remote_rtk=remote_rtk, fast_decode=fast_decode,
                     workers=workers, depth=depth, flags=FLAG_NAMES)
    with ui.progress("benchmarking") as progress:
        result = run(artifact, target=target, settings=settings, images=images, progress=progress)
    ui.show_bench(result)
    if hint != default(B, "hint") and "hint" not in result.runtime:
        ui.warn(f"--hint {hint} is an OpenVINO setting; {result.target} ran as it always does")
    emit_json(json, result)


@app.command()
@command
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files and folders of them.")],
    model: Annotated[Path, typer.Option(help="Artifact to run (.pt, .onnx, .xml, .engine).")],
    top: Annotated[int, opt(P, "top")] = default(P, "top"),
    target: TargetOpt = None,
    fast_decode: Annotated[Optional[bool], opt(P, "fast_decode", FAST)] = default(P, "fast_decode"),
    batch_size: Annotated[int, opt(P, "batch_size")] = default(P, "batch_size"),
    workers: Annotated[Optional[int], opt(P, "workers")] = default(P, "workers"),
    depth: Annotated[Optional[int], opt(P, "depth")] = default(P, "depth"),
    hint: Annotated[str, opt(P, "hint")] = default(P, "hint"),
    remote: RemoteOpt = None,
    remote_rtk: RemoteRtkOpt = None,
    json: JsonOpt = None,
    labels: LabelsOpt = None, resize: ResizeOpt = None, crop: CropOpt = None, mean: MeanOpt = None, std: StdOpt = None,
    interpolation: InterpOpt = None, layout: LayoutOpt = None, channels: ChannelsOpt = None, caffe: CaffeOpt = False,
) -> None:
    """Classify photos (files or folders): the top-K class names with probabilities, and the time per phase
    (decode, preprocess, inference), decoding ahead on threads while the model runs (here, or on --remote)."""
    from toolkit.console_photos import show_phases, show_predictions
    from toolkit.predict import PredictReport, classify, predict as run

    if not images:
        raise RtkError("give at least one image")
    settings = build(P, top=top, fast_decode=fast_decode, batch_size=batch_size, workers=workers, depth=depth,
                     hint=hint, remote=remote, remote_rtk=remote_rtk, flags=FLAG_NAMES)
    described = foreign_from([model], labels=labels, resize=resize, crop=crop, mean=mean, std=std,
                             interpolation=interpolation, layout=layout, channels=channels, caffe=caffe)
    phases = None
    if settings.remote:
        if described is not None:
            raise RtkError("--labels and the preprocessing options apply here only; run without --remote, or put "
                           "them in the artifact first (rtk compile or quantize with them)")
        with ui.progress("predict") as progress:
            results = run(images, model, target=target, settings=settings, say=progress)
    else:
        with describing(described):
            results, phases = classify(images, model, target=target, settings=settings)
    show_predictions(results)
    if phases is not None:
        show_phases(phases)
        if hint != "auto" and "hint" not in phases.runtime:
            ui.warn(f"--hint {hint} is an OpenVINO setting; {phases.target} ran as it always does")
    emit_json(json, PredictReport(predictions=results, phases=phases))


@app.command()
@command
def compare(
    a: Annotated[Path, typer.Argument(help="Baseline report.json.")],
    b: Annotated[Path, typer.Argument(help="Candidate report.json.")],
    tolerance: Annotated[float, typer.Option(help="Latency change within this fraction counts as noise.")] = 0.2,
    max_drop: Annotated[float, typer.Option(help="Top-1 loss in points that counts as a regression.")] = 0.5,
    json: JsonOpt = None,
) -> None:
    """Compare two run reports: latency beyond the noise, top-1 changes. Exit 1 on a regression."""
    from toolkit.compare import compare as run

    result = run(a, b, tolerance=tolerance, max_drop=max_drop)
    ui.show_comparison(result)
    emit_json(json, result)
    if not result:
        raise GateFailed("regression beyond noise: " + ", ".join(result.regressions))


__all__ = ["bench", "compare", "doctor", "predict", "validate"]
