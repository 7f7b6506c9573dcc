"""Every stage's settings, defined once: the library takes these models, the CLI builds them from its flags,
a recipe builds them from YAML, and `--dump-recipe` writes them back out.

A field's default, range and description live here and nowhere else; `rtk recipe schema` lists every field,
and `rtk <command> --help` the fields that have a flag (a few are recipe-only, e.g. prune's max_ratio and
distill_alpha, finetune's weight_decay and label_smoothing). Inputs and outputs (files and folders) are not
settings: they are the arguments of the library calls, and in a recipe they come from its `data:` and `model:`
sections.

`Target` is the one vocabulary of runtimes (the keys of `toolkit.backends.BACKENDS`), `Precision` the one
vocabulary of numeric formats; which runtime can do what (compile, INT8, a latency search) is a capability
in the backends registry, checked here by the fields that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from toolkit.yaml_text import flow

Target = Literal["torch", "onnxruntime", "openvino", "tensorrt"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]
Augment = Literal["none", "flip", "full"]
IsaTier = Literal["AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_AMX"]
TARGETS: tuple[str, ...] = get_args(Target)
PRECISIONS: tuple[str, ...] = get_args(Precision)
AUGMENT: tuple[str, ...] = get_args(Augment)
ISA_TIERS: tuple[str, ...] = get_args(IsaTier)   # oneDNN's names, lowest first; what each needs is toolkit.isa.TIERS


def _tier(v: object) -> object:
    if isinstance(v, str) and v.strip().upper() not in ISA_TIERS:
        raise ValueError(f"unknown tier; choose one of {', '.join(ISA_TIERS)}")
    return v.strip().upper() if isinstance(v, str) else v


Tier = Annotated[IsaTier, BeforeValidator(_tier)]   # a tier as a user types it: any case, one of ISA_TIERS

# torch-pruning caps each layer at 0.95 of its channels (toolkit.prune); above about 0.9 that cap and round_to make a
# higher ratio prune less, not more (0.97 removed 1.97x of the MACs, 0.999 none, 0.9 7.61x; hostile pass on #18)
MAX_PRUNE_RATIO = 0.9

AUGMENT_HELP = ("Training augmentation: none (the eval transform: resize + center crop), flip (that plus random horizontal "
                "flips) or full (random-resized crops + flips). Use none or flip for orientation- or position-sensitive "
                "images (digits, text, gauges), none when recovering a pruned model in a few epochs.")

FAST_DECODE_HELP = ("Decode JPEGs larger than the model needs the fast way (libjpeg DCT scaling to the smallest scale "
                    "still at least the resize target, then the usual resize) or in full (--exact-decode). Default: "
                    "fast where the artifact records that the fast decode passed validation (`rtk run` with "
                    "validate.fast_decode writes it under deploy/), else exact. `rtk validate --fast-decode` is the "
                    "check: it scores both decodes on the same images and fails unless the fast one keeps top-1 "
                    "within 0.1 pt and agreement >= 99.5%.")
DECODE_WORKERS_HELP = ("Threads decoding photos ahead of inference (default 2); with OpenVINO's parallel requests "
                       "(the throughput hint) each also infers its batch, and the default is one more than requests.")
DECODE_DEPTH_HELP = ("Most images decoded ahead and not yet inferred at once (the memory bound; default: 8, or "
                     "enough batches to keep every inference request busy where that is more).")


# The bounds of the numbers at the boundary, one place for the CLI and the recipe: beyond them a value is a typo or
# would take the machine's memory (a batch of 10^6 images) or time (10^12 timed runs), so it is refused up front.
SEED_MAX = 2**32 - 1            # numpy's and torch's generators both take 0 .. 2^32-1 as a portable seed
MAX_BATCH = 256                 # images per inference or training batch
MAX_THREADS, MAX_DEPTH = 1024, 4096   # inference threads; images decoded and not yet inferred (photos)
MAX_CLASSES = 100_000
MIN_CLASSES = 2          # a classifier chooses between at least two classes (CLI and recipe alike)
MIN_INPUT, MAX_INPUT = 16, 4096     # input side in pixels a model is built at (CLI and recipe alike)
MAX_RUNS = 1_000_000


class Settings(BaseModel):
    """A stage's settings: unknown keys are errors, so a misspelt setting never silently falls back; NaN and
    infinity are refused in every number, so no gate or tolerance can be a value no comparison passes or fails."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _capable(target: str | None, capability: str, what: str) -> str | None:
    from toolkit.backends import targets_with

    allowed = targets_with(capability)
    if target is not None and target not in allowed:
        raise ValueError(f"{target} cannot {what}; choose one of {', '.join(allowed)}")
    return target


