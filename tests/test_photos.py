"""Photo to label: the overlapped pipeline's order and memory bound, the fast JPEG decode and its accuracy guard."""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

from toolkit.artifact import Preprocess
from toolkit.errors import RtkError
from toolkit.images import load_image
from toolkit.photos import FastDecodeCheck, InFlight, ordered_map
from toolkit.predict import classify
from toolkit.preprocess import eval_array
from toolkit.settings import PredictSettings


def test_ordered_map_yields_in_input_order_whatever_finishes_first():
    """Item i sleeps (n - i) ms, so later items finish first; the output is still in input order."""
    n = 12

    def slow_first(i: int) -> int:
        time.sleep((n - i) * 0.004)
        return i * 10

    assert list(ordered_map(slow_first, range(n), workers=4, depth=6)) == [i * 10 for i in range(n)]


def test_ordered_map_never_holds_more_than_depth():
    """The consumer blocks on the first item until `depth` items have started (so the pool really ran ahead),
    then consumes the rest: never more than `depth` started and unconsumed, and exactly `depth` at the peak."""
    depth, started, lock = 3, [], threading.Lock()
    full = threading.Event()
    counter = InFlight()

    def work(i: int) -> int:
        with lock:
            started.append(i)
            if counter.now >= depth:
                full.set()
        return i

    got = []
    for i in ordered_map(work, range(20), workers=2, depth=depth, counter=counter):
        if i == 0:
            assert full.wait(10), "the pool never ran ahead of the consumer"
        assert counter.now <= depth
        got.append(i)
    assert got == list(range(20)) and counter.peak == depth and counter.now == 0


def _jpeg(path, size, seed):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def test_fast_decode_scales_large_jpegs_only(tmp_path):
    pre = Preprocess(resize=256, crop=224)
    big = _jpeg(tmp_path / "big.jpg", (4000, 3000), 0)
    img = load_image(big, draft=pre.resize)
    assert img.size == (500, 375) and img.mode == "RGB"        # 1/8 scale: the smallest still >= 256
    fast, exact = eval_array(img, pre), eval_array(load_image(big), pre)
    assert fast.shape == exact.shape and np.abs(fast - exact).mean() < 0.05
    small = _jpeg(tmp_path / "small.jpg", (400, 300), 1)
    assert load_image(small, draft=pre.resize).size == (400, 300)   # 1/2 would be 150 < 256: decoded in full
    png = tmp_path / "big.png"
    Image.open(big).save(png)
    assert load_image(png, draft=pre.resize).size == (4000, 3000)


@pytest.mark.parametrize("exact_top1, fast_top1, agreement, passed", [
    (90.0, 90.0, 100.0, True), (90.0, 89.9, 99.5, True), (90.0, 91.0, 99.5, True),
    (90.0, 89.89, 100.0, False), (90.0, 90.0, 99.49, False)])
def test_fast_decode_rule(exact_top1, fast_top1, agreement, passed):
    check = FastDecodeCheck(images=1000, scaled=1000, exact_top1=exact_top1, fast_top1=fast_top1, agreement=agreement)
    assert check.passed is passed


def _mixed_folder(tmp_path, tiny_data, pngs, not_an_image):
    """A 12 MP JPEG first (slow to decode), then `pngs` small PNGs (fast), and a file named like an image that is
    not one."""
    folder = tmp_path / "photos"
    folder.mkdir()
    _jpeg(folder / "a_big.jpg", (4000, 3000), 2)
    for i, src in enumerate(sorted((tiny_data / "val").rglob("*.png"))[:pngs]):
        (folder / f"b{i}.png").write_bytes(src.read_bytes())
    (folder / not_an_image).write_text("not an image")
    return folder


def test_predict_folder_keeps_order_and_bound_with_uneven_decodes(random_onnx, tiny_data, tmp_path):
    """A 12 MP JPEG first (slow to decode), then small PNGs (fast): the output follows the sorted input, matches
    image-by-image prediction, and never more than `depth` images were in flight."""
    folder = _mixed_folder(tmp_path, tiny_data, 9, "c_notes.jpg")
    settings = PredictSettings(workers=2, depth=4, batch_size=2, fast_decode=True)
    results, report = classify([folder], random_onnx, settings=settings)
    names = [r.image for r in results]
    assert report.skipped == [str(folder / "c_notes.jpg")]
    assert names == sorted(str(p) for p in folder.iterdir() if p.suffix != ".jpg" or p.stem == "a_big")
    assert report.images == 10
    assert report.peak_in_flight <= 4 and report.decode == "fast" and report.scaled == 1
    one_by_one = [classify([p], random_onnx, settings=PredictSettings(fast_decode=True))[0][0] for p in names]
    assert [r.top[0].index for r in results] == [r.top[0].index for r in one_by_one]
    # the latency is timed one photo (batch) after another: per image decode and preprocess, per batch the rest
    assert report.latency_images == 10 and report.decode_ms.runs == 10 and report.preprocess_ms.runs == 10
    assert report.infer_ms.runs == report.total_ms.runs == 5
    assert report.total_ms.min >= report.infer_ms.min + 2 * report.decode_ms.min and report.images_per_s > 0


