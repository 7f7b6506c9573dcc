"""The two ways a command fails: the user's input (exit 2) or a gate (exit 1); and which extra brings a package."""

from __future__ import annotations

import importlib.util

# The pip extra that installs each optional top-level module. `pip install rtk` alone runs artifacts on ONNX
# Runtime; the export extra holds everything that makes artifacts (named as Ultralytics names its extra for
# producing deployment formats: what a user types on the machine that builds models, not on the device).
# onnx and onnxconverter_common (what `rtk compile` reads and the FP16 ONNX is made with) also come with the
# tensorrt-cu12/-cu13 extras, so a GPU machine can compile without the export extra.
EXTRAS = {
    "torch": "export", "torchvision": "export", "onnx": "export", "onnxscript": "export", "nncf": "export",
    "torch_pruning": "export", "matplotlib": "export", "onnxconverter_common": "export",
    "openvino": "openvino",
    "tensorrt": "tensorrt-cu12/-cu13", "tensorrt_bindings": "tensorrt-cu12/-cu13", "cuda": "tensorrt-cu12/-cu13",
}
# TensorRT comes in one extra per CUDA major (the one the NVIDIA driver supports), or from JetPack on a Jetson.
TENSORRT_INSTALL = ("pip install 'rtk[tensorrt-cu13]' (NVIDIA driver 580+) or 'rtk[tensorrt-cu12]' (driver 525+); "
                    "on a Jetson use JetPack's TensorRT")


# SIGINT/SIGTERM received by this process (the CLI's handlers append them): a library may wrap the interrupt in an
# error of its own (OpenVINO's convert_model reports one as "Check 'false' ...", PyTorch's DataLoader as "worker
# killed by signal"), which is neither bad input nor a failed candidate.
SIGNALLED: list[int] = []


class RtkError(Exception):
    """Bad input or an impossible request; the message is one line that says what to do. Exit 2."""

    exit_code = 2


class GateFailed(Exception):
    """A check ran and its result is outside the bound the user set. Exit 1."""

    exit_code = 1


def internal_error(exc: BaseException) -> str:
    """An unexpected exception as one line: "internal error (Type: its first line)"."""
    text = str(exc).strip()
    first = text.splitlines()[0][:300] if text else ""
    return f"internal error ({type(exc).__name__}{': ' + first if first else ''})"


def install_command(module: str) -> str:
    """The pip command that brings `module` (a top-level import name) with rtk."""
    extra = EXTRAS.get(module.split(".")[0])
    if extra == EXTRAS["tensorrt"]:
        return TENSORRT_INSTALL
    return f"pip install 'rtk[{extra}]'" if extra else "pip install rtk"


def missing_extra(exc: ImportError, *, what: str = "this command") -> RtkError | None:
    """A one-line RtkError for an import of an optional package that is not installed, else None (a real bug)."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in EXTRAS or importlib.util.find_spec(name) is not None:
        return None
    return RtkError(f"{what} needs {name}, which this install of rtk leaves out; install the "
                    f"{EXTRAS[name]} extra: {install_command(name)}")
