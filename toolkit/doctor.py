"""What this machine can run: package versions, runtimes, CPU and the ISA features that decide INT8 speed."""

from __future__ import annotations

import functools
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
    model: str                        # /proc/cpuinfo's "model name" (a VM may show only "AMD EPYC")
    machine: str
    cores: int
    isa: dict[str, bool]
    vendor: str | None = None         # GenuineIntel, AuthenticAMD; ARM: the implementer code (0x41)
    family: int | None = None         # x86 "cpu family"
    model_number: int | None = None   # x86 "model"; ARM: the part number (0xd42)
    stepping: int | None = None
    core: str | None = None           # the microarchitecture those name (core_name), None when rtk does not know it

    @property
    def name(self) -> str:
        """What a speed claim names: the model and, where /proc/cpuinfo tells it, the core and its numbers
        ("AMD EPYC (Zen 4, family 25 model 17)")."""
        if self.family is not None and self.model_number is not None:
            ids = f"family {self.family} model {self.model_number}"
        elif self.model_number is not None:
            ids = f"part {self.model_number:#x}"
        else:
            return self.model if self.core is None else f"{self.model} ({self.core})"
        return f"{self.model} ({self.core + ', ' if self.core else ''}{ids})"

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


# (vendor, family) -> [(first model, last model, core)]: the cores rtk is measured on and the usual servers and
# edge boards; the numbers are AMD's and Intel's (family 25 models 10h-1Fh are Zen 4 Genoa, 1Ah is Zen 5).
CORES = {
    ("AuthenticAMD", 23): [(0x00, 0x2F, "Zen/Zen+"), (0x30, 0xFF, "Zen 2")],
    ("AuthenticAMD", 25): [(0x00, 0x0F, "Zen 3"), (0x10, 0x1F, "Zen 4"), (0x20, 0x5F, "Zen 3"), (0x60, 0x7F, "Zen 4"),
                           (0xA0, 0xAF, "Zen 4")],
    ("AuthenticAMD", 26): [(0x00, 0x4F, "Zen 5"), (0x60, 0x7F, "Zen 5")],
    ("GenuineIntel", 6): [(0x55, 0x55, "Skylake-SP/Cascade Lake"), (0x6A, 0x6A, "Ice Lake-SP"),
                          (0x6C, 0x6C, "Ice Lake-D"), (0x8F, 0x8F, "Sapphire Rapids"), (0xCF, 0xCF, "Emerald Rapids"),
                          (0xAD, 0xAE, "Granite Rapids"), (0xAF, 0xAF, "Sierra Forest"), (0x97, 0x9A, "Alder Lake"),
                          (0xB7, 0xB7, "Raptor Lake"), (0xBA, 0xBA, "Raptor Lake"), (0xBF, 0xBF, "Raptor Lake")],
}
ARM_CORES = {  # (implementer, part) -> core: Raspberry Pi 4/5, Jetson Nano/TX2, Xavier, Orin, Graviton 2/3
    (0x41, 0xD08): "Cortex-A72", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD07): "Cortex-A57",
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD05): "Cortex-A55", (0x41, 0xD42): "Cortex-A78AE",
    (0x41, 0xD0C): "Neoverse N1", (0x41, 0xD40): "Neoverse V1", (0x41, 0xD4F): "Neoverse V2", (0x4E, 0x004): "Carmel",
}


def core_name(vendor: str | None, family: int | None, model: int | None, stepping: int | None = None) -> str | None:
    """The microarchitecture /proc/cpuinfo's numbers name, or None when rtk's table does not have it."""
    if vendor is None or model is None:
        return None
    if family is None:   # ARM: the vendor is the implementer code
        return ARM_CORES.get((int(vendor, 16) if vendor.startswith("0x") else -1, model))
    if (vendor, family, model) == ("GenuineIntel", 6, 0x55) and stepping is not None:
        return "Skylake-SP" if stepping <= 4 else "Cascade Lake" if stepping <= 7 else "Cooper Lake"
    return next((core for first, last, core in CORES.get((vendor, family), []) if first <= model <= last), None)


def _number(text: str) -> int | None:
    """/proc/cpuinfo's numbers: decimal on x86 ("17"), hexadecimal on ARM ("0xd42")."""
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """This CPU from `cpuinfo`: x86 (model name, flags, vendor_id, cpu family, model, stepping) or ARM (Features,
    CPU implementer, CPU part); the first processor's lines."""
    flags: set[str] = set()
    fields: dict[str, str] = {}
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key in ("flags", "Features") and not flags:
                flags = set(value.split())
            elif key and key not in fields:
                fields[key] = value
    vendor = fields.get("vendor_id") or fields.get("CPU implementer")
    family = _number(fields["cpu family"]) if "cpu family" in fields else None
    number = _number(fields.get("model", "") if family is not None else fields.get("CPU part", ""))
    stepping = _number(fields.get("stepping", ""))
    model = fields.get("model name") or fields.get("Model") or platform.processor() or "unknown"   # Model: a Pi's board
    return CpuInfo(model=model, machine=platform.machine(),
                   cores=os.cpu_count() or 1, isa={name: flag in flags for name, flag in ISA_FLAGS.items()},
                   vendor=vendor, family=family, model_number=number, stepping=stepping,
                   core=core_name(vendor, family, number, stepping))


@functools.cache
def this_cpu() -> CpuInfo:
    """This machine's CPU, read once per process (every bench names it)."""
    return cpu_info()


def cpu_name(cpu: dict) -> str:
    """A recorded CPU (a results file's, a device's doctor) as `rtk doctor` names it; what an older rtk recorded
    without the core: its model name."""
    try:
        return CpuInfo.model_validate(cpu).name
    except ValueError:
        return str(cpu.get("model", "unknown"))


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
