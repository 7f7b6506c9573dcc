"""How much a benchmark run measures: the default (full) run, `--quick`, and the tiny `smoke` mode of the tests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True, kw_only=True)
class Settings:
    mode: str = "full"
    latency_size: int = 224            # input side of the random-weight 1000-class latency model
    latency_classes: int = 1000
    batches: tuple[int, ...] = (1, 8)  # the side-by-side table
    scaling_batches: tuple[int, ...] = (1, 2, 4, 8, 16)
    scaling_threads: tuple[int, ...] = (1, 2)
    repeats: int = 3                   # interleaved repeats of every timing; median quoted with min-max
    table_repeats: int = 9             # ... of the side-by-side table, whose medians decide the goals: this VM's
                                       # latency jumps between two levels about 2x apart within seconds (OpenVINO
                                       # INT8 most: 4.4 vs 8.6 ms windows), so many short windows, not a few long
    runs_b1: int = 10                  # timed calls per repeat at batch 1 (fewer at larger batches)
    warmup: int = 3
    calib_sizes: tuple[int, ...] = (100, 300, 1000)
    subset: int = 300                  # calibration images of every INT8 path of the trained (accuracy) model
    latency_subset: int = 32           # ... of the random-weight latency model: its INT8 graph runs at the same speed
                                       # whatever images set the scales; calibration cost is the sweep's (calib_sizes)
    hint_precisions: tuple[str, ...] = ("fp32", "int8")   # IRs whose THROUGHPUT vs LATENCY hints are measured
    hint_repeats: int = 4              # THROUGHPUT windows, each against the LATENCY windows either side
    hint_seconds: float = 1.5          # length of each window
    benchmark_app_seconds: int = 2     # per run of each tool: rtk, app, rtk, app, ..., rtk; short windows, many
                                       # of them: this VM changes speed within seconds
    benchmark_app_repeats: int = 8     # benchmark_app runs, each against the mean of the rtk runs either side
    benchmark_app_hint_seconds: int = 3  # per benchmark_app run of its own LATENCY b1 vs THROUGHPUT b8 comparison
    # the accuracy model: trained by rtk on the built-in synthetic set (the recipe's size and schedule)
    synth_classes: int = 10
    synth_per_class: int = 300
    synth_val_per_class: int = 150     # 1,500 val images (training keeps its best epoch by their top-1)
    test_per_class: int = 1000         # the held-out test split the accuracy table scores (not in training_key: it
                                       # decides no model). 10,000: McNemar's test of two INT8 paths 0.4 pt apart
                                       # (1.8% of images discordant) has about 87% power; on 1,500 it had about 17%
    synth_size: int = 64               # drawn at this side ...
    train_size: int = 32               # ... trained and evaluated at this one, as recipes/demo.yaml does
    train_epochs: int = 8
    train_batch: int = 64
    prune_ratio: float = 0.5
    prune_speedup: float | None = 7.0  # pruned + INT8 goal: the ratio rtk's latency-targeted search picks for it
    prune_search_steps: int = 5
    recovery_epochs: int = 2
    e2e_12mp: int = 8                  # 4000x3000 JPEGs timed per photo at batch 1 (naive vs rtk)
    e2e_folder: int = 1000             # 500x375 JPEGs: the folder of the images/s goal (rtk INT8 on OpenVINO) ...
    e2e_folder_others: int = 200       # ... and the folder every other end-to-end row runs
    e2e_repeats: int = 2               # naive and rtk alternate this many times
    e2e_batch: int | None = 8          # the goal's folder again with rtk predict --batch-size this (None: not run)
    e2e_accuracy_per_class: int = 20   # val images per class re-encoded at 12 MP for the fast-decode accuracy rule
    seed: int = 0
    rows: tuple[str, ...] | None = None   # None: every row; the smoke test times a few
    in_process: bool = False              # smoke: run stages in this process (peak memory is then the run's)
    shared_model: bool = False            # smoke: time the trained model instead of a separate latency model

    def wants(self, key: str) -> bool:
        return self.rows is None or key in self.rows

    def training_key(self) -> str:
        """Hash of everything that decides the trained model, so a cached one is reused only when it matches."""
        keys = ("synth_classes", "synth_per_class", "synth_val_per_class", "synth_size", "train_size",
                "train_epochs", "train_batch", "seed")
        blob = json.dumps({k: asdict(self)[k] for k in keys} | {"v": 2}, sort_keys=True)  # v2: synth tilt, not rotation
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def runs_for(self, batch: int) -> int:
        return max(3, self.runs_b1 // max(1, batch // 2))

    def to_dict(self) -> dict:
        return asdict(self)


FULL = Settings()
QUICK = replace(FULL, mode="quick", repeats=2, table_repeats=2, runs_b1=6, warmup=1, scaling_batches=(1, 8), scaling_threads=(1, 2),
                calib_sizes=(), subset=40, latency_subset=8, hint_precisions=("int8",), hint_repeats=2, hint_seconds=1.0,
                benchmark_app_seconds=0,
                benchmark_app_repeats=2, e2e_12mp=3, e2e_folder=60, e2e_folder_others=30, e2e_repeats=1,
                e2e_accuracy_per_class=5, prune_search_steps=3, synth_classes=4, synth_per_class=40,
                synth_val_per_class=25, test_per_class=25, synth_size=32, train_epochs=2, train_batch=32, recovery_epochs=1,
                in_process=True)
SMOKE = replace(QUICK, mode="smoke", e2e_12mp=0, prune_speedup=None, latency_size=64, latency_classes=10, repeats=2, table_repeats=2, runs_b1=3, warmup=1,
                scaling_batches=(1, 2), scaling_threads=(1,), calib_sizes=(), subset=16, latency_subset=16, benchmark_app_seconds=0,
                rows=("torch_fp32", "ort_fp32", "rtk_int8_ort"), in_process=True, shared_model=True,
                synth_classes=3, synth_per_class=8, synth_val_per_class=6, test_per_class=7, synth_size=32, train_epochs=1,
                train_batch=8, recovery_epochs=1)
PRESETS = {"full": FULL, "quick": QUICK, "smoke": SMOKE}
