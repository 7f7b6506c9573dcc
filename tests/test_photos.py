"""Photo to label: the overlapped pipeline's order and memory bound, the fast JPEG decode and its accuracy guard."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from toolkit.artifact import Preprocess
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


def test_predict_folder_keeps_order_and_bound_with_uneven_decodes(random_onnx, tiny_data, tmp_path):
    """A 12 MP JPEG first (slow to decode), then small PNGs (fast): the output follows the sorted input, matches
    image-by-image prediction, and never more than `depth` images were in flight."""
    folder = tmp_path / "photos"
    folder.mkdir()
    _jpeg(folder / "a_big.jpg", (4000, 3000), 2)
    for i, src in enumerate(sorted((tiny_data / "val").rglob("*.png"))[:9]):
        (folder / f"b{i}.png").write_bytes(src.read_bytes())
    (folder / "c_notes.jpg").write_text("not an image")
    settings = PredictSettings(workers=2, depth=4, batch_size=2)
    results, report = classify([folder], random_onnx, settings=settings)
    names = [r.image for r in results]
    assert report.skipped == [str(folder / "c_notes.jpg")]
    assert names == sorted(str(p) for p in folder.iterdir() if p.suffix != ".jpg" or p.stem == "a_big")
    assert report.images == 10
    assert report.peak_in_flight <= 4 and report.decode == "fast" and report.scaled == 1
    one_by_one = [classify([p], random_onnx, settings=PredictSettings())[0][0] for p in names]
    assert [r.top[0].index for r in results] == [r.top[0].index for r in one_by_one]
    assert all(r.decode_ms > 0 and r.infer_ms > 0 for r in results)


def test_validate_measures_both_decodes_and_gates_the_fast_one(random_onnx, tiny_data, tmp_path, cli):
    """Validation images as large JPEGs: validate decodes them the fast way (what predict deploys), scores the
    exact decode on the same images, records the verdict of the rule, and exits 1 exactly when it fails."""
    val = tmp_path / "val"
    for src in sorted((tiny_data / "val").rglob("*.png")):
        (val / src.parent.name).mkdir(parents=True, exist_ok=True)
        Image.open(src).convert("RGB").resize((640, 480), Image.Resampling.BICUBIC).save(
            val / src.parent.name / f"{src.stem}.jpg", quality=92)
    out = tmp_path / "v.json"
    result = cli("validate", random_onnx, "--data", val, "--json", out)
    score = json.loads(out.read_text())["artifacts"][0]
    check = FastDecodeCheck.model_validate(score["fast_decode"])
    assert score["decode"] == "fast" and check.scaled == check.images == 32
    assert result.exit_code == (0 if check.passed else 1), result.stdout
    assert ("deploy with --exact-decode" in result.stdout) or check.passed
    result = cli("validate", random_onnx, "--data", val, "--exact-decode", "--json", out)
    exact = json.loads(out.read_text())["artifacts"][0]
    assert result.exit_code == 0 and exact["decode"] == "exact" and exact["fast_decode"] is None
    assert exact["top1"] == pytest.approx(check.exact_top1)


def test_predict_prints_phase_times(random_onnx, tiny_data, cli):
    result = cli("predict", tiny_data / "val", "--model", random_onnx, "--batch-size", "4")
    assert result.exit_code == 0, result.stderr
    assert all(word in result.stdout for word in ("decode", "preprocess", "infer", "images/s"))


def test_openvino_async_requests_keep_order_and_bound(random_ir, tiny_data, tmp_path):
    """On OpenVINO the batches run through an AsyncInferQueue (THROUGHPUT: several requests at once) and an image
    counts as in flight until its request's callback: the same labels as a one-at-a-time run, within the bound."""
    from toolkit.backends import RunnerOptions

    folder = tmp_path / "photos"
    folder.mkdir()
    _jpeg(folder / "a_big.jpg", (4000, 3000), 3)
    for i, src in enumerate(sorted((tiny_data / "val").rglob("*.png"))[:11]):
        (folder / f"b{i:02d}.png").write_bytes(src.read_bytes())
    overlapped, report = classify([folder], random_ir, settings=PredictSettings(workers=2, depth=3),
                                  options=RunnerOptions(hint="throughput", max_batch=1))
    sequential, _ = classify([folder], random_ir, settings=PredictSettings(workers=1, depth=1))
    assert [r.image for r in overlapped] == [r.image for r in sequential] == sorted(str(p) for p in folder.iterdir())
    assert [r.top[0].index for r in overlapped] == [r.top[0].index for r in sequential]
    assert report.peak_in_flight <= 3 and report.runtime["hint"] == "throughput"


def test_bench_images_times_each_phase(random_onnx, tiny_data, cli, tmp_path):
    out = tmp_path / "b.json"
    result = cli("bench", random_onnx, "--images", tiny_data / "val", "--batch", "1,4", "--warmup", "2", "--json", out)
    assert result.exit_code == 0, result.stderr
    res = json.loads(out.read_text())
    assert [p["batch"] for p in res["results"]] == [1, 4] and res["photos"]["images"] == 32
    for point in res["results"]:
        assert set(point["phases_ms"]) == {"decode", "preprocess", "infer"} and point["throughput_ips"] > 0
    assert cli("bench", random_onnx, "--images", tmp_path / "missing").exit_code == 2
    assert cli("bench", random_onnx, "--images", tiny_data / "val", "--runs", "3").exit_code == 2


def test_folder_follows_links_skips_undecodable_and_pads_a_static_batch(random_onnx, tiny_data, tmp_path, cli):
    """A symlinked sub-folder is read; a truncated JPEG in a folder is left out and named (a file named on the
    command line still fails); a static batch-4 IR takes a last batch of 3, padded."""
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
    assert [r.top[0].index for r in padded] == [r.top[0].index for r in classify([folder / "cams"], ir)[0]]


@pytest.mark.parametrize("command", ["predict", "bench", "validate"])
def test_json_that_is_an_input_is_refused(command, random_onnx, tiny_data, tmp_path, cli):
    photo = tmp_path / "photos" / "a.png"
    photo.parent.mkdir()
    photo.write_bytes(next((tiny_data / "val").rglob("*.png")).read_bytes())
    before = photo.read_bytes(), random_onnx.read_bytes()
    args = {"predict": ["predict", photo.parent, "--model", random_onnx, "--json", photo],
            "bench": ["bench", random_onnx, "--images", photo.parent, "--json", random_onnx],
            "validate": ["validate", random_onnx, "--data", tiny_data / "val", "--json",
                         next((tiny_data / "val").rglob("*.png"))]}[command]
    result = cli(*args)
    assert result.exit_code == 2 and "the input" in result.stderr
    assert (photo.read_bytes(), random_onnx.read_bytes()) == before