class SynthSettings(Settings):
    """The built-in synthetic data set (`rtk data synth`, a recipe's `data.synth`)."""

    classes: int = Field(10, ge=2, le=12, description="Number of classes.")
    per_class: int = Field(300, ge=1, le=100_000, description="Training images per class.")
    val_per_class: int = Field(50, ge=1, le=100_000, description="Validation images per class.")
    size: int = Field(64, ge=16, le=512, description="Image side in pixels.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed; the same seed gives the same files.")


class FinetuneSettings(Settings):
    """`rtk finetune`: AdamW with a one-cycle schedule, label smoothing, best checkpoint by val top-1."""

    epochs: int = Field(3, ge=1, le=10_000, description="Passes over the training set.")
    batch_size: int = Field(32, ge=2, le=MAX_BATCH, description="Training batch size.")
    lr: float | None = Field(None, gt=0, le=10, description="Peak learning rate (default: 3e-3 for a frozen backbone, "
                                                     "3e-4 from pretrained weights, 1e-3 from scratch).")
    freeze_backbone: bool = Field(False, description="Train only the new classifier head.")
    augment: Augment = Field("full", description=AUGMENT_HELP + " Default full, the ImageNet recipe.")
    weight_decay: float = Field(0.05, ge=0, le=10, description="AdamW weight decay.")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Label smoothing of the cross-entropy.")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="PyTorch threads (default: PyTorch's "
                                                                        "choice).")


class ExportSettings(Settings):
    """`rtk export`: PyTorch -> ONNX, checked and proven equal to PyTorch on images."""

    opset: int = Field(17, ge=11, le=21, description="ONNX opset.")
    dynamic_batch: bool = Field(True, description="Batch axis dynamic (or fixed at `batch`).")
    batch: int = Field(1, ge=1, le=MAX_BATCH, description="The batch size of a static-batch export.")
    atol: float = Field(1e-3, gt=0, le=10, description="Largest |ONNX - PyTorch| logit difference accepted.")


