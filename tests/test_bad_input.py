"""The foundation's bad inputs: each is one line on stderr, exit 2, and nothing written."""

from __future__ import annotations

import shutil

import pytest
import torch


def _assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr.replace("\n", " ")


def _outputs(folder):
    return sorted(p.name for p in folder.iterdir())


def test_missing_checkpoint(cli, tmp_path):
    result = cli("export", tmp_path / "missing.pt", "-o", tmp_path / "m.onnx")
    _assert_clean_error(result, "missing.pt", "not found")
    assert _outputs(tmp_path) == []


def test_corrupt_checkpoint(cli, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    result = cli("export", bad, "-o", tmp_path / "m.onnx")
    _assert_clean_error(result, "bad.pt")
    assert _outputs(tmp_path) == ["bad.pt"]


def test_pickled_checkpoint(cli, tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, evil)
    result = cli("export", evil, "-o", tmp_path / "m.onnx")
    _assert_clean_error(result, "pickled")
    assert not marker.exists() and _outputs(tmp_path) == ["evil.pt"]


def test_state_dict_that_does_not_fit(cli, tmp_path):
    import torchvision

    sd = tmp_path / "vgg.pt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), sd)
    result = cli("export", sd, "-o", tmp_path / "m.onnx")
    _assert_clean_error(result, "do not fit resnet50")
    assert _outputs(tmp_path) == ["vgg.pt"]


def test_non_onnx_file_as_onnx(cli, tmp_path, tiny_data):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not protobuf")
    result = cli("validate", fake, "--data", tiny_data / "val")
    _assert_clean_error(result, "model.onnx")
    result = cli("bench", fake)
    _assert_clean_error(result, "model.onnx")


def test_empty_data_folder(cli, tmp_path, random_onnx):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    result = cli("validate", random_onnx, "--data", tmp_path / "empty")
    _assert_clean_error(result, "no readable images")


def test_non_image_files_are_skipped_and_counted(cli, tmp_path, tiny_data, random_onnx):
    data = tmp_path / "val"
    shutil.copytree(tiny_data / "val", data)
    first_class = sorted(p for p in data.iterdir() if p.is_dir())[0]
    (first_class / "notes.txt").write_text("not an image")
    (first_class / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    out = tmp_path / "v.json"
    result = cli("validate", random_onnx, "--data", data, "--json", out)
    assert result.exit_code == 0, result.stderr
    assert "2 files in" in result.stderr and f"e.g. {first_class / 'broken.png'}" in result.stderr
    import json

    report = json.loads(out.read_text())
    assert report["skipped"] == 2 and report["skipped_files"] == sorted(str(first_class / n) for n in ("broken.png",
                                                                                                       "notes.txt"))


def test_classes_that_do_not_match(cli, tmp_path, tiny_data, random_onnx):
    data = tmp_path / "val"
    shutil.copytree(tiny_data / "val", data)
    victim = sorted(p for p in data.iterdir() if p.is_dir())[0]
    victim.rename(data / "zebra")
    result = cli("validate", random_onnx, "--data", data)
    _assert_clean_error(result, "zebra")


def test_output_in_missing_folder(cli, tmp_path, random_ckpt):
    result = cli("export", random_ckpt, "-o", tmp_path / "no" / "such" / "m.onnx")
    _assert_clean_error(result, "does not exist")
    assert _outputs(tmp_path) == []


@pytest.mark.parametrize("command", ["bench", "predict"])
def test_unknown_target(cli, random_onnx, tiny_data, command):
    if command == "bench":
        result = cli("bench", random_onnx, "--target", "tflite")
    else:
        image = next((tiny_data / "val").rglob("*.png"))
        result = cli("predict", image, "--model", random_onnx, "--target", "tflite")
    _assert_clean_error(result, "unknown target", "tflite")


def test_unknown_extension(cli, tmp_path):
    weird = tmp_path / "model.tflite"
    weird.write_bytes(b"x")
    _assert_clean_error(cli("bench", weird), ".tflite")


def test_bad_batch_list(cli, random_onnx):
    _assert_clean_error(cli("bench", random_onnx, "--batch", "1,x"), "--batch")


def test_gate_without_reference(cli, random_onnx, tiny_data):
    _assert_clean_error(cli("validate", random_onnx, "--data", tiny_data / "val", "--max-drop", "1"), "--reference")


def test_finetune_freeze_without_pretrained(cli, tiny_data, tmp_path):
    result = cli("finetune", "--data", tiny_data, "--weights", "none", "--freeze-backbone", "-o", tmp_path / "m.pt")
    _assert_clean_error(result, "--freeze-backbone")
    assert _outputs(tmp_path) == []
