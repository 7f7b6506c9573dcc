"""Tests for the procedurally drawn data set in ``toolkit.synth``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolkit.synth import CLASS_NAMES, SynthSummary, draw, synth

SMALL = dict(classes=3, per_class=2, val_per_class=1, size=32)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    synth(tmp_path / "a", seed=7, **SMALL)
    synth(tmp_path / "b", seed=7, **SMALL)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 3 * (2 + 1) + 1
    assert a == b


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    synth(tmp_path / "a", seed=1, **SMALL)
    synth(tmp_path / "b", seed=2, **SMALL)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.endswith(".png"))


def test_layout_and_classes_txt(tmp_path: Path) -> None:
    from PIL import Image

    calls: list[tuple[int, int]] = []
    summary = synth(tmp_path, progress=lambda stage, done, total: calls.append((done, total)), **SMALL)
    names = sorted(CLASS_NAMES[:3])  # label order as ImageFolder assigns it
    assert summary == SynthSummary(tmp_path, names, train=6, val=3, size=32, seed=0)
    assert (tmp_path / "classes.txt").read_text().splitlines() == names
    for split, count in (("train", 2), ("val", 1)):
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == sorted(names)
        for name in names:
            files = sorted((tmp_path / split / name).iterdir())
            assert [p.name for p in files] == [f"{i:05d}.png" for i in range(count)]
            with Image.open(files[0]) as img:
                assert img.mode == "RGB" and img.size == (32, 32)
    assert calls[-1] == (9, 9) and len(calls) == 9


def test_no_temporary_folders_left(tmp_path: Path) -> None:
    synth(tmp_path, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.txt", "train", "val"]


def test_interrupted_run_leaves_nothing(tmp_path: Path) -> None:
    def stop(stage: str, done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synth(tmp_path, progress=stop, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_existing_split_is_refused(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        synth(tmp_path, **SMALL)


@pytest.mark.parametrize("classes", [1, len(CLASS_NAMES) + 1])
def test_bad_class_count_raises(tmp_path: Path, classes: int) -> None:
    with pytest.raises(ValueError, match=f"between 2 and {len(CLASS_NAMES)}"):
        synth(tmp_path, classes=classes, per_class=1, val_per_class=1)
    assert not (tmp_path / "train").exists()


def test_draw_every_class() -> None:
    assert len(CLASS_NAMES) >= 10 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    for label in range(len(CLASS_NAMES)):
        img = draw(label, np.random.default_rng(label), 48)
        assert img.mode == "RGB" and img.size == (48, 48)
        assert np.asarray(img).std() > 5


def test_cli_makes_missing_parents_and_refuses_a_file(cli, tmp_path: Path) -> None:
    """`rtk data synth data/shapes` on a fresh clone (no data/) works; a file in the way is one line, exit 2."""
    root = tmp_path / "fresh" / "data" / "shapes"
    result = cli("data", "synth", root, "--classes", "2", "--per-class", "1", "--val-per-class", "1", "--size", "32")
    assert result.exit_code == 0, result.stderr
    assert (root / "train").is_dir() and (root / "val").is_dir()
    (tmp_path / "afile").write_text("x")
    for target in (tmp_path / "afile", tmp_path / "afile" / "shapes"):
        result = cli("data", "synth", target, "--classes", "2", "--size", "32")
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr


def test_run_folder_parents_are_made(tmp_path: Path) -> None:
    from toolkit.pipeline.run import prepare_output

    prepare_output(tmp_path / "runs" / "deep" / "r1", resume=False, force=False)
    assert (tmp_path / "runs" / "deep" / "r1").is_dir()