class PruneSettings(Settings):
    """`rtk prune`: structured channels (real speed) or unstructured sparsity, then recovery."""

    mode: Literal["structured", "unstructured"] = Field("structured", description="Remove whole channels "
                                                        "(structured) or zero single weights (unstructured).")
    ratio: float | None = Field(None, gt=0, le=MAX_PRUNE_RATIO,
                                description="Structured: fraction of channels removed (default 0.5; at most 0.9).")
    sparsity: float | None = Field(None, gt=0, lt=1, description="Unstructured: fraction of conv/linear weights "
                                                                 "zeroed (default 0.5).")
    importance: Literal["l1", "l2", "bn", "taylor"] = Field("l2", description="Channel importance: l1, l2 "
                                                            "(magnitude), bn (batch-norm scale), taylor (needs data).")
    global_pruning: bool | None = Field(None, description="Rank across all layers (true) or prune each layer "
                                        "alike (default: uniform structured, global unstructured).")
    round_to: int = Field(8, ge=1, le=256, description="Keep channel counts a multiple of this (8 suits CPU SIMD and tensor cores).")
    target_latency_ms: float | None = Field(None, gt=0, le=3_600_000, description="Search the smallest ratio whose batch-1 "
                                                                    "latency on `target` is at most this.")
    target: Target | None = Field(None, description="Runtime the latency search measures on.")
    max_ratio: float = Field(MAX_PRUNE_RATIO, gt=0, le=MAX_PRUNE_RATIO, description="Largest ratio the latency search tries.")
    search_steps: int = Field(5, ge=1, le=50, description="Latency measurements of the search (bisection steps).")
    keep_best: bool = Field(False, description="Write the best model even if the latency target is missed.")
    epochs: int = Field(2, ge=0, le=10_000, description="Recovery epochs when data is given (0: batch-norm adaptation only).")
    lr: float = Field(5e-4, gt=0, le=10, description="Peak recovery learning rate (AdamW, one-cycle).")
    batch_size: int = Field(32, ge=2, le=MAX_BATCH, description="Recovery and calibration batch size.")
    distill: bool = Field(False, description="Distil from the unpruned model during recovery: KL on softened logits + CE.")
    temperature: float = Field(4.0, gt=0, le=1000, description="Distillation temperature.")
    distill_alpha: float = Field(0.7, ge=0, le=1, description="Weight of the distillation term against CE.")
    augment: Augment = Field("none", description=AUGMENT_HELP + " Default none: best measured for a 2-epoch "
                                                                "distilled recovery.")
    bn_batches: int = Field(20, ge=1, le=100_000, description="Batches of batch-norm adaptation after pruning.")
    measure: list[Target] | None = Field(None, description="Runtimes timed before/after (default: onnxruntime; "
                                                           "unstructured adds openvino).")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="PyTorch and runtime threads (default: "
                                                                        "their choice).")

    @field_validator("target", "measure")
    @classmethod
    def _timed_on(cls, v: str | list[str] | None) -> str | list[str] | None:
        for t in v if isinstance(v, list) else [v]:
            _capable(t, "search", "time a pruning candidate")
        return v


class QuantizeSettings(Settings):
    """`rtk quantize --int8`: post-training INT8 in the form the target runs fastest (the target is the call's)."""

    form: Literal["onnx", "ir"] | None = Field(None, description="The INT8 artifact: onnx (QDQ) or, for openvino, "
                                               "ir (NNCF's OpenVINO backend); default: by the output's extension "
                                               "(.xml: ir), in a recipe onnx.")
    subset: int | None = Field(None, ge=1, le=1_000_000, description="Calibration images (default 300, or all of calib_list).")
    calib_list: Path | None = Field(None, description="File of calibration image paths relative to the "
                                                      "calibration folder, one per line.")
    allow_small: bool = Field(False, description="Accept fewer calibration images than asked for.")
    max_drop: float | None = Field(None, ge=0, le=100, description="Accuracy control: largest top-1 drop in points on the "
                                                           "validation images.")
    bench_runs: int = Field(30, ge=0, le=100_000, description="Timed batch-1 runs per model for the speed-up (0 skips).")
    bias_correction: Literal["fast", "full"] = Field("fast", description="NNCF bias correction: fast (its default) "
                                                     "or full (INT8 IR only; ~0.2-0.3 pt better, calibration ~2x longer).")
    isa: Tier | None = Field(None, description="oneDNN ISA tier of the CPU that will run the INT8 model (default: this "
                             "CPU's, `rtk doctor`): picks NNCF's overflow fix, full 8-bit weights with VNNI or AMX, "
                             "7-bit on AVX2 or AVX512_CORE (int16 pair sums can saturate). Any tier: nothing runs on "
                             "it here; `rtk validate --isa` checks one this CPU has.")


