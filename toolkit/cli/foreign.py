"""The options that describe a classifier exported elsewhere (no rtk metadata): `--labels` and its preprocessing.

validate, predict, quantize and compile take them; they apply to the artifacts without rtk metadata that the
command opens (`toolkit.artifact.Foreign`), and what rtk writes from such a model records them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional, Sequence

import typer

from toolkit.artifact import CAFFE_MEAN_BGR, Foreign
from toolkit.errors import RtkError
from toolkit.io import read_small_text

_PANEL = "Models exported elsewhere (no rtk metadata)"
LabelsOpt = Annotated[Optional[Path], typer.Option("--labels", rich_help_panel=_PANEL, help="Class names, one per "
                                                   "line in the model's output order.")]
ResizeOpt = Annotated[Optional[int], typer.Option("--resize", rich_help_panel=_PANEL, help="Shorter side before "
                                                  "the crop (default: 256/224 of the input side).")]
CropOpt = Annotated[Optional[int], typer.Option("--crop", rich_help_panel=_PANEL, help="Center crop = input side "
                                                "(default: the graph's).")]
MeanOpt = Annotated[Optional[str], typer.Option("--mean", rich_help_panel=_PANEL, help="Per-channel mean, in the "
                                                "model's channel order and pixel range (default ImageNet's).")]
StdOpt = Annotated[Optional[str], typer.Option("--std", rich_help_panel=_PANEL, help="Per-channel std (default "
                                               "ImageNet's).")]
InterpOpt = Annotated[Optional[str], typer.Option("--interpolation", rich_help_panel=_PANEL,
                                                  help="bilinear (default), bicubic or nearest.")]
LayoutOpt = Annotated[Optional[str], typer.Option("--layout", rich_help_panel=_PANEL, help="NCHW or NHWC "
                                                  "(default: from the input shape; tf2onnx keeps Keras' NHWC).")]
ChannelsOpt = Annotated[Optional[str], typer.Option("--channels", rich_help_panel=_PANEL, help="RGB (default) or BGR.")]
CaffeOpt = Annotated[bool, typer.Option("--caffe", rich_help_panel=_PANEL, help="Keras' 'caffe' preprocessing "
                                        "(ResNet50, VGG): BGR, ImageNet mean subtracted from 0-255 pixels, no std.")]


def _three(text: str | None, flag: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise RtkError(f"{flag} {text!r}: give three numbers separated by commas, e.g. 0.485,0.456,0.406")
    return values  # type: ignore[return-value]


def read_labels(path: Path) -> list[str]:
    text = read_small_text(path, f"--labels {path}", "give a text file, one class name per line",
                           encoding="utf-8-sig")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise RtkError(f"--labels {path} names no classes; write one class name per line")
    return names


def foreign_from(models: Sequence[Path], *, labels: Path | None = None, resize: int | None = None,
                 crop: int | None = None, mean: str | None = None, std: str | None = None,
                 interpolation: str | None = None, layout: str | None = None, channels: str | None = None,
                 caffe: bool = False) -> Foreign | None:
    """The Foreign description the options give, or None when none was given. Refused when none of `models` is
    one rtk did not write: an rtk artifact carries its own class names and preprocessing, which rtk uses, so the
    options would be silently ignored."""
    pre: dict = {}
    clash = [flag for flag, value in (("--channels", channels), ("--mean", mean), ("--std", std)) if value]
    if caffe and clash:
        raise RtkError(f"--caffe sets channels BGR, the Caffe mean and std 1; give --caffe or {'/'.join(clash)}, "
                       "not both")
    if caffe:
        pre.update(channels="BGR", pixels="0-255", mean=CAFFE_MEAN_BGR, std=(1.0, 1.0, 1.0))
    given = {"resize": resize, "crop": crop, "mean": _three(mean, "--mean"), "std": _three(std, "--std"),
             "interpolation": interpolation, "channels": channels and channels.upper(), "layout": layout and layout.upper()}
    pre.update({k: v for k, v in given.items() if v is not None})
    if labels is None and not pre:
        return None
    described = Foreign(labels=read_labels(labels) if labels is not None else None, preprocess=pre)
    _applies_to_one(models)
    return described


def _applies_to_one(models: Sequence[Path]) -> None:
    from toolkit.backends import read_meta

    sources = [read_meta(path).provenance.get("source") for path in models]
    if not any(source in ("foreign-onnx", "foreign-ir") for source in sources):
        raise RtkError(f"{models[0] if len(models) == 1 else 'these models'} carr{'ies' if len(models) == 1 else 'y'} "
                       "rtk metadata (class names and preprocessing), which rtk uses; --labels and the preprocessing "
                       "options describe a model exported elsewhere: leave them out")
