"""The floor: MACs of a model and this CPU's peak MAC rate, so each row is also a fraction of the hardware.

peak = cores x clock x MACs per cycle per core. The clock is the maximum: cpufreq's cpuinfo_max_freq where the
kernel exposes it, else measured (`measured_clock_ghz`: a chain of dependent integer multiplies, 3 cycles each on
Intel since Nehalem and AMD since Zen, timed in thread CPU time, best of many bursts), never /proc/cpuinfo's
"cpu MHz", which is the nominal clock of a VM whose cores boost above it (ONNX Runtime FP32 ran at 113-125% of
a peak taken from it on Zen 5).
Assumed MACs/cycle/core (stated in every table):
FP32: AVX-512 with 2 full-width FMA units = 2 x 16 lanes = 32 (AMD Zen 4, family 25, splits 512-bit FMAs over
its two 256-bit units: 16); AVX2+FMA = 2 x 8 = 16.
INT8: VNNI (vpdpbusd) = 4x the FP32 rate per instruction; AMX (TMUL) = 1024 per core (16x16x64 tile op / 16 cycles).
The assumption is checked against a measured ceiling: the rate of a large f32 GEMM on all cores (`gemm_fp32_gmacs`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

MAX_GHZ = 6.5     # no x86 core clocks higher: a measured clock above it is a measuring error


class CpuPeak(BaseModel):
    cores: int
    clock_ghz: float
    clock_source: str
    isa: str
    fp32_macs_per_cycle: int
    int8_macs_per_cycle: int
    int8_amx_macs_per_cycle: int | None
    fp32_gmacs: float
    int8_gmacs: float
    int8_amx_gmacs: float | None
    bf16_gmacs: float | None = None        # AVX512_BF16 (vdpbf16ps: 2 MACs per f32 lane) = 2x FP32; AMX-BF16 512/cycle
    assumption: str
    gemm_fp32_gmacs: float | None = None   # measured: the best rate of a 2048x2048 f32 GEMM on all cores


def measured_clock_ghz(*, iterations: int = 2_000_000, repeats: int = 40) -> float | None:
    """The core clock this process reaches, in GHz (x86-64 only, else None): a loop of 8 dependent `imul rax, rax`
    (3 cycles each on Intel cores since Nehalem and AMD's since Zen) timed in thread CPU time, so time spent
    descheduled on a shared machine does not count; the best of `repeats` bursts. A chain of `add rax, 1` is no
    clock: Golden Cove and later Intel cores fold an add of a small constant at rename, and it read 7.9-12.4 GHz on
    an Emerald Rapids Xeon whose imul chain reads 3.06 GHz (2026-12-05)."""
    import ctypes
    import mmap
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    body = bytes.fromhex("480fafc0") * 8                               # imul rax, rax (x8)
    code = (bytes.fromhex("4889f9" "31c0") + body + bytes.fromhex("48ffc9")   # mov rcx, rdi; xor eax, eax; ... dec rcx
            + bytes([0x75, 256 - (len(body) + 5)]) + b"\xc3")              # jnz back to the multiplies; ret
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, AttributeError):
        return None
    page.write(code)
    loop = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    if loop(1000) != 0:                                                # 0 * 0: the code ran as written
        return None
    best = 0.0
    for _ in range(repeats):
        t = time.thread_time()
        loop(iterations)
        spent = time.thread_time() - t
        if spent > 0:
            best = max(best, 8 * 3 * iterations / spent / 1e9)
    return best or None


def clock_ghz() -> tuple[float, str]:
    """The maximum clock and where it came from: cpufreq's max when the kernel exposes it, else measured, else
    (neither available) /proc/cpuinfo's nominal MHz, said to be a floor."""
    sysfs = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if sysfs.is_file():
        return int(sysfs.read_text().strip()) / 1e6, str(sysfs)
    measured = measured_clock_ghz()
    if measured and measured < MAX_GHZ:     # above: not a clock (an emulator; a core that runs the chain faster)
        return measured, "measured max (dependent-multiply chain, thread CPU time, best of 40 bursts)"
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) / 1e3, "/proc/cpuinfo cpu MHz (nominal: boosting cores can exceed it)"
    return 2.0, "unknown (assumed 2.0 GHz)"


