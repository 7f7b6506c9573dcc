"""Training from scratch and transfer learning with a frozen backbone, on the tiny synthetic set."""

from __future__ import annotations

import json

import torch

from toolkit.models import read_checkpoint


def test_scratch_training_writes_best_checkpoint_history_and_plot(cli, tiny_data, tmp_path):
    out = tmp_path / "m.pt"
    result = cli("finetune", "--data", tiny_data, "--weights", "none", "--epochs", "2", "--batch-size", "16",
                 "--input-size", "32", "-o", out, "--json", tmp_path / "ft.json")
    assert result.exit_code == 0, result.stderr
    model, meta = read_checkpoint(out)
    assert meta.class_names == sorted(p.name for p in (tiny_data / "train").iterdir())
    assert meta.preprocess.crop == 32 and meta.provenance["history"][-1]["step"] == "finetune"
    data = json.loads((tmp_path / "ft.json").read_text())
    history = json.loads(out.with_suffix(".history.json").read_text())
    assert len(history) == 2 and out.with_suffix(".history.png").stat().st_size > 1000
    best = max(history, key=lambda h: h["val_acc"])
    assert data["best_val_acc"] == best["val_acc"] == meta.extra["val_top1"]


def test_frozen_backbone_trains_only_the_head(cli, random_ckpt, tiny_data, tmp_path):
    before, _ = read_checkpoint(random_ckpt)
    out = tmp_path / "head.pt"
    result = cli("finetune", "--data", tiny_data, "--weights", random_ckpt, "--freeze-backbone", "--epochs", "1",
                 "--batch-size", "16", "-o", out)
    assert result.exit_code == 0, result.stderr
    after, _ = read_checkpoint(out)
    sd_before, sd_after = before.state_dict(), after.state_dict()
    changed = {k for k in sd_before if not torch.equal(sd_before[k], sd_after[k])}
    assert changed == {"fc.weight", "fc.bias"}, sorted(changed)[:5]