class CompileSettings(Settings):
    """`rtk compile`: ONNX -> a runtime's own artifact (OpenVINO IR, TensorRT engine; the target is the call's)."""

    precision: Literal[("auto", *PRECISIONS)] = Field("auto", description="auto (what the ONNX is: INT8 with Q/DQ, "
                                                                       "FP16, else FP32), fp32, fp16, bf16 (OpenVINO "
                                                                       "on a CPU with AVX512_BF16 or AMX), int8.")
    batch: int | None = Field(None, ge=1, le=MAX_BATCH, description="Fix the batch size (default: keep the ONNX's).")
    min_batch: int | None = Field(None, ge=1, le=MAX_BATCH, description="TensorRT profile: smallest batch (default 1).")
    opt_batch: int | None = Field(None, ge=1, le=MAX_BATCH, description="TensorRT profile: batch to tune for (default min).")
    max_batch: int | None = Field(None, ge=1, le=MAX_BATCH, description="TensorRT profile: largest batch (default 8).")
    workspace_mb: int | None = Field(None, ge=1, le=1 << 20, description="TensorRT workspace memory limit in MiB.")
    timing_cache: Path | None = Field(None, description="TensorRT timing cache file (read, then updated).")
    version_compatible: bool = Field(False, description="TensorRT: an engine later TensorRT versions can run too "
                                                        "(may be slower).")
    check_only: bool = Field(False, description="Only report what TensorRT would refuse (no TensorRT needed).")
    calibration_samples: int = Field(300, ge=1, le=1_000_000, description="Calibration images used for NNCF INT8 at compile "
                                                            "time (OpenVINO, an ONNX without Q/DQ).")
    embed_preprocess: bool = Field(False, description="OpenVINO: the IR does the per-pixel preprocessing itself (takes "
                                   "the resized, cropped 8-bit RGB image, N x H x W x 3).")

    @model_validator(mode="after")
    def _batch_or_range(self) -> "CompileSettings":
        if self.batch is not None and (self.min_batch, self.opt_batch, self.max_batch) != (None, None, None):
            raise ValueError("give batch (a fixed batch) or min_batch/opt_batch/max_batch (a range), not both")
        return self


class RemoteSettings(Settings):
    """Where a command that runs an artifact runs: here, or on an SSH device by the rtk installed there
    (toolkit.remote: inputs are copied into the device's cache by content, once)."""

    remote: str | None = Field(None, min_length=1, description="Run it on this SSH device (user@host, an "
                               "~/.ssh/config alias, ssh://user@host:port) with the rtk installed there.")
    remote_rtk: str | None = Field(None, min_length=1, description="The device's rtk (default: rtk on its PATH), "
                                   "e.g. ~/venv/bin/rtk; ~/ and relative paths start at the login folder.")

    @field_validator("remote")
    @classmethod
    def _a_destination(cls, value: str | None) -> str | None:
        """A bad destination is refused with the settings, before any input is read."""
        from toolkit.remote.channel import RemoteError, ssh_destination

        if value is not None:
            try:
                ssh_destination(value)
            except RemoteError as exc:
                raise ValueError(str(exc).removeprefix(f"--remote {value!r}: ")) from None
        return value

    @model_validator(mode="after")
    def _needs_remote(self) -> "RemoteSettings":
        given = [f for f in REMOTE_FIELDS[1:] if getattr(self, f, None) is not None]
        if given and self.remote is None:
            raise ValueError(f"{given[0]} is a path on a device: name the device with remote")
        return self


REMOTE_FIELDS = ("remote", "remote_rtk", "remote_data")   # where a command runs, never passed to the device's rtk


class DeviceSpec(Settings):
    """One device of a recipe's `devices:` block (a bare string is its SSH destination)."""

    dest: str = Field(..., min_length=1, description="SSH destination: user@host, an ~/.ssh/config alias or "
                                                     "ssh://user@host:port.")
    rtk: str | None = Field(None, min_length=1, description="The device's rtk (default: rtk on its PATH).")
    data: str | None = Field(None, min_length=1, description="Validation images already on the device (default: "
                                                             "the recipe's, copied there by content).")

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, v: object) -> object:
        return {"dest": v} if isinstance(v, str) else v


