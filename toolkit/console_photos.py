"""What `rtk predict` prints: the labels, the latency per phase and the overlapped run's throughput."""

from __future__ import annotations

from rich.markup import escape

from toolkit.console import _f, _on, _table, out, warn


def show_predictions(results, *, one_table_from: int = 10) -> None:
    if len(results) >= one_table_from:
        table = _table(f"{len(results)} images", "image", "class", "probability")
        for r in results:
            table.add_row(r.image, r.top[0].label, f"{r.top[0].probability:.4f}")
        out.print(table)
        return
    for r in results:
        table = _table(escape(r.image + _on(r.device)), "class", "probability")
        for g in r.top:
            table.add_row(g.label, f"{g.probability:.4f}")
        out.print(table)


def show_phases(report) -> None:
    """Latency per phase (timed one after another) and the overlapped run's throughput, labeled apart."""
    table = _table(f"latency, {report.latency_images} photos timed one after another, {report.decode} decode",
                   "phase", "p50 ms", "p99 ms", "mean ms")
    per = "batch" if report.batch_size > 1 else "image"
    for name, lat in (("decode (per image)", report.decode_ms), ("preprocess (per image)", report.preprocess_ms),
                      (f"infer (per {per})", report.infer_ms), (f"total (per {per})", report.total_ms)):
        table.add_row(name, _f(lat.p50), _f(lat.p99), _f(lat.mean))
    out.print(table)
    out.print(f"throughput: {report.images} images on {report.target}, batch {report.batch_size}: "
              f"{report.images_per_s:.1f} images/s in {report.wall_s:.2f} s overlapped ({report.workers} decode threads, "
              f"at most {report.peak_in_flight} of {report.depth} images in flight; {report.decode} decode, {report.scaled} JPEGs DCT-scaled)",
              highlight=False, soft_wrap=True)
    said = {("exact", "default"): "exact JPEG decode (the default); --fast-decode is faster on large JPEGs once "
                                  "`rtk validate --fast-decode` passes on photos like these",
            ("exact", "flag"): "exact JPEG decode (--exact-decode)",
            ("fast", "flag"): "fast JPEG decode (--fast-decode): use it only where `rtk validate --fast-decode` passed",
            ("fast", "artifact"): "fast JPEG decode (the artifact's default: it records that the fast decode passed "
                                  "validation; --exact-decode to decode in full)",
            ("exact", "refused"): "exact JPEG decode: the artifact's fast-decode record is not trusted (damaged, edited, "
                                  "or failing rtk's rule); rtk run with validate.fast_decode writes a new deploy copy"}
    out.print(f"[dim]{said.get((report.decode, report.decode_by), report.decode + ' JPEG decode')}[/]",
              highlight=False, soft_wrap=True)
    if report.decode == "fast" and not report.scaled:
        out.print("[dim]no image here is a JPEG at least twice the resize target, so each was decoded in full[/]",
                  highlight=False)
    if report.skipped:
        warn(f"{len(report.skipped)} files that are not readable images were skipped, e.g. "
             f"{escape(report.skipped[0])}")