def test_one_by_one_batch_latency_is_its_photos_then_its_inference(random_onnx, tiny_data):
    """The batch latency is what a photo in the batch waits: every photo's decode + preprocess, then the batch's
    inference (not the batch time divided by its size); a short last batch is its own."""
    from toolkit.backends import RunnerOptions, open_runner
    from toolkit.predict import one_by_one

    paths = [str(p) for p in sorted((tiny_data / "val").rglob("*.png"))[:5]]
    with open_runner(random_onnx, None, options=RunnerOptions(max_batch=2)) as runner:
        got = one_by_one(paths, runner, decode="exact", batch_size=2)
    assert len(got["decode"]) == len(got["preprocess"]) == 5 and len(got["infer"]) == len(got["total"]) == 3
    for n, start in enumerate(range(0, 5, 2)):
        photos = sum(got["decode"][start:start + 2]) + sum(got["preprocess"][start:start + 2])
        assert got["total"][n] == pytest.approx(photos + got["infer"][n])


def _large_jpegs(source, folder):
    """The labeled images of `source` as 640x480 JPEGs in `folder`: large enough for the fast decode to DCT-scale."""
    for src in sorted(source.rglob("*.png")):
        (folder / src.parent.name).mkdir(parents=True, exist_ok=True)
        Image.open(src).convert("RGB").resize((640, 480), Image.Resampling.BICUBIC).save(
            folder / src.parent.name / f"{src.stem}.jpg", quality=92)
    return folder


def test_validate_measures_both_decodes_and_gates_the_fast_one(random_onnx, tiny_data, tmp_path, cli):
    """Validation images as large JPEGs: with --fast-decode validate decodes them the fast way (what predict
    --fast-decode deploys), scores the exact decode on the same images, records the verdict of the rule, says
    whether to use --fast-decode, and exits 1 exactly when it fails; by default it decodes exactly, like predict."""
    val = _large_jpegs(tiny_data / "val", tmp_path / "val")
    out = tmp_path / "v.json"
    result = cli("validate", random_onnx, "--data", val, "--fast-decode", "--json", out)
    score = json.loads(out.read_text())["artifacts"][0]
    check = FastDecodeCheck.model_validate(score["fast_decode"])
    assert score["decode"] == "fast" and check.scaled == check.images == 32
    assert result.exit_code == (0 if check.passed else 1), result.stdout
    verdict = "may use --fast-decode" if check.passed else "FAILED: keep the exact decode"
    assert verdict in " ".join(result.stdout.split()), result.stdout
    result = cli("validate", random_onnx, "--data", val, "--json", out)
    exact = json.loads(out.read_text())["artifacts"][0]
    assert result.exit_code == 0 and exact["decode"] == "exact" and exact["fast_decode"] is None
    assert exact["top1"] == pytest.approx(check.exact_top1)


def test_predict_prints_phase_times(random_onnx, tiny_data, cli):
    result = cli("predict", tiny_data / "val", "--model", random_onnx, "--batch-size", "4")
    assert result.exit_code == 0, result.stderr
    assert all(word in result.stdout for word in ("decode", "preprocess", "infer", "images/s"))


@pytest.mark.parametrize("flags, decode, scaled", [((), "exact", 0), (("--exact-decode",), "exact", 0),
                                                   (("--fast-decode",), "fast", 1)])