class ValidateSettings(RemoteSettings):
    """`rtk validate`: top-1/top-5 on a labeled folder, drop and agreement against a reference."""

    batch_size: int = Field(32, ge=1, le=MAX_BATCH, description="Inference batch size.")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="Inference threads (default: the runtime's "
                                                                        "choice; 1 per shard when sharded).")
    shards: int | None = Field(None, ge=1, le=MAX_THREADS, description="Split the images into this many shards "
                               "validated in parallel on Ray workers and merged exactly (needs the ray extra); "
                               "default: one process.")
    isa: Tier | None = Field(None, description="Validate under a lower oneDNN ISA tier, e.g. AVX2 or AVX512_CORE (`rtk "
                             "doctor` lists this CPU's): a fresh process with ONEDNN_MAX_CPU_ISA caps the oneDNN kernels "
                             "of OpenVINO (and PyTorch); ONNX Runtime's MLAS ignores the cap and runs on the native "
                             "tier. A tier above this CPU is refused; the JSON records each artifact's tier.")
    fast_decode: bool | None = Field(None, description="Validate with the fast JPEG decode, as predict deploys it, "
                                     "against the exact one on the same images; its verdict says whether to deploy "
                                     "with it (in a recipe: where it passes, the run writes the deployed artifact "
                                     "again under deploy/ with the fast decode as its default). " + FAST_DECODE_HELP)
    remote_data: str | None = Field(None, min_length=1, description="With remote: the labeled folder already on "
                                    "the device (instead of copying --data there).")


class PredictSettings(RemoteSettings):
    """`rtk predict`: photos to labels through the overlapped decode -> preprocess -> infer pipeline."""

    top: int = Field(5, ge=1, description="How many classes to show per image.")
    fast_decode: bool | None = Field(None, description=FAST_DECODE_HELP)
    batch_size: int = Field(1, ge=1, le=MAX_BATCH, description="Images per inference call.")
    workers: int | None = Field(None, ge=1, le=64, description=DECODE_WORKERS_HELP)
    depth: int | None = Field(None, ge=1, le=MAX_DEPTH, description=DECODE_DEPTH_HELP)
    hint: Literal["auto", "latency", "throughput"] = Field("auto", description="OpenVINO performance hint; auto: "
        "throughput (parallel requests: most images/s, slower per photo) for more than one batch of photos, else latency.")

    @model_validator(mode="after")
    def _depth_holds_a_batch(self) -> "PredictSettings":
        if self.depth is not None and self.depth < self.batch_size:
            raise ValueError(f"--depth {self.depth} holds less than --batch-size {self.batch_size}; give --depth {self.batch_size} or more")
        return self


class BenchSettings(RemoteSettings):
    """`rtk bench`: latency percentiles and throughput per batch size, on one runtime."""

    batches: list[int] = Field(default_factory=lambda: [1], min_length=1, max_length=32, description="Batch sizes.")
    warmup: int = Field(10, ge=0, le=MAX_RUNS, description="Untimed calls before timing.")
    runs: int | None = Field(None, ge=1, le=MAX_RUNS, description="Timed calls per batch size (default 50).")
    seconds: float | None = Field(None, gt=0, le=86_400, description="Time each batch size for this long instead of runs.")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="Inference threads (default: the runtime's choice).")
    hint: Literal["latency", "throughput"] = Field("latency", description="OpenVINO performance hint.")
    fast_decode: bool | None = Field(None, description="With --images: " + FAST_DECODE_HELP)
    workers: int | None = Field(None, ge=1, le=64, description="With --images: " + DECODE_WORKERS_HELP)
    depth: int | None = Field(None, ge=1, le=MAX_DEPTH, description="With --images: " + DECODE_DEPTH_HELP)

    @field_validator("batches")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(not 1 <= b <= MAX_BATCH for b in v):
            raise ValueError(f"batch sizes must be integers from 1 to {MAX_BATCH}, e.g. 1,8")
        return v

    @model_validator(mode="after")
    def _runs_or_seconds(self) -> "BenchSettings":
        if self.runs is not None and self.seconds is not None:
            raise ValueError("give runs or seconds, not both")
        return self


