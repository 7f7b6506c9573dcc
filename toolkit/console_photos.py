"""What `rtk predict` prints (the labels, the latency per phase and the overlapped run's throughput), and how a
validation decoded its JPEGs."""

from __future__ import annotations

from rich.markup import escape

from toolkit.console import _f, _on, _table, out, warn


def show_predictions(results, *, one_table_from: int = 10) -> None:
    if len(results) >= one_table_from:
        table = _table(f"{len(results)} image{'s' if len(results) != 1 else ''}", "image", "class", "probability")
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
    hint = report.runtime.get("hint")
    table = _table(f"latency, {report.latency_images} photos timed one after another, {report.decode} decode"
                   + (f", OpenVINO {str(hint).upper()} hint" if hint else ""), "phase", "p50 ms", "p99 ms", "mean ms")
    per = "batch" if report.batch_size > 1 else "image"
    for name, lat in (("decode (per image)", report.decode_ms), ("preprocess (per image)", report.preprocess_ms),
                      (f"infer (per {per})", report.infer_ms), (f"total (per {per})", report.total_ms)):
        table.add_row(name, _f(lat.p50), _f(lat.p99), _f(lat.mean))
    out.print(table)
    plural = "s" if report.images != 1 else ""
    out.print(f"throughput: {report.images} image{plural} on {report.target}, batch {report.batch_size}: "
              f"{report.images_per_s:.1f} images/s in {report.wall_s:.2f} s overlapped ({report.workers} "
              f"thread{'s' if report.workers != 1 else ''} decoding"
              f"{' and inferring' if report.threads_infer else ''}, "
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
    requests = int(report.runtime.get("infer_requests") or 1)
    if hint == "throughput" and requests > 1:
        held, batches = max(1, report.depth // report.batch_size), -(-report.images // report.batch_size)
        busy = min(requests, batches, held,
                   report.workers if report.threads_infer else requests)
        out.print(f"[dim]THROUGHPUT hint: OpenVINO splits the cores between {requests} parallel requests, so one "
                  "photo's inference takes longer than with --hint latency"
                  + ("; only one could be busy at a time here, so --hint latency would be faster" if busy < 2 else "")
                  + "[/]", highlight=False, soft_wrap=True)
        if held < requests < batches:
            warn(f"--depth {report.depth} holds {held} batch{'es' * (held != 1)} of {report.batch_size}, so "
                 f"{requests - held} of the {requests} OpenVINO requests sat idle; give --depth "
                 f"{(requests + 1) * report.batch_size} (or leave it out) to keep them busy, or --hint latency")
    out.print(f"[dim]{said.get((report.decode, report.decode_by), report.decode + ' JPEG decode')}[/]",
              highlight=False, soft_wrap=True)
    if report.decode == "fast" and not report.scaled:
        out.print("[dim]no image here is a JPEG at least twice the resize target, so each was decoded in full[/]",
                  highlight=False)
    if report.skipped:
        warn(f"{len(report.skipped)} files skipped (no image extension, or not a readable image), e.g. "
             f"{report.skipped[0]}")


def show_decode(rows) -> None:
    """How a validation decoded its JPEGs and why, and the fast decode's check where it ran."""
    last = rows[-1] if rows else None
    if last is not None and last.decode_by == "artifact":
        out.print("[dim]fast JPEG decode: the artifact records that it passed validation, so predict uses it by "
                  "default (--exact-decode to decode in full)[/]", highlight=False, soft_wrap=True)
    if last is not None and last.fast_decode is not None and last.fast_decode.scaled == 0:
        out.print("[dim]the fast JPEG decode was NOT tested: no image here is a JPEG at least twice the resize "
                  "target, so each decoded in full; validate on photos like the ones you deploy before using "
                  "predict --fast-decode[/]", highlight=False)
    elif last is not None and last.fast_decode is not None:
        check = last.fast_decode
        verdict = ("passed: predict and bench --images may use --fast-decode on photos like these (rtk run with "
                   "validate.fast_decode writes the artifact with it on by default under deploy/)" if check.passed
                   else "FAILED: deploy with the exact decode (predict --exact-decode)")
        out.print(f"{escape(str(check))}; {verdict}", highlight=False, soft_wrap=True)
    elif last is not None and last.decode == "exact" and last.decode_by == "flag":
        out.print("[dim]decoded exactly (--exact-decode)[/]", highlight=False)
    elif last is not None and last.decode_by == "refused":
        refused = ", ".join(escape(s.artifact) for s in rows if s.decode_record == "refused")
        warn(f"decoded exactly: {refused} carries a fast-decode record rtk does not trust (damaged, edited, failing "
             "rtk's rule, or on other content); rtk run with validate.fast_decode writes a new deploy copy")
    elif last is not None and last.decode_by == "mixed":
        out.print("[dim]decoded exactly: only some of these artifacts record that the fast JPEG decode passed (predict "
                  "uses it by default for those); add --fast-decode to validate them all with it[/]", highlight=False,
                  soft_wrap=True)
    elif last is not None and last.decode == "exact":
        out.print("[dim]decoded exactly, as rtk predict does by default; add --fast-decode to check whether the "
                  "faster JPEG decode keeps these results[/]", highlight=False)