def test_the_exact_decode_is_the_default_and_fast_is_asked_for(flags, decode, scaled, random_onnx, tmp_path, cli):
    """predict and bench --images decode exactly unless --fast-decode asks (validate's verdict says when to), and
    say which path they took."""
    folder = tmp_path / "photos"
    folder.mkdir()
    _jpeg(folder / "big.jpg", (640, 480), 3)
    (folder / "notes.txt").write_text("not a photo")
    said = {(): "exact JPEG decode (the default)", ("--exact-decode",): "exact JPEG decode (--exact-decode)",
            ("--fast-decode",): "fast JPEG decode (--fast-decode)"}[flags]
    result = cli("predict", folder, "--model", random_onnx, *flags, "--json", tmp_path / "p.json")
    assert result.exit_code == 0 and said in " ".join(result.stdout.split()), result.stdout
    got = json.loads((tmp_path / "p.json").read_text())       # the JSON has what the console has
    assert [p["image"] for p in got["predictions"]] == [str(folder / "big.jpg")]
    assert got["phases"]["skipped"] == [str(folder / "notes.txt")] and got["phases"]["decode"] == decode
    out = tmp_path / "b.json"
    result = cli("bench", random_onnx, "--images", folder, "--warmup", "0", *flags, "--json", out)
    photos = json.loads(out.read_text())["photos"]
    assert result.exit_code == 0 and (photos["decode"], photos["scaled"]) == (decode, scaled)


@pytest.mark.parametrize("workers, depth, batch", [(2, 3, 1), (None, 8, 1), (None, 2, 1), (None, 5, 2),
                                                   (None, None, 1), (None, None, 4)])