class Gates(Settings):
    """CI gates; a failed gate makes `rtk validate` and `rtk run` exit 1 and is named in the report."""

    max_drop_pt: float | None = Field(None, ge=0, le=100, description="Largest top-1 drop vs FP32, in points.")
    max_drop_rel_pct: float | None = Field(None, ge=0, le=100, description="Largest top-1 drop vs FP32, in % of FP32.")
    min_agreement_pct: float | None = Field(None, ge=0, le=100, description="Smallest top-1 agreement with FP32.")
    max_p50_ms: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict, description="Largest p50 "
                                         "latency in ms per target (e.g. openvino: 10), or per device and target "
                                         "(nuc/openvino: 10).")
    max_p99_ms: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict, description="Largest p99 "
                                         "latency in ms per target (e.g. openvino: 20), or per device and target "
                                         "(nuc/openvino: 20).")
    min_speedup: float | None = Field(None, gt=0, le=1e6, description="Smallest p50 speed-up of the deployed artifact vs "
                                                              "FP32 ONNX Runtime.")

    @field_validator("max_p50_ms", "max_p99_ms")
    @classmethod
    def _latency_keys(cls, v: dict[str, float]) -> dict[str, float]:
        for key in v:
            device, _, target = key.rpartition("/")
            if target not in TARGETS or (device == "" and "/" in key):
                raise ValueError(f"{key!r}: name a target ({', '.join(TARGETS)}) or device/target, e.g. nuc/openvino")
        return v


MAXIMIZE = ("top1", "top5", "agreement", "speedup")
MINIMIZE = ("p50_ms", "p99_ms", "drop_pt", "size_mb")


class SweepSettings(Settings):
    """`rtk sweep`: every combination of `values` is a candidate, an ordinary `rtk run` of the recipe with those
    values; the winner is the best by the objective among the candidates that pass the recipe's gates."""

    values: dict[str, list] = Field(..., description="Value lists by recipe field: dotted names "
                                    "(prune.ratio, prune.epochs, quantize.subset, bench.threads, ...), precision "
                                    "(fp32, fp16, int8) and targets (a runtime, or a list of them).")
    maximize: Literal[MAXIMIZE] | None = Field(None, description="The deployed artifact's metric to maximize (top1).")
    minimize: Literal[MINIMIZE] | None = Field(None, description="Metric of the deployed artifact to minimize.")
    retries: int = Field(1, ge=0, description="Re-runs of a stage whose Ray worker died (killed, out of memory) "
                                              "before its candidate is marked crashed.")
    train_cpus: int = Field(2, ge=1, description="CPUs a training stage (finetune, prune) declares to Ray; other "
                                                 "stages declare 1 and bench a whole node.")

    @field_validator("values")
    @classmethod
    def _lists(cls, v: dict[str, list]) -> dict[str, list]:
        empty = [k for k, values in v.items() if not values]
        if empty or not v:
            raise ValueError(f"{empty[0]} has no values; give at least one" if empty else
                             "no field to sweep; give one with its values, e.g. prune.ratio: [0.3, 0.5]")
        for key, values in v.items():
            seen: set[str] = set()
            for shown in map(flow, values):
                if shown in seen:
                    raise ValueError(f"{key} lists {shown} twice; give each value once")
                seen.add(shown)
        return v

    @model_validator(mode="after")
    def _one_objective(self) -> "SweepSettings":
        if self.maximize and self.minimize:
            raise ValueError("give maximize or minimize, not both")
        return self

    def swept_targets(self) -> set[str]:
        """Every runtime the `targets` (`compile.targets`) value lists name; a value is a runtime or a list."""
        return {t for k in ("targets", "compile.targets") for v in self.values.get(k, [])
                for t in (v if isinstance(v, list) else [v]) if isinstance(t, str)}   # others: refused per candidate

    @property
    def objective(self) -> tuple[str, str]:
        """("maximize" | "minimize", metric)."""
        return ("minimize", self.minimize) if self.minimize else ("maximize", self.maximize or "top1")
