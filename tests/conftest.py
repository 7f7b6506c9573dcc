"""Shared fixtures: a tiny built-in data set and random-weight ResNet50s at 64x64, on real runtimes.

Everything is built once per session in a temporary folder; set RTK_TEST_CACHE=DIR to keep it between runs.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.cli import app

# A test run started in the background of a non-interactive shell inherits SIGINT ignored, and so would every rtk
# process these tests start and then interrupt: give this process Python's own handler again, so the processes it
# starts get the default disposition and the Ctrl-C tests mean the same however the suite was launched.
signal.signal(signal.SIGINT, signal.default_int_handler)

SIZE = 64
CLASSES = 4


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    root = os.environ.get("RTK_TEST_CACHE")
    if root:
        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("rtk-cache")


@pytest.fixture(scope="session")
def tiny_data(cache_dir) -> Path:
    """A 4-class synthetic ImageFolder (train/ 12 per class, val/ 8 per class) at 64x64."""
    from toolkit.synth import synth

    root = cache_dir / "shapes"
    if not (root / "val").is_dir():
        synth(root, classes=CLASSES, per_class=12, val_per_class=8, size=SIZE, seed=0)
    return root


@pytest.fixture(scope="session")
def class_names(tiny_data) -> list[str]:
    return sorted(p.name for p in (tiny_data / "val").iterdir() if p.is_dir())


@pytest.fixture(scope="session")
def random_ckpt(cache_dir, class_names) -> Path:
    """A seeded random-weight ResNet50 checkpoint with the tiny set's classes, 64x64 input."""
    from toolkit.models import load_model, save_checkpoint

    path = cache_dir / "random.pt"
    if not path.is_file():
        model, meta = load_model("random", class_names=class_names, num_classes=len(class_names), input_size=SIZE)
        save_checkpoint(path, model, meta)
    return path


@pytest.fixture(scope="session")
def random_onnx(cache_dir, random_ckpt, tiny_data) -> Path:
    """`random_ckpt` exported to ONNX (opset 17, dynamic batch) with parity checked."""
    from toolkit.export import export_onnx
    from toolkit.models import load_model

    path = cache_dir / "random.onnx"
    if not path.is_file():
        model, meta = load_model(random_ckpt)
        export_onnx(model, meta, path, data=tiny_data / "val", parent=random_ckpt)
    return path