def gemm_fp32_gmacs(*, n: int = 2048, repeats: int = 5, threads: int | None = None) -> float:
    """The f32 MAC rate this CPU reaches right now on the easiest dense work there is: an n x n x n GEMM (torch's
    BLAS) on `threads` threads, best of `repeats` after a warm-up. Convolutions run as GEMM kernels do the same
    MACs and can't beat it (OpenVINO runs all 53 of ResNet50's as oneDNN brgconv f32 kernels here, no Winograd)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        torch.mm(a, b, out=c)
        best = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b, out=c)
            best = max(best, n ** 3 / (time.perf_counter() - t) / 1e9)
        return best
    finally:
        torch.set_num_threads(before)


def cpu_peak(*, measure: bool = False) -> CpuPeak:
    from toolkit.doctor import cpu_info

    info = cpu_info()
    ghz, source = clock_ghz()
    cores = info.cores
    if info.isa.get("avx512f") and info.core == "Zen 4":
        isa, fp32 = "AVX-512 on AMD Zen 4 (512-bit FMAs split over two 256-bit units)", 16
    elif info.isa.get("avx512f"):
        isa, fp32 = "AVX-512 (2 full-width FMA units assumed)", 32
    elif info.isa.get("avx2") and info.isa.get("fma"):
        isa, fp32 = "AVX2+FMA (2 FMA units)", 16
    else:
        isa, fp32 = "no AVX2 (4 lanes assumed)", 4
    int8 = fp32 * 4 if info.has_vnni else fp32 * 2
    amx = 1024 if info.isa.get("amx_int8") else None
    bf16 = 512 if info.isa.get("amx_bf16") else (fp32 * 2 if info.isa.get("avx512_bf16") else None)
    text = (f"{cores} cores x {ghz:.2f} GHz ({source}); FP32 {isa}: {fp32} MAC/cycle/core; "
            f"INT8 {'VNNI' if info.has_vnni else 'no VNNI'}: {int8} MAC/cycle/core"
            + (f"; AMX-INT8: {amx} MAC/cycle/core, the INT8 peak used (oneDNN and ONNX Runtime's MLAS have AMX "
                 "INT8 kernels, and OpenVINO's INT8 runs above the VNNI rate here)" if amx else "")
            + (f"; BF16: {bf16} MAC/cycle/core" if bf16 else "")
            + "; os.cpu_count() may count hyper-threads, so these peaks are upper bounds")
    return CpuPeak(cores=cores, clock_ghz=ghz, clock_source=source, isa=isa, fp32_macs_per_cycle=fp32,
                   int8_macs_per_cycle=int8, int8_amx_macs_per_cycle=amx, fp32_gmacs=cores * ghz * fp32,
                   int8_gmacs=cores * ghz * int8, int8_amx_gmacs=cores * ghz * amx if amx else None, assumption=text,
                   bf16_gmacs=cores * ghz * bf16 if bf16 else None,
                   gemm_fp32_gmacs=gemm_fp32_gmacs(threads=cores) if measure else None)


def count_macs(ckpt: str | Path) -> tuple[float, int]:
    """(MACs, parameters) of an rtk checkpoint at its own input size, by torch-pruning's op counter."""
    import torch
    import torch_pruning as tp

    from toolkit.models import load_model

    model, meta = load_model(str(ckpt))
    macs, params = tp.utils.count_ops_and_params(model.eval(), torch.zeros(1, *meta.preprocess.input_shape))
    return float(macs), int(params)


def fraction_of_peak(*, macs: float, batch: int, ms: float, peak_gmacs: float) -> float:
    """Achieved MAC rate as a fraction of the peak."""
    return macs * batch / (ms / 1e3) / (peak_gmacs * 1e9)


__all__ = ["CpuPeak", "cpu_peak", "count_macs", "fraction_of_peak", "gemm_fp32_gmacs", "measured_clock_ghz"]
