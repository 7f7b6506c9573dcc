"""Bring your own classifier (issue #18, principle 8): a plain ONNX exported elsewhere, here the shape of the
classic Keras ResNet50 after tf2onnx (NHWC input, BGR, "caffe" preprocessing), validated, quantized and compiled
with --labels and its preprocessing, which end up in what rtk writes. The transform is checked against a hand
computation of each mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolkit.artifact import CAFFE_MEAN_BGR, Preprocess
from toolkit.preprocess import eval_array


def keras_like(path: Path, *, classes: int, size: int = 64) -> Path:
    """An NHWC classifier as tf2onnx writes a Keras model: a Transpose to NCHW at the input, then the network
    (here pooling and a dense layer whose weights make the channels tell the classes apart)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((3, classes)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["input_1"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("GlobalAveragePool", ["t"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["predictions"])]
    graph = helper.make_graph(nodes, "resnet50", [helper.make_tensor_value_info(
        "input_1", TensorProto.FLOAT, ["unk__1", size, size, 3])], [helper.make_tensor_value_info(
            "predictions", TensorProto.FLOAT, ["unk__2", classes])], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), str(path))
    return path


def _image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 52, 3), dtype=np.uint8))


def test_caffe_nhwc_transform_is_the_hand_computation():
    """--caffe with NHWC: resize + crop as before, then BGR, minus the BGR ImageNet mean in 0-255, no std, HWC."""
    pre = Preprocess(resize=36, crop=32, layout="NHWC", channels="BGR", pixels="0-255", mean=CAFFE_MEAN_BGR,
                     std=(1.0, 1.0, 1.0))
    plain = eval_array(_image(), Preprocess(resize=36, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    pixels = plain.transpose(1, 2, 0) * np.float32(255)            # the same crop, back to 0-255 HWC RGB
    expected = pixels[..., ::-1] - np.asarray(CAFFE_MEAN_BGR, np.float32)
    got = eval_array(_image(), pre)
    assert got.shape == (32, 32, 3)
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_bgr_nchw_and_nhwc_rgb_are_the_default_rearranged():
    default = eval_array(_image(), Preprocess(resize=36, crop=32))
    bgr = eval_array(_image(), Preprocess(resize=36, crop=32, channels="BGR", mean=Preprocess().mean[::-1],
                                          std=Preprocess().std[::-1]))
    np.testing.assert_array_equal(bgr, default[::-1])
    nhwc = eval_array(_image(), Preprocess(resize=36, crop=32, layout="NHWC"))
    np.testing.assert_array_equal(nhwc, default.transpose(1, 2, 0))


def test_keras_resnet_after_tf2onnx_validates_quantizes_and_compiles(  # byo-keras-tf2onnx-caffe-nhwc
        cli, tmp_path, tiny_data):
    names = sorted(p.name for p in (tiny_data / "val").iterdir())
    model = keras_like(tmp_path / "keras.onnx", classes=len(names))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(names) + "\n")
    byo = ["--labels", labels, "--caffe"]
    check = cli("validate", model, "--data", tiny_data / "val", *byo, "--json", tmp_path / "v.json")
    assert check.exit_code == 0, check.stderr
    assert json.loads((tmp_path / "v.json").read_text())["images"] == len(names) * 8
    int8 = tmp_path / "int8" / "model.onnx"
    done = cli("quantize", model, "-o", int8, "--calib", tiny_data / "train", "--allow-small", "--bench-runs", "0",
               *byo)
    assert done.exit_code == 0, done.stderr
    assert "like 0-255 pixels" not in done.stderr       # the caffe preprocess puts them there by design
    ir = tmp_path / "ir"
    assert cli("compile", int8, "--target", "openvino", "-o", ir).exit_code == 0
    from toolkit.backends import read_meta

    for artifact in (int8, ir / "model.xml"):
        meta = read_meta(artifact)                     # recorded: no options needed from here on
        assert meta.class_names == names and meta.arch == "unknown"
        assert (meta.preprocess.layout, meta.preprocess.channels, meta.preprocess.pixels) == ("NHWC", "BGR", "0-255")
        assert meta.preprocess.mean == CAFFE_MEAN_BGR
    both = cli("validate", int8, ir / "model.xml", "--data", tiny_data / "val", "--reference", model, *byo,
               "--json", tmp_path / "both.json")
    assert both.exit_code == 0, both.stderr
    report = json.loads((tmp_path / "both.json").read_text())
    assert all(a["agreement"] >= 75 for a in report["artifacts"])


REFUSED = {
    "byo-labels-count-mismatch": (["--labels", "LABELS3"], "3 class names"),
    "byo-mean-not-three-numbers": (["--mean", "1,2"], "--mean"),
    "byo-std-zero": (["--std", "1,0,1"], "std"),
    "byo-interpolation-unknown": (["--interpolation", "lanczos"], "--interpolation"),
    "byo-layout-contradicts-graph": (["--layout", "NCHW"], "not an image classifier"),
}


def test_repeated_class_names_are_refused_where_folders_are_matched_by_name(  # byo-labels-repeated-name
        cli, tmp_path, tiny_data):
    """Class folders are matched to a model's classes by name: with a name given to two classes that match is
    ambiguous, so validate refuses (exit 2, one line) rather than score against one of them; predict, which needs
    no match, shows each guess with its index."""
    names = sorted(p.name for p in (tiny_data / "val").iterdir())
    model = keras_like(tmp_path / "keras.onnx", classes=len(names))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join([names[0], *names[:-1]]) + "\n")
    result = cli("validate", model, "--data", tiny_data / "val", "--labels", labels, "--caffe",
                 "--json", tmp_path / "v.json")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and f"more than one class '{names[0]}'" in lines[0], result.stderr
    assert not (tmp_path / "v.json").exists()
    shown = cli("predict", next((tiny_data / "val").rglob("*.png")), "--model", model, "--labels", labels, "--caffe",
                "--top", "4", "--json", tmp_path / "p.json")
    assert shown.exit_code == 0, shown.stderr
    top = json.loads((tmp_path / "p.json").read_text())["predictions"][0]["top"]
    assert sorted(g["index"] for g in top) == [0, 1, 2, 3]


def test_byo_rows_are_documented():
    text = (Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md").read_text(encoding="utf-8")
    missing = [i for i in [*REFUSED, "byo-keras-tf2onnx-caffe-nhwc", "byo-labels-repeated-name"]
               if f"`{i}`" not in text]
    assert not missing, missing


@pytest.mark.parametrize("args, fragment", list(REFUSED.values()), ids=list(REFUSED))
def test_byo_options_are_checked(cli, tmp_path, tiny_data, args, fragment):
    model = keras_like(tmp_path / "keras.onnx", classes=4)
    (tmp_path / "l3.txt").write_text("a\nb\nc\n")
    args = [str(tmp_path / "l3.txt") if a == "LABELS3" else a for a in args]
    result = cli("predict", next((tiny_data / "val").rglob("*.png")), "--model", model, *args)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