def test_openvino_parallel_requests_keep_order_and_bound(workers, depth, batch, random_ir, tiny_data, tmp_path):
    """On OpenVINO THROUGHPUT (several parallel requests) each thread decodes a batch and infers it on a request of
    its own; by default one thread more than requests, never more than --depth holds batches of, and without
    --depth the bound is 8 or a batch per thread (`--batch-size 8` alone once ran on one thread, at half the
    images/s). An image counts as in flight until its batch is inferred: the same labels as a one-at-a-time run,
    in order, within the bound, an undecodable file skipped."""
    from toolkit.backends import RunnerOptions

    folder = _mixed_folder(tmp_path, tiny_data, 11, "b5x.jpg")
    overlapped, report = classify([folder], random_ir, settings=PredictSettings(workers=workers, depth=depth,
                                                                                batch_size=batch),
                                  options=RunnerOptions(hint="throughput", max_batch=batch))
    sequential, _ = classify([folder], random_ir, settings=PredictSettings(workers=1, depth=1))
    images = sorted(str(p) for p in folder.iterdir() if p.name != "b5x.jpg")
    assert [r.image for r in overlapped] == [r.image for r in sequential] == images
    assert [r.top[0].index for r in overlapped] == [r.top[0].index for r in sequential]
    requests = report.runtime["infer_requests"]
    if requests < 2:
        pytest.skip(f"OpenVINO's THROUGHPUT hint gives {requests} request on this CPU: no parallel requests")
    threads = min(workers or requests + 1, (depth or 4096) // batch)
    assert report.runtime["hint"] == "throughput" and report.threads_infer and report.workers == threads
    assert report.depth == (depth or max(8, threads * batch))
    assert report.skipped == [str(folder / "b5x.jpg")] and 0 < report.peak_in_flight <= min(report.depth,
                                                                                             threads * batch)


@pytest.mark.parametrize("photos, flags, hint", [(3, (), "throughput"), (1, (), "latency"),
                                                  (3, ("--hint", "latency"), "latency"),
                                                  (3, ("--batch-size", "4"), "latency"),
                                                  (1, ("--hint", "throughput"), "throughput")])
def test_predict_picks_the_openvino_hint_by_the_photos(photos, flags, hint, cli, random_ir, tiny_data, tmp_path):
    """`rtk predict` on OpenVINO: more than one batch of photos is a throughput job (parallel requests), one batch a
    latency one, and --hint overrides either; the JSON and the console say which ran."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted((tiny_data / "val").rglob("*.png"))[:photos]:
        shutil.copy(src, folder / src.name)
    result = cli("predict", folder, "--model", random_ir, *flags, "--json", tmp_path / "p.json")
    assert result.exit_code == 0, result.output
    phases = json.loads((tmp_path / "p.json").read_text())["phases"]
    assert phases["runtime"]["hint"] == hint and phases["images"] == photos
    text = " ".join(result.stdout.split())
    assert f"OpenVINO {hint.upper()} hint" in text
    parallel = hint == "throughput" and phases["runtime"]["infer_requests"] > 1
    assert ("splits the cores between" in text) == parallel                       # why a photo is slower there
    assert ("only one could be busy at a time here" in text) == (parallel and photos == 1)


def test_predict_says_a_hint_is_for_openvino_only(cli, random_onnx, tiny_data, tmp_path):
    """--hint on ONNX Runtime changes nothing, and predict and bench say so instead of dropping it silently."""
    photo = sorted((tiny_data / "val").rglob("*.png"))[0]
    said = "--hint throughput is an OpenVINO setting; onnxruntime ran as it always does"
    for flags, warned in ((("--hint", "throughput"), True), ((), False)):
        result = cli("predict", photo, "--model", random_onnx, *flags)
        assert result.exit_code == 0 and (said in " ".join(result.output.split())) == warned, result.output
        result = cli("bench", random_onnx, "--images", photo.parent, "--warmup", "0", *flags)
        assert result.exit_code == 0 and (said in " ".join(result.output.split())) == warned, result.output


def test_a_depth_of_one_batch_decodes_ahead_and_says_what_sat_idle(random_ir, tiny_data, tmp_path, cli):
    """Where --depth holds one batch, one thread decoding and inferring would leave a request idle and stop
    decoding while it infers (48 against 80 images/s, 2026-12-05): the photos are decoded ahead on --workers
    threads instead, and predict says which requests sat idle and what --depth keeps them busy."""
    from toolkit.backends import RunnerOptions

    folder = _mixed_folder(tmp_path, tiny_data, 12, "b5x.jpg")
    _, report = classify([folder], random_ir, settings=PredictSettings(batch_size=4, depth=7),
                         options=RunnerOptions(hint="throughput", max_batch=4))
    requests = report.runtime["infer_requests"]
    if requests < 2:
        pytest.skip(f"OpenVINO's THROUGHPUT hint gives {requests} request on this CPU: no parallel requests")
    assert (report.threads_infer, report.workers, report.depth) == (False, 2, 7) and report.peak_in_flight <= 7
    result = cli("predict", folder, "--model", random_ir, "--batch-size", "4", "--depth", "7")
    said = " ".join(result.output.split())
    assert result.exit_code == 0 and f"--depth 7 holds 1 batch of 4, so {requests - 1} of the {requests} " in said
    assert f"give --depth {(requests + 1) * 4} (or leave it out)" in said
    result = cli("predict", folder, "--model", random_ir, "--batch-size", "4")
    assert result.exit_code == 0 and "sat idle" not in result.output


def test_a_stopped_run_cuts_the_running_batches_short(random_ir, tiny_data, tmp_path):
    """Ctrl-C or an error ends the consumer; every thread's batch then stops at its next photo instead of decoding
    the rest and inferring (80 s to stop at batch 64 before). The first batch (small PNGs) is held in its inference
    until the second (12 MP JPEGs, about 0.1 s each) has started, then the consumer stops at the first result."""
    from toolkit.backends import RunnerOptions, open_runner
    from toolkit.photos import inferred_batches

    big = _jpeg(tmp_path / "big.jpg", (4000, 3000), 1)
    pngs = sorted((tiny_data / "val").rglob("*.png"))[:20]
    slow = []
    for i in range(20):
        slow.append(tmp_path / f"big{i}.jpg")
        slow[-1].hardlink_to(big)
    counter, started = InFlight(), threading.Event()
    decoded = []
    original = counter.start
    counter.start = lambda: (decoded.append(1), original(), len(decoded) > 20 and started.set())
    with open_runner(random_ir, "openvino", options=RunnerOptions(hint="throughput", max_batch=20)) as runner:
        pool = runner.request_pool(2)
        if pool is None:
            pytest.skip("OpenVINO's THROUGHPUT hint gives 1 request on this CPU: no parallel requests")

        def infer(x):
            assert started.wait(60), "the second batch never started"
            return pool(x)

        run = inferred_batches(pngs + slow, runner.meta.preprocess, infer, decode="exact", batch_size=20,
                               threads=2, counter=counter)
        names, _, _ = next(run)
        t0 = time.perf_counter()
        run.close()                 # what Ctrl-C does to the consumer
        stopped_s = time.perf_counter() - t0
    assert names == [str(p) for p in pngs]
    assert len(decoded) < 20 + 10 and counter.now == 0, (len(decoded), counter.now)   # 20 + 20 without the stop
    assert stopped_s < 5


def test_bench_warms_up_past_photos_that_do_not_decode(random_onnx, tiny_data, tmp_path, cli):
    """The warm-up takes the first photos; when none of them decodes, the timed run still skips them and times the
    rest (it ended with "none of the 2 images could be decoded")."""
    folder = tmp_path / "warm"
    folder.mkdir()
    for name in ("a0.jpg", "a1.jpg"):
        _jpeg(folder / name, (640, 480), 1)
        (folder / name).write_bytes((folder / name).read_bytes()[:3000])      # verifies, fails to decode
    for i, src in enumerate(sorted((tiny_data / "val").rglob("*.png"))[:3]):
        (folder / f"b{i}.png").write_bytes(src.read_bytes())
    out = tmp_path / "b.json"
    result = cli("bench", random_onnx, "--images", folder, "--warmup", "2", "--json", out)
    assert result.exit_code == 0, result.stderr
    photos = json.loads(out.read_text())["photos"]
    assert photos["images"] == 3 and photos["skipped"] == [str(folder / "a0.jpg"), str(folder / "a1.jpg")]


def test_bench_images_times_each_phase(random_onnx, tiny_data, cli, tmp_path):
    out = tmp_path / "b.json"
    result = cli("bench", random_onnx, "--images", tiny_data / "val", "--batch", "1,8", "--warmup", "2", "--json", out)
    assert result.exit_code == 0, result.stderr
    res = json.loads(out.read_text())
    assert [p["batch"] for p in res["results"]] == [1, 8] and res["photos"]["images"] == 32
    for point in res["results"]:
        assert set(point["phases_ms"]) == {"decode", "preprocess", "infer"} and point["throughput_ips"] > 0
    # each batch size's own pipeline: without --depth, 8 or a batch per batch held (2 on ONNX Runtime), which
    # the photos in flight never pass (2026-12-05 the JSON gave the first batch size's depth for every one)
    assert [p["pipeline"]["depth"] for p in res["results"]] == [8, 16]
    assert all(0 < p["pipeline"]["peak_in_flight"] <= p["pipeline"]["depth"] for p in res["results"])
    assert "batch 8: 2 threads decoding, at most " in " ".join(result.output.split())
    assert cli("bench", random_onnx, "--images", tmp_path / "missing").exit_code == 2
    assert cli("bench", random_onnx, "--images", tiny_data / "val", "--runs", "3").exit_code == 2


def test_folder_follows_links_skips_undecodable_and_pads_a_static_batch(random_onnx, tiny_data, tmp_path, cli):
    """A symlinked sub-folder is read; a truncated JPEG in a folder is left out and named (a file named on the
    command line still fails); a static batch-4 IR takes a last batch of 3, padded, runs batches of 4 by default
    (and says so), and refuses another batch size; bench times that batch once for the default 1 or both."""
    from toolkit.compile import compile_model
    from toolkit.settings import CompileSettings

    pngs = sorted((tiny_data / "val").rglob("*.png"))[:6]
    (tmp_path / "cams").mkdir()
    for i, src in enumerate(pngs):
        (tmp_path / "cams" / f"{i}.png").write_bytes(src.read_bytes())
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cams").symlink_to(tmp_path / "cams")
    whole = _jpeg(tmp_path / "whole.jpg", (640, 480), 4).read_bytes()
    (folder / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    results, report = classify([folder], random_onnx)
    assert len(results) == 6 and report.skipped == [str(folder / "cut.jpg")]
    assert cli("predict", folder / "cut.jpg", "--model", random_onnx).exit_code == 2
    ir = tmp_path / "b4" / "model.xml"
    compile_model(random_onnx, target="openvino", output=ir, settings=CompileSettings(batch=4))
    padded, _ = classify([folder / "cams"], ir, settings=PredictSettings(batch_size=4))
    default, report = classify([folder / "cams"], ir)
    assert [r.top[0].index for r in padded] == [r.top[0].index for r in default] and report.batch_size == 4
    assert report.runtime["hint"] == "throughput"                              # 6 photos: 2 batches of 4
    _, one = classify(sorted((tmp_path / "cams").iterdir())[:3], ir)
    assert one.runtime["hint"] == "latency" and one.batch_size == 4           # 3 photos: the one static batch
    with pytest.raises(RtkError, match="has a static batch of 4, not 2; give --batch-size 4 or leave --batch-size out"):
        classify([folder / "cams"], ir, settings=PredictSettings(batch_size=2))
    for args in (["--runs", "3"], ["--images", folder / "cams", "--batch", "1,4"]):    # bench: batch 4, timed once
        result = cli("bench", ir, *args, "--json", tmp_path / "b.json")
        assert result.exit_code == 0, result.stderr
        assert [r["batch"] for r in json.loads((tmp_path / "b.json").read_text())["results"]] == [4]
    result = cli("bench", ir, "--batch", "2")
    assert result.exit_code == 2 and "static batch of 4, not 2; give --batch 4 or leave --batch out" in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["predict", "bench", "validate"])
def test_json_that_is_an_input_is_refused(command, random_onnx, tiny_data, tmp_path, cli):
    """A --json path ending in .json (so the extension check passes) that is a photo, a photo in an input folder
    or the artifact's metadata companion is refused before any work, the input untouched."""
    photo = tmp_path / "photos" / "a.json"          # a PNG under a .json name: predict reads it by content
    photo.parent.mkdir()
    photo.write_bytes(next((tiny_data / "val").rglob("*.png")).read_bytes())
    before = photo.read_bytes(), random_onnx.read_bytes()
    args = {"predict": ["predict", photo, "--model", random_onnx, "--json", photo],
            "bench": ["bench", random_onnx, "--images", photo.parent, "--json", photo],
            "validate": ["validate", random_onnx, "--data", tiny_data / "val", "--json",
                         tiny_data / "val" / "x.json"]}[command]
    result = cli(*args)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1     # one line, before any work
    assert (photo.read_bytes(), random_onnx.read_bytes()) == before


def test_photo_flags_that_cannot_hold_are_one_line(random_onnx, tiny_data, tmp_path, cli):
    """--depth below --batch-size names both flags once; bench --images with a batch larger than the folder is
    refused (it reported a 'batch 2' row that ran batch 1)."""
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.png").write_bytes(next((tiny_data / "val").rglob("*.png")).read_bytes())
    result = cli("predict", one, "--model", random_onnx, "--batch-size", "3", "--depth", "1")
    assert result.exit_code == 2 and result.stderr.startswith("error: --depth 1 holds less than --batch-size 3")
    result = cli("bench", random_onnx, "--images", one, "--batch", "1,2")
    assert result.exit_code == 2 and "--batch 2 is more than the 1 photos" in result.stderr
    # a JPEG cut in its data is no photo (the scan skips it since 2026-12-05), so the batch is still too large
    _jpeg(one / "b.jpg", (640, 480), 1)
    (one / "b.jpg").write_bytes((one / "b.jpg").read_bytes()[:3000])    # verifies (a header), fails to decode
    result = cli("bench", random_onnx, "--images", one, "--batch", "1,2")   # the scan skips it (no end marker)
    assert result.exit_code == 2 and "--batch 2 is more than the 1 photos in" in result.stderr, result.stderr
    # bench refuses a --depth below a batch as predict does (it raised it in silence)
    result = cli("bench", random_onnx, "--images", tiny_data / "val", "--batch", "1,4", "--depth", "2")
    assert result.exit_code == 2 and result.stderr.startswith("error: --depth 2 holds less than a batch of 4")


def test_the_latency_is_timed_in_whole_batches(random_onnx, tiny_data):
    """A short last batch is another batch size's latency: predict times whole batches only, and a dynamic batch
    larger than the photos runs, and is reported, as the photos' own."""
    paths = sorted((tiny_data / "val").rglob("*.png"))
    _, report = classify(paths[:5], random_onnx, settings=PredictSettings(batch_size=2))
    assert report.images == 5 and report.latency_images == 4 and report.infer_ms.runs == report.total_ms.runs == 2
    _, report = classify(paths[:3], random_onnx, settings=PredictSettings(batch_size=8))
    assert report.batch_size == 3 and report.latency_images == 3 and report.infer_ms.runs == 1


PASSED = {"images": 200, "scaled": 200, "exact_top1": 80.0, "fast_top1": 80.0, "agreement": 100.0}


@pytest.mark.parametrize("record, decode", [
    (PASSED, "fast"),
    ({**PASSED, "agreement": 99.0}, "exact"),                                   # failed the rule
    ({**PASSED, "fast_top1": 70.0, "max_drop_pt": 50.0}, "exact"),              # its own looser limits are ignored
    ({**PASSED, "scaled": 0}, "exact"),                                         # never changed an image: not tested
    ({**PASSED, "scaled": 300}, "exact"),                                       # more scaled than images: damaged
    ({**PASSED, "exact_top1": 0.0, "fast_top1": 100.0}, "exact"),   # every top-1 changed, yet 100% agreement: damaged
    ({**PASSED, "agreement": "all"}, "exact"), ({**PASSED, "fast_top1": "80"}, "exact"), ({"images": 200}, "exact"),
    ("fast", "exact"), (None, "exact"), ({**PASSED, "content_sha256": "0" * 64}, "exact")])   # another model's
def test_only_a_passed_record_makes_the_fast_decode_the_default(record, decode, tmp_path):
    """An artifact's decode record (written by `rtk run` where validate.fast_decode passed) turns the fast decode on
    by default only when it passes rtk's own rule and names this artifact's content; a flag always wins."""
    from toolkit.artifact import ModelMeta
    from toolkit.artifact import DECODE_RECORD
    from toolkit.content import content_sha256
    from toolkit.photos import choose_decode, decode_record

    engine = tmp_path / "model.engine"          # an engine's content is its plan file
    engine.write_bytes(b"plan")
    if isinstance(record, dict):
        record = {"content_sha256": content_sha256(engine), **record}
    meta = ModelMeta(num_classes=2, class_names=["a", "b"], extra={} if record is None else {DECODE_RECORD: record})
    why = "artifact" if decode == "fast" else "default" if record is None else "refused"   # a record not trusted says so
    plain = ModelMeta(num_classes=2, class_names=["a", "b"])
    records = [decode_record(meta, engine), decode_record(plain, engine)]
    assert choose_decode(None, records[:1]) == (decode, why)
    assert choose_decode(False, records[:1]) == ("exact", "flag")
    assert choose_decode(True, records[:1]) == ("fast", "flag")
    assert choose_decode(None, records) == ("exact", "mixed" if decode == "fast" else why)
    engine.write_bytes(b"another plan")         # the same record on other content is not trusted
    assert choose_decode(None, [decode_record(meta, engine)]) == ("exact", "default" if record is None else "refused")


def test_run_deploys_the_fast_decode_where_it_passed(accurate_ckpt, tiny_data, tmp_path, cli, monkeypatch):
    """`rtk run` with validate.fast_decode on large validation JPEGs: the check passes, so the deployed IR is written
    again under deploy/ with the check in its metadata (same weights, provenance naming its parent), and predict,
    bench --images and validate take the fast decode by default for that artifact only, saying why."""
    from toolkit.backends import read_meta
    from toolkit.io import sha256_file
    from toolkit.photos import recorded_check

    val = _large_jpegs(tiny_data / "val", tmp_path / "photos" / "val")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"version: 1\nname: fast\ndata: {{validation: {val}}}\nmodel: {{source: {accurate_ckpt}}}\n"
                      "compile: {targets: [openvino]}\nvalidate: {fast_decode: true}\n"
                      "bench: {runs: 3, warmup: 1, repeats: 1}\n")
    out = tmp_path / "run"
    result = cli("run", recipe, "-o", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    source, deployed = out / "openvino" / "model.xml", out / "deploy" / "model.xml"
    assert report["deploy"]["artifact"] == str(deployed) and report["deploy"]["check"]["scaled"] == 32
    assert "Deploy **deploy/model.xml**" in (out / "report.md").read_text()
    meta = read_meta(deployed)
    assert recorded_check(meta, deployed) is not None and recorded_check(read_meta(source), source) is None
    assert meta.provenance["history"][-1]["parent_sha256"] == sha256_file(source)
    assert sha256_file(deployed.with_suffix(".bin")) == sha256_file(source.with_suffix(".bin"))   # same weights
    photo = next(val.rglob("*.jpg"))
    for model, flags, want in [(deployed, (), ("fast", "artifact")), (deployed, ("--exact-decode",), ("exact", "flag")),
                               (source, (), ("exact", "default"))]:
        result = cli("predict", photo, "--model", model, *flags, "--json", tmp_path / "p.json")
        phases = json.loads((tmp_path / "p.json").read_text())["phases"]
        assert result.exit_code == 0 and (phases["decode"], phases["decode_by"]) == want, result.stdout
    result = cli("bench", deployed, "--images", photo.parent, "--warmup", "0", "--json", tmp_path / "b.json")
    assert result.exit_code == 0 and json.loads((tmp_path / "b.json").read_text())["photos"]["decode"] == "fast"
    result = cli("validate", deployed, "--data", val, "--json", tmp_path / "v.json")
    score = json.loads((tmp_path / "v.json").read_text())["artifacts"][0]
    assert result.exit_code == 0 and (score["decode"], score["decode_by"]) == ("fast", "artifact")
    assert FastDecodeCheck.model_validate(score["fast_decode"]).passed and score["decode_record"] == "trusted"
    assert "the artifact records that it passed validation" in " ".join(result.stdout.split())
    edited = tmp_path / "edited"                # the same record on weights changed since: not trusted, and named
    edited.mkdir()
    shutil.copy(deployed, edited / "model.xml")
    weights = bytearray(deployed.with_suffix(".bin").read_bytes())
    weights[-1] ^= 1
    (edited / "model.bin").write_bytes(bytes(weights))
    result = cli("validate", deployed, edited / "model.xml", "--data", val, "--json", tmp_path / "v.json")
    scores = json.loads((tmp_path / "v.json").read_text())["artifacts"]
    assert [(s["decode_by"], s["decode_record"]) for s in scores] == [("refused", "trusted"), ("refused", "refused")]
    assert f"decoded exactly: {edited / 'model.xml'} carries" in " ".join(result.stderr.split()), result.stderr
    (out / "deploy" / "notes.txt").write_text("the user's")
    monkeypatch.chdir(tmp_path)
    result = cli("run", recipe, "-o", "run", "--resume")    # the same run, its folder spelled another way
    assert result.exit_code == 0 and recorded_check(read_meta(deployed), deployed) is not None, result.stdout
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert all(s["skipped"] for s in stages if s["name"] != "bench"), stages      # nothing redone for the spelling
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert all(r["top1"] is not None for r in rows) and rows[-1]["path"] == str(out / "openvino" / "model.xml"), rows
    recipe.write_text(recipe.read_text().replace("fast_decode: true", "fast_decode: false"))
    result = cli("run", recipe, "-o", out, "--resume")     # no longer checked: the old copy's claim goes with it
    manifest = json.loads((out / "manifest.json").read_text())
    assert result.exit_code == 0 and sorted(p.name for p in (out / "deploy").iterdir()) == ["notes.txt"]
    assert [name for name in manifest["outputs"] if name.startswith("deploy")] == ["deploy/notes.txt"]


def test_deploy_copy_of_an_onnx_keeps_its_graph_and_refuses_a_failed_check(random_onnx, tmp_path):
    """The deploy copy of an ONNX is the same graph and weights with the decode record added; a check that failed
    is never recorded."""
    import onnx

    from toolkit.backends import read_meta
    from toolkit.deploy import with_fast_decode
    from toolkit.photos import recorded_check

    out = tmp_path / "deploy" / "model.onnx"
    with_fast_decode(random_onnx, out, FastDecodeCheck(**PASSED), data="val")
    assert onnx.load(str(out)).graph == onnx.load(str(random_onnx)).graph
    assert recorded_check(read_meta(out), out) == FastDecodeCheck(**PASSED)
    assert recorded_check(read_meta(out).derived("compile", parent=out), out) is None   # for that artifact only
    edited = onnx.load(str(out))                 # the weights changed, the record kept (an outside tool's rewrite)
    edited.graph.initializer[0].raw_data = bytes(len(edited.graph.initializer[0].raw_data))
    onnx.save(edited, str(tmp_path / "edited.onnx"))
    assert recorded_check(read_meta(tmp_path / "edited.onnx"), tmp_path / "edited.onnx") is None
    with pytest.raises(RtkError, match="did not pass"):
        with_fast_decode(random_onnx, tmp_path / "other.onnx", FastDecodeCheck(**{**PASSED, "agreement": 90.0}),
                         data="val")
    assert not (tmp_path / "other.onnx").exists()


def test_run_keeps_the_exact_decode_where_the_fast_one_was_not_tested(accurate_ckpt, tiny_data, tmp_path, cli):
    """validate.fast_decode on validation images too small for the fast decode to change: nothing is deployed, and
    the report says why."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"version: 1\nname: small\ndata: {{validation: {tiny_data / 'val'}}}\n"
                      f"model: {{source: {accurate_ckpt}}}\nvalidate: {{fast_decode: true}}\n"
                      "bench: {runs: 3, warmup: 1, repeats: 1}\n")
    result = cli("run", recipe, "-o", tmp_path / "run")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["deploy"] is None and not (tmp_path / "run" / "deploy").exists()
    assert any("keeps the exact decode" in n and "not tested" in n for n in report["notes"]), report["notes"]


@pytest.mark.parametrize("setup, said", [
    (lambda d: d.symlink_to(d.parent.parent), "is a symbolic link"),
    (lambda d: d.write_text("x"), "deploy is a file"),
    (lambda d: (d / "model.xml").mkdir(parents=True), "model.xml is a folder")])
def test_a_deploy_folder_that_cannot_take_the_copy_is_refused_before_any_stage(setup, said, tmp_path, cli):
    """validate.fast_decode and a deploy/ that cannot hold the deploy copy: exit 2 before the first stage, not at
    the end of the run."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nname: d\ndata:\n  synth: {classes: 4}\nmodel: {source: random}\n"
                      "validate: {fast_decode: true}\n")
    out = tmp_path / "run"
    out.mkdir()
    setup(out / "deploy")
    result = cli("run", recipe, "-o", out, "--force")
    assert result.exit_code == 2 and said in result.stderr, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["deploy"]      # nothing written