@pytest.fixture()
def cli():
    """Invoke the real CLI in-process: cli(*args) -> result with exit_code, stdout, stderr."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def fit_head_on(model, data_dir: Path, preprocess) -> None:
    """Set the fc layer by ridge regression on the penultimate features of the images in `data_dir`.

    A random backbone with a head fitted this way classifies those images (near) perfectly in a few
    seconds, which gives the gate tests a reference whose accuracy a damaged model measurably loses.
    """
    import torch

    from toolkit.data import image_folder

    data = image_folder(data_dir, preprocess)
    x = torch.stack([data.folder[i][0] for i in range(len(data))])
    y = torch.tensor(data.folder.targets)
    body = torch.nn.Sequential(*list(model.children())[:-1]).eval()
    with torch.no_grad():
        feats = body(x).flatten(1)
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    z = (feats - mu) / sd
    target = torch.nn.functional.one_hot(y, len(data.classes)).float() * 2 - 1
    w = torch.linalg.solve(z.T @ z + 1e-3 * torch.eye(z.shape[1]), z.T @ target)
    with torch.no_grad():
        model.fc.weight.copy_((w / sd[:, None]).T)
        model.fc.bias.copy_(-(mu / sd) @ w)


def condition_like_trained(model, data_dir: Path, preprocess) -> None:
    """Give a random ResNet50 a trained network's INT8 behaviour: each bottleneck's last batch-norm scale 0.1 (the
    residual branches stay small beside the identity path, as `zero_init_residual` starts them and training keeps
    them), then every batch-norm's running statistics from the images in `data_dir`.

    Without this a random ResNet50 is not like any trained one under INT8 (calibration/README.md, #23). With
    torchvision's init and BN statistics (mean 0, var 1) the activations grow block by block and the pooled features
    of all images nearly coincide: a head fitted on them rests on differences smaller than INT8's error, and its
    top-1 fell to chance (28%) on ONNX Runtime and OpenVINO alike, on one CPU and not on another. With data statistics
    alone, INT8's error grows through the blocks to 43% of the pooled features. Conditioned, INT8 keeps the logits at
    cosine 0.9997 of FP32 on both runtimes, and 0.999 down to 0.9988 on a tier without VNNI when it was quantized on a
    CPU with it (first-layer saturation, tests/test_isa.py).
    """
    import torch

    from toolkit.data import image_folder
    from toolkit.prune import adapt_batchnorm

    with torch.no_grad():
        for block in model.modules():
            if hasattr(block, "bn3"):
                block.bn3.weight.fill_(0.1)
    data = image_folder(data_dir, preprocess)
    adapt_batchnorm(model, data, batches=1, batch_size=len(data))


@pytest.fixture(scope="session")
def fragile_ckpt(cache_dir, random_ckpt, tiny_data) -> Path:
    """`random_ckpt` with its head fitted on tiny val and nothing else: 100% top-1 there, but its logits sit on
    differences as small as INT8's error, so plain INT8 loses top-1 on it (a model accuracy control must repair)."""
    from toolkit.models import load_model, save_checkpoint

    path = cache_dir / "fragile.pt"
    if not path.is_file():
        model, meta = load_model(random_ckpt)
        fit_head_on(model, tiny_data / "val", meta.preprocess)
        save_checkpoint(path, model, meta)
    return path


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (2 CPUs, like this machine), started by rtk's own code and
    stopped at the end; code under test that finds it running uses it instead of starting its own."""
    pytest.importorskip("ray", reason="needs the ray extra: pip install 'rtk[ray]'")
    from toolkit.distributed import cluster

    with cluster(cpus=2) as ray:
        yield ray


@pytest.fixture(scope="session")
def accurate_ckpt(cache_dir, random_ckpt, tiny_data) -> Path:
    """`random_ckpt` conditioned like a trained network on tiny train (`condition_like_trained`), its head fitted on
    tiny val: 100% top-1 there, and INT8 keeps it (a reference for gate and INT8 accuracy tests)."""
    from toolkit.models import load_model, save_checkpoint

    path = cache_dir / "accurate-conditioned.pt"
    if not path.is_file():
        model, meta = load_model(random_ckpt)
        condition_like_trained(model, tiny_data / "train", meta.preprocess)
        fit_head_on(model, tiny_data / "val", meta.preprocess)
        save_checkpoint(path, model, meta)
    return path


@pytest.fixture(scope="session")
def random_ir(cache_dir, random_onnx) -> Path:
    """`random_onnx` compiled to an FP32 OpenVINO IR (model.xml + model.bin)."""
    from toolkit.compile import compile_model

    xml = cache_dir / "random-ir" / "model.xml"
    if not xml.is_file():
        compile_model(random_onnx, target="openvino", output=xml.parent)
    return xml


@pytest.fixture(scope="session")
def embedded_ir(cache_dir, random_onnx) -> Path:
    """`random_onnx` compiled to an FP32 IR with its preprocessing embedded (`--embed-preprocess`: u8 pixels in)."""
    from toolkit.compile import compile_model
    from toolkit.settings import CompileSettings

    xml = cache_dir / "embedded-ir" / "model.xml"
    if not xml.is_file():
        compile_model(random_onnx, target="openvino", output=xml.parent, settings=CompileSettings(embed_preprocess=True))
    return xml


@pytest.fixture(scope="session")
def random_qdq(cache_dir, random_onnx, tiny_data) -> Path:
    """`random_onnx` quantized to INT8 QDQ ONNX for ONNX Runtime (NNCF, 16 calibration images)."""
    from toolkit.quantize import quantize_int8
    from toolkit.settings import QuantizeSettings

    path = cache_dir / "random.int8.onnx"
    if not path.is_file():
        quantize_int8(random_onnx, output=path, calib=tiny_data / "train", target="onnxruntime",
                      settings=QuantizeSettings(subset=16, allow_small=True, bench_runs=0))
    return path


@pytest.fixture(scope="session")
def accurate_int8(cache_dir, accurate_ckpt, tiny_data) -> tuple[Path, Path, Path]:
    """`accurate_ckpt` as FP32 ONNX, rtk's INT8 QDQ ONNX of it for OpenVINO (32 calibration images) and the INT8
    IR compiled from that: (fp32, qdq, ir), built once and shared by the native and the ISA-capped checks."""
    from toolkit.compile import compile_model
    from toolkit.export import export_onnx
    from toolkit.models import load_model
    from toolkit.quantize import quantize_int8
    from toolkit.settings import QuantizeSettings

    folder = cache_dir / "accurate-int8"
    fp32, qdq, ir = folder / "fp32.onnx", folder / "int8.onnx", folder / "ov" / "model.xml"
    if not (ir.is_file() and ir.with_suffix(".bin").is_file()):
        folder.mkdir(exist_ok=True)
        model, meta = load_model(accurate_ckpt)
        export_onnx(model, meta, fp32, data=tiny_data / "val", parent=accurate_ckpt)
        quantize_int8(fp32, output=qdq, calib=tiny_data / "train", target="openvino",
                      settings=QuantizeSettings(subset=32, bench_runs=0))
        compile_model(qdq, target="openvino", output=ir.parent)
    return fp32, qdq, ir


@pytest.fixture(scope="session")
def device_rtk() -> Path:
    """The rtk of a torch-free venv built from this checkout (core + openvino extra), as a device installs it;
    built once in .venv-device/ and reinstalled only when the sources change (tests/rig.py)."""
    from rig import device_venv

    return device_venv()


@pytest.fixture(scope="session")
def ssh_device(tmp_path_factory, device_rtk):
    """A real SSH server on 127.0.0.1 (OpenSSH's sshd, else AsyncSSH) acting as the device: `.alias` (device-a),
    `.config` (the ssh -F file, strict host key checking, the test's own key pair) and `.rtk` (the torch-free
    venv's rtk, on the PATH of its sessions). Other aliases in the config are faults: device-stranger,
    device-wrongkey, device-down."""
    import importlib.util

    from rig import SSHD, start_sshd

    if not Path(SSHD).is_file() and importlib.util.find_spec("asyncssh") is None:
        pytest.skip("no SSH server here: apt-get install --no-install-recommends openssh-server (.ci/run does), "
                    "or pip install asyncssh")
    rig = start_sshd(tmp_path_factory.mktemp("sshd"), rtk=device_rtk)
    yield rig
    rig.stop()
