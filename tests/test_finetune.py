"""Training from scratch and transfer learning with a frozen backbone, on the tiny synthetic set."""

from __future__ import annotations

import json

import pytest
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


def test_interrupted_training_says_which_epoch_the_checkpoint_holds(tiny_data, tmp_path):
    """The best checkpoint is saved each time val top-1 improves, so an interrupt in epoch 2 of 3 leaves epoch 1's:
    complete, and the interrupt says what it is, read from the file (the CLI prints `kept` as a warning before
    "interrupted")."""
    from toolkit.finetune import finetune
    from toolkit.settings import FinetuneSettings

    def progress(stage, done=None, total=None, **facts):
        if stage.startswith("epoch 2/"):
            raise KeyboardInterrupt
    out = tmp_path / "m.pt"
    with pytest.raises(KeyboardInterrupt) as caught:
        finetune(FinetuneSettings(epochs=3, batch_size=16), data=tiny_data, output=out, input_size=32,
                 progress=progress)
    _, meta = read_checkpoint(out)
    assert caught.value.kept == (f"{out} holds epoch 1 of 3 (val top-1 {meta.extra['val_top1']:.2f}%), the best "
                                 "trained before the interrupt; run again for all 3 epochs and the training history")
    assert meta.extra["best_epoch"] == 0 and not out.with_suffix(".history.json").exists()


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


def test_augment_none_feeds_training_the_eval_view_and_full_does_not(tiny_data):
    """What the training loop is fed: with `none` every training image is exactly the eval transform of its file
    (no crop, no flip: orientation-sensitive data keeps its meaning); with `full` the random-resized crops and
    flips change it; with `flip` each image is the eval view or its mirror."""
    from toolkit.artifact import Preprocess
    from toolkit.data import eval_transform, load_image
    from toolkit.finetune import training_sets

    pre = Preprocess(resize=48, crop=40)
    view = eval_transform(pre)
    torch.manual_seed(0)
    sets = {a: training_sets(tiny_data, pre, augment=a)[0] for a in ("none", "flip", "full")}
    files = [path for path, _ in sets["none"].folder.samples]
    expected = [view(load_image(f)) for f in files]
    assert all(torch.equal(sets["none"].folder[i][0], x) for i, x in enumerate(expected))
    flipped = [sets["flip"].folder[i][0] for i in range(len(files))]
    assert all(torch.equal(f, x) or torch.equal(f, x.flip(-1)) for f, x in zip(flipped, expected))
    assert sum(not torch.equal(f, x) for f, x in zip(flipped, expected)) > 0
    assert sum(not torch.equal(sets["full"].folder[i][0], x) for i, x in enumerate(expected)) > len(files) // 2


def test_finetune_augment_flag_is_recorded_and_checked(cli, tiny_data, tmp_path):
    out = tmp_path / "none.pt"
    result = cli("finetune", "--data", tiny_data, "--weights", "none", "--epochs", "1", "--batch-size", "16",
                 "--input-size", "32", "--augment", "none", "-o", out, "--json", tmp_path / "ft.json")
    assert result.exit_code == 0, result.stderr
    _, meta = read_checkpoint(out)
    assert meta.provenance["history"][-1]["augment"] == "none"
    assert json.loads((tmp_path / "ft.json").read_text())["augment"] == "none"
    bad = cli("finetune", "--data", tiny_data, "--augment", "mixup", "-o", tmp_path / "bad.pt")
    assert bad.exit_code == 2 and "--augment 'mixup'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad.pt").exists()


@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 8])
def test_one_cycle_schedule_runs_at_any_step_count(total):
    """1 epoch of 4 batches made OneCycleLR divide by a zero-length warm-up (exit 3 in rtk finetune)."""
    import torch

    from toolkit.finetune import one_cycle

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = one_cycle(opt, 0.1, total)
    rates = []
    for _ in range(total):
        opt.step()
        rates.append(opt.param_groups[0]["lr"])
        schedule.step()
    assert all(0 < r <= 0.1 + 1e-9 for r in rates)
