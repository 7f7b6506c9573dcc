"""Sharded validation on a local Ray instance: the merge is exact, and every way it can be refused is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.settings import ValidateSettings
from toolkit.validate import validate
from toolkit.validate_shards import shard_ranges

ROOT = Path(__file__).resolve().parents[1]


def test_shard_ranges_are_whole_batches():
    assert shard_ranges(32, 2, 8) == [(0, 16), (16, 32)]
    assert shard_ranges(30, 3, 8) == [(0, 16), (16, 24), (24, 30)]    # 4 batches over 3 shards: 2, 1, 1
    assert shard_ranges(5, 4, 8) == [(0, 5)]                          # never an empty shard
    assert shard_ranges(33, 2, 8) == [(0, 24), (24, 33)]


def test_sharded_validation_equals_one_process(ray_local, random_onnx, accurate_ckpt, tiny_data, tmp_path):
    """Three shards (32 images in batches of 6: 2 + 2 + 2 batches, the last one short) against one pass with the
    same threads: every number identical, the per-class table included."""
    from toolkit.export import export_onnx
    from toolkit.models import load_model

    model, meta = load_model(accurate_ckpt)
    accurate = tmp_path / "accurate.onnx"
    export_onnx(model, meta, accurate)
    args = dict(reference=accurate_ckpt, targets=["onnxruntime", "openvino"], measure_latency=False)
    one = validate([accurate, random_onnx], tiny_data / "val", settings=ValidateSettings(batch_size=6, threads=1),
                   **args)
    sharded = validate([accurate, random_onnx], tiny_data / "val",
                       settings=ValidateSettings(batch_size=6, threads=1, shards=3), **args)
    assert one.images == sharded.images == 32
    assert one.model_dump() == sharded.model_dump()
    assert 0 < one.artifacts[1].agreement < 100 and one.artifacts[0].top1 > one.artifacts[1].top1  # not trivial
