"""Model sources and the checkpoint format: weights_only loading, state dicts, refusals."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision

from toolkit.errors import RtkError
from toolkit.models import load_model, read_checkpoint, save_checkpoint


def test_checkpoint_round_trip_is_weights_only(random_ckpt):
    raw = torch.load(random_ckpt, weights_only=True)
    assert raw["format"] == "rtk.checkpoint"
    model, meta = read_checkpoint(random_ckpt)
    assert meta.preprocess.crop == 64 and meta.num_classes == 4
    assert len(meta.class_names) == 4
    again, _ = load_model("random", class_names=meta.class_names, num_classes=4, input_size=64)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_random_is_seeded():
    a, _ = load_model("random", num_classes=3, seed=1)
    b, _ = load_model("random", num_classes=3, seed=1)
    c, _ = load_model("random", num_classes=3, seed=2)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_plain_state_dict_loads_with_class_count(tmp_path):
    net = torchvision.models.resnet50(weights=None, num_classes=7)
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    model, meta = load_model(path)
    assert meta.num_classes == 7 and meta.preprocess.crop == 224
    assert torch.equal(model.fc.weight, net.fc.weight)
    with pytest.raises(RtkError, match="--num-classes is 5"):
        load_model(path, num_classes=5)


def test_other_architecture_is_refused(tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(RtkError, match="do not fit resnet50"):
        load_model(path)


class Evil:
    """Unpickling this creates the file named by `marker`: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickled_code_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    payload = {"state_dict": {"fc.weight": torch.zeros(2, 2)}, "hook": Evil(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(RtkError, match="pickled Python objects"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_corrupt_checkpoints_are_refused(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(RtkError, match="bad.pt"):
        load_model(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(RtkError, match="not found"):
        load_model(tmp_path / "nope.pt")


def test_save_is_atomic_on_failure(tmp_path, random_ckpt):
    model, meta = read_checkpoint(random_ckpt)
    out = tmp_path / "out.pt"

    class Boom(torch.nn.Module):
        def state_dict(self, *a, **k):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(out, Boom(), meta)
    assert list(tmp_path.iterdir()) == []


def test_pretrained_offline_names_file_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub-home"))
    import urllib.request

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(RtkError) as err:
        load_model("imagenet-v2")
    message = str(err.value)
    assert "resnet50-11ad3fa6.pth" in message and str(tmp_path / "hub-home") in message
