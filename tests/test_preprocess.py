"""The torch-free eval transform and folder scan are torchvision's, to the last bit that matters.

toolkit.preprocess and toolkit.images replace torchvision on every path that runs an artifact, so a device with
the runtime-only install sees the inputs the build machine saw. These tests hold them to the torchvision
transform rtk trains and exports with (toolkit.data.eval_transform) and to torchvision's ImageFolder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolkit.artifact import Preprocess, default_class_names
from toolkit.images import load_image, readable_image, scan_folder
from toolkit.preprocess import batches, eval_array

SHAPES = {"square": (80, 80), "portrait": (57, 150), "landscape": (301, 97), "tiny": (5, 3), "thin": (200, 9)}
MODES = ("L", "RGB", "RGBA", "P", "P-transparent", "CMYK", "I;16")
PREPROCESS = {
    "imagenet": Preprocess(),                              # resize 256, crop 224: small images are upscaled
    "64px": Preprocess().at_size(64),                      # resize 73, crop 64: offsets round half to even
    "odd": Preprocess(resize=75, crop=64),
    # resize < crop is refused in metadata and flags; built unvalidated, it keeps torchvision's zero padding tested
    "padded": Preprocess.model_construct(resize=48, crop=64),
}


def _image(mode: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    w, h = size
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if mode == "L":
        return rgb.convert("L")
    if mode == "RGBA":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)))
        return rgba
    if mode.startswith("P"):
        pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        if mode == "P-transparent":
            pal.info["transparency"] = 3
        return pal
    if mode == "CMYK":
        return rgb.convert("CMYK")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    return rgb


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """One file per (shape, mode), written in a format that stores the mode (CMYK as TIFF, the rest as PNG)."""
    root = tmp_path_factory.mktemp("modes")
    rng = np.random.default_rng(0)
    files = {}
    for shape, size in SHAPES.items():
        for mode in MODES:
            img = _image(mode, size, rng)
            path = root / f"{shape}-{mode.replace(';', '')}.{'tif' if mode == 'CMYK' else 'png'}"
            img.save(path, **({"transparency": 3} if mode == "P-transparent" else {}))
            with Image.open(path) as back:
                assert back.mode == mode.split("-")[0], f"{path.name} was stored as {back.mode}"
            files[shape, mode] = path
    return files


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("preset", list(PREPROCESS))
def test_eval_transform_equals_torchvision(image_files, preset, interpolation):
    from toolkit.data import eval_transform

    pre = PREPROCESS[preset].model_copy(update={"interpolation": interpolation})
    reference = eval_transform(pre)
    worst = {}
    for (shape, mode), path in image_files.items():
        img = load_image(path)
        ours, theirs = eval_array(img, pre), reference(img).numpy()
        assert ours.shape == theirs.shape == (3, pre.crop, pre.crop) and ours.dtype == np.float32
        worst[shape, mode] = float(np.abs(ours - theirs).max())
    bad = {k: v for k, v in worst.items() if v > 1e-6}
    assert not bad, f"max |numpy - torchvision| above 1e-6 for {bad}"


def test_padding_case_is_really_padded(image_files):
    """The 'padded' preset must exercise torchvision's zero padding: its border is -mean/std, not image content."""
    pre = PREPROCESS["padded"]
    x = eval_array(load_image(image_files["square", "RGB"]), pre)
    border = -np.asarray(pre.mean, np.float32) / np.asarray(pre.std, np.float32)
    np.testing.assert_array_equal(x[:, :, 0], np.broadcast_to(border[:, None], (3, pre.crop)))
    assert np.abs(x[:, pre.crop // 2, pre.crop // 2] - border).max() > 0


def _tree(root: Path) -> Path:
    """An ImageFolder with what trips scanners: nested and hidden folders, non-images, a broken image, upper-case
    extensions, an empty class, a symlinked class folder and a loose file at the top."""
    rng = np.random.default_rng(1)

    def png(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path, format="PNG")

    for name in ("b.png", "a.PNG", "sub/z.png", "sub/deeper/c.png", ".hidden.png", "10.png", "9.png"):
        png(root / "dog" / name)
    png(root / "cat" / "x.jpeg.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    png(root / ".ipynb_checkpoints" / "k.png")
    (root / "empty").mkdir()
    png(root.parent / "elsewhere" / "cow" / "m.png")            # a class folder linked from outside the tree
    os.symlink(root.parent / "elsewhere" / "cow", root / "cow")
    png(root / "loose.png")
    return root


def test_scan_equals_torchvision_image_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    root = _tree(tmp_path / "data")
    ours = scan_folder(root)
    theirs = ImageFolder(str(root), is_valid_file=readable_image, allow_empty=True)
    assert ours.classes == theirs.classes
    assert ours.samples == theirs.samples
    assert ours.targets == theirs.targets
    assert ours.skipped == sorted([str(root / "cat" / "broken.png"), str(root / "cat" / "notes.txt")])
    assert ours.class_counts()["empty"] == 0 and ours.class_counts()["dog"] == 7


def test_batches_equal_the_torchvision_pipeline(tiny_data):
    """Validation's batches (decode ahead in a thread) are torchvision's transform over the same files in order."""
    from toolkit.data import image_folder

    pre = Preprocess().at_size(64)
    torch_side = image_folder(tiny_data / "val", pre)
    ours = scan_folder(tiny_data / "val")
    assert ours.samples == torch_side.samples
    xs, ys = zip(*batches(ours, pre, 5))
    assert [len(y) for y in ys] == [5] * (len(ours) // 5) + ([len(ours) % 5] if len(ours) % 5 else [])
    expected = np.stack([torch_side.folder[i][0].numpy() for i in range(len(ours))])
    assert np.abs(np.concatenate(xs) - expected).max() <= 1e-6
    assert np.concatenate(ys).tolist() == torch_side.targets


def test_imagenet_class_names_are_torchvision_s():
    """The shipped ImageNet names (so a device without torchvision labels the same) are torchvision's list."""
    from torchvision.models import ResNet50_Weights

    assert default_class_names(1000) == list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
    assert default_class_names(3) == ["class_0", "class_1", "class_2"]


def test_the_scan_skips_a_jpeg_cut_in_its_data_only(tmp_path):
    """A JPEG's header says nothing of its data: cut anywhere after its scan starts it still opens, and used to stop
    `rtk validate` at decode time. The scan now asks for an end-of-image marker after the scan data starts, and
    neither a thumbnail's own marker in the header (before the cut) nor a trailer after the end (a motion photo's
    video) fools it; every cut that Pillow cannot decode is skipped and every whole file kept."""
    import io

    from toolkit.images import jpeg_data_ends

    rng = np.random.default_rng(0)
    pixels = Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    thumb = io.BytesIO()
    pixels.resize((32, 24)).save(thumb, "JPEG")
    for kind in ("baseline", "progressive", "thumbnail"):
        out = io.BytesIO()
        pixels.save(out, "JPEG", progressive=kind == "progressive", quality=90)
        data = out.getvalue()
        if kind == "thumbnail":     # an APP1 segment holding a whole JPEG, end marker included, before the scan
            app1 = b"Exif\x00\x00" + thumb.getvalue()
            data = data[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + data[2:]
        scan = data.index(b"\xff\xda")
        for cut in [*range(scan + 4, len(data) - 1, max(1, (len(data) - scan) // 25)), len(data) - 1, len(data)]:
            path = tmp_path / f"{kind}_{cut}.jpg"
            path.write_bytes(data[:cut])
            try:
                Image.open(path).load()
                decodes = True
            except OSError:
                decodes = False
            assert readable_image(str(path)) == decodes == (cut == len(data)), (kind, cut, len(data))
        path = tmp_path / f"{kind}_trailer.jpg"
        path.write_bytes(data + rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes().replace(b"\xff\xd9", b""))
        assert jpeg_data_ends(str(path)) and readable_image(str(path))
