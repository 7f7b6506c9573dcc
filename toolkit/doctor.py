"""What this machine can run: package versions, runtimes, CPU and the ISA features that decide INT8 speed."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from toolkit.settings import RemoteSettings

ISA_FLAGS = {  # feature -> /proc/cpuinfo flag
    "avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512_vnni": "avx512_vnni", "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16", "amx_int8": "amx_int8", "amx_bf16": "amx_bf16",
    "avx512bw": "avx512bw", "avx512vl": "avx512vl", "avx512dq": "avx512dq", "avx512_fp16": "avx512_fp16",
    "amx_tile": "amx_tile",
}
PACKAGES = ("rtk", "torch", "torchvision", "onnx", "onnxruntime", "openvino", "nncf", "torch-pruning",
            "numpy", "pillow", "typer", "pydantic")   # TensorRT and cuda-python: DoctorReport.tensorrt


class CpuInfo(BaseModel):
    model: str
    machine: str
    cores: int
    isa: dict[str, bool]

    @property
    def has_vnni(self) -> bool:
        return self.isa.get("avx512_vnni", False) or self.isa.get("avx_vnni", False) or self.isa.get("amx_int8", False)

    @property
    def int8_class(self) -> str:
        """The ISA tier that decides INT8 speed and accuracy, as oneDNN names it (`toolkit.isa`), or "other"."""
        from toolkit.isa import native_tier

        return native_tier(self) or "other"


class DoctorReport(BaseModel):
    hostname: str
    os: str
    python: str
    platform: str
    cpu: CpuInfo
    threads: int                      # CPUs this process may run on (its affinity mask)
    packages: dict[str, str | None]
    runtimes: dict[str, bool]
    gpu: str | None
    isa_tiers: dict[str, Any] = {}
    bf16: bool = False                # `rtk compile --precision bf16` runs here (AVX512_BF16 or AMX)
    bf16_reason: str | None = None    # why it is refused here when bf16 is false
    tensorrt: Any = None   # backends.tensorrt.gpu.TensorRTReport when TensorRT or cuda-python is installed
    device: Any = None     # remote.DeviceInfo, when it ran on an SSH device (`remote`)


def cpu_info() -> CpuInfo:
    flags: set[str] = set()
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    return CpuInfo(model=model, machine=platform.machine(), cores=os.cpu_count() or 1,
                   isa={name: flag in flags for name, flag in ISA_FLAGS.items()})


def _version(name: str) -> str | None:
    if name == "rtk":   # the code that runs, not an installed distribution's metadata (stale in an editable install)
        from toolkit import __version__

        return __version__
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpu() -> str | None:
    """The first NVIDIA GPU's name from nvidia-smi (the driver's own tool), without importing a framework."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return names[0].strip() if names else None


def os_name() -> str:
    """The distribution's own name (/etc/os-release PRETTY_NAME), else the kernel's."""
    release = Path("/etc/os-release")
    if release.is_file():
        for line in release.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME" and value.strip().strip('"'):
                return value.strip().strip('"')
    return f"{platform.system()} {platform.release()}".strip()


def doctor(settings: RemoteSettings | None = None, *, say: Callable[[str], None] | None = None) -> DoctorReport:
    """This machine's report, or with `settings.remote` the SSH device's (toolkit.remote.commands)."""
    from toolkit.backends import BACKENDS, available
    from toolkit.backends.openvino.precision import bf16_refusal
    from toolkit.isa import record as isa_record

    if settings is not None and settings.remote:
        from toolkit.remote.commands import doctor_on_device

        return doctor_on_device(settings, say=say)

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return DoctorReport(
        hostname=socket.gethostname(), os=os_name(), python=platform.python_version(), platform=platform.platform(),
        cpu=cpu_info(), threads=threads, packages={p: _version(p) for p in PACKAGES},
        runtimes={name: available(name) for name in BACKENDS}, gpu=_gpu(), isa_tiers=isa_record(),
        tensorrt=_tensorrt(), bf16=(refused := bf16_refusal()) is None, bf16_reason=refused,
    )


def _tensorrt():
    """TensorRT's and CUDA's versions and origins, when either TensorRT or cuda-python is installed."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("cuda") is None:
        return None
    from toolkit.backends.tensorrt.gpu import tensorrt_report

    return tensorrt_report()
