"""oneDNN ISA tiers: the one this CPU runs natively, the lower ones it can emulate, and the one each runtime's
kernels ran on in this process.

OpenVINO's CPU plugin runs convolutions and matrix products through oneDNN, whose JIT picks its kernels by the
CPU's instruction set. The environment variable ONEDNN_MAX_CPU_ISA caps that pick; oneDNN reads it once, at its
first dispatch, so a capped run needs a fresh process (`capped`). PyTorch's own oneDNN honours it too (its
convolutions); ONNX Runtime's MLAS dispatches on cpuid and ignores it (its INT8 logits are bit-identical under
every cap), so ONNX Runtime results are always on the native tier. The tiers are oneDNN's names, the values a
user can pass:

| tier             | adds (cpuinfo flags)                               | INT8 dot product                              |
|------------------|----------------------------------------------------|-----------------------------------------------|
| AVX2             | avx2 fma                                           | VPMADDUBSW: u8*s8 pairs summed in int16, can  |
|                  |                                                    | saturate                                      |
| AVX2_VNNI        | avx_vnni                                           | VPDPBUSD (256-bit): straight into int32       |
| AVX512_CORE      | avx512f avx512bw avx512vl avx512dq                 | VPMADDUBSW (512-bit), can saturate            |
| AVX512_CORE_VNNI | avx512_vnni                                        | VPDPBUSD (512-bit)                            |
| AVX512_CORE_BF16 | avx512_bf16                                        | as VNNI; bf16 for float layers                |
| AVX512_CORE_AMX  | amx_tile amx_int8 amx_bf16 avx512_fp16 avx_vnni    | TDPBUSD tiles, int32 accumulation             |

oneDNN orders them partially: AVX2 < AVX2_VNNI, and AVX2 < AVX512_CORE < ... < AVX512_CORE_AMX; AVX2_VNNI is
below AMX only. A cap runs the highest tier this CPU has among those at or below it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, TypeAdapter

from toolkit.doctor import CpuInfo, this_cpu
from toolkit.errors import RtkError

ENV = "ONEDNN_MAX_CPU_ISA"
_AVX512 = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"}
TIERS: dict[str, frozenset[str]] = {   # settings.ISA_TIERS, ascending; each includes the flags of every tier below
    "AVX2": frozenset({"avx2", "fma"}),
    "AVX2_VNNI": frozenset({"avx2", "fma", "avx_vnni"}),
    "AVX512_CORE": frozenset(_AVX512),
    "AVX512_CORE_VNNI": frozenset(_AVX512 | {"avx512_vnni"}),
    "AVX512_CORE_BF16": frozenset(_AVX512 | {"avx512_vnni", "avx512_bf16"}),
    "AVX512_CORE_AMX": frozenset(_AVX512 | {"avx512_vnni", "avx512_bf16", "avx_vnni", "avx512_fp16", "amx_tile",
                                            "amx_int8", "amx_bf16"}),
}
VNNI = ("AVX2_VNNI", "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_AMX")
BELOW_AVX2 = ("SSE41", "AVX")   # oneDNN caps rtk does not offer, recorded as given
STARTED_WITH = os.environ.get(ENV)   # oneDNN reads the cap once: this process runs on the value it started with
CAPPED_RUNTIMES = ("openvino", "torch")   # torch: its oneDNN convolutions (measured jit:avx2 under AVX2)


def has_vnni(tier: str | None) -> bool:
    """Whether INT8 products accumulate straight into int32 on this tier (no int16 pair sums to saturate)."""
    return tier in VNNI


def runnable(cpu: CpuInfo | None = None) -> list[str]:
    """The tiers this CPU can run, natively or capped down to, lowest first."""
    flags = {name for name, present in (cpu or this_cpu()).isa.items() if present}
    return [tier for tier, needs in TIERS.items() if needs <= flags]


def saturation_risk(extra: dict, tier: str | None) -> str | None:
    """Why an INT8 artifact (its metadata's `extra`) may lose accuracy on `tier`: quantized with full 8-bit weights
    (NNCF's overflow fix off, for a VNNI tier) and run where u8*s8 pairs are summed in int16 (AVX2, AVX512_CORE),
    its first convolution can saturate (calibration/README.md); None when it cannot."""
    q = extra.get("quantization") if isinstance(extra, dict) else None
    settings = q.get("settings") if isinstance(q, dict) else None
    fix = settings.get("overflow_fix") if isinstance(settings, dict) else None
    if not isinstance(fix, str) or fix.lower() != "disable" or tier is None or has_vnni(tier):
        return None
    build = (f"`rtk quantize --isa {tier}` builds for this tier" if tier in TIERS
             else "`rtk quantize --isa AVX2` builds the 7-bit weights that fit it")
    return (f"quantized with full 8-bit weights (for a VNNI CPU) and run on {tier}, whose int16 pair sums can "
            f"saturate its first convolution; {build}")


def native_tier(cpu: CpuInfo | None = None) -> str | None:
    """The highest tier this CPU runs (None below AVX2 or off x86)."""
    tiers = runnable(cpu)
    return tiers[-1] if tiers else None


def capped_tier(cap: str | None, cpu: CpuInfo | None = None) -> str | None:
    """The tier oneDNN runs under ONEDNN_MAX_CPU_ISA=`cap` on this CPU (an unknown value is ignored by oneDNN)."""
    value = (cap or "").upper()    # oneDNN ignores a value with spaces around it, as it ignores an unknown one
    if value in BELOW_AVX2:
        return value
    if value not in TIERS:
        return native_tier(cpu)
    below = [t for t in runnable(cpu) if TIERS[t] <= TIERS[value]]
    return below[-1] if below else None


def effective_tier(target: str, cpu: CpuInfo | None = None, cap: str | None = STARTED_WITH) -> str | None:
    """The tier `target`'s CPU kernels run on in this process: the capped one for OpenVINO and PyTorch (oneDNN),
    the native one for ONNX Runtime; None for TensorRT (a GPU)."""
    if target == "tensorrt":
        return None
    if target in CAPPED_RUNTIMES:
        return capped_tier(cap, cpu)
    return native_tier(cpu)


def record(cpu: CpuInfo | None = None, cap: str | None = STARTED_WITH) -> dict[str, Any]:
    """The tier facts a manifest and `rtk doctor` keep: native tier, the cap, what OpenVINO runs on, the choices."""
    cpu = cpu or this_cpu()
    return {"native": native_tier(cpu), "cap": cap or None, "openvino": capped_tier(cap, cpu), "runnable": runnable(cpu)}


def check_tier(name: str, cpu: CpuInfo | None = None, *, field: str = "--isa") -> str:
    """`name` as oneDNN spells it; refuses a name oneDNN/rtk does not know and a tier this CPU cannot run
    (`field` names where the tier came from: the flag, or a recipe's validate.isa)."""
    tier = name.strip().upper()
    cpu = cpu or this_cpu()
    ok = runnable(cpu)
    if tier not in TIERS:
        raise RtkError(f"{field} {name!r}: unknown tier; choose one of {', '.join(TIERS)} (this CPU runs "
                       f"{', '.join(ok) or 'none of them'})")
    if tier not in ok:
        missing = " ".join(sorted(TIERS[tier] - {k for k, v in cpu.isa.items() if v}))
        raise RtkError(f"{field} {tier}: this CPU lacks {missing} (native tier {native_tier(cpu) or 'below AVX2'}); "
                       f"a cap can only go down: choose one of {', '.join(ok) or 'none'}, or validate on that device")
    return tier


PROGRESS = "rtk-isa-progress"
FAILED = "rtk-isa-error"


def running_under(tier: str) -> bool:
    """Whether this process started with oneDNN capped at `tier` (a capped run's child, or a user's own cap)."""
    return (STARTED_WITH or "").upper() == tier


def fresh_python(module: str) -> list[str]:
    """The command that runs `module` as `python -m` does, in a fresh Python importing this rtk: the working
    directory is not put on sys.path, so a `toolkit/` folder there cannot stand in for rtk."""
    return [sys.executable, "-c", "import runpy, sys; del sys.path[0]; "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"]


def capped(tier: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (a toolkit function returning a pydantic model, e.g. `toolkit.validate.validate`) run in a fresh Python
    process with oneDNN capped at `tier`, checked here first.

    Arguments travel as JSON (paths as strings, settings models as their fields) and are rebuilt there from `fn`'s
    annotations; the result comes back as `fn`'s return type; `progress(...)` calls are relayed and the child's
    other output passed on to stderr. A bad-input error in the child is raised here as the same RtkError; anything
    else there is a bug (RuntimeError).
    """
    tier = check_tier(tier)
    returns = typing.get_type_hints(fn)["return"]

    def call(*args: Any, progress: Callable[..., None] | None = None, **kwargs: Any) -> Any:
        arguments = inspect.signature(fn).bind_partial(*args, **kwargs).arguments
        request = {"fn": f"{fn.__module__}:{fn.__name__}", "arguments": _plain(arguments)}
        with tempfile.TemporaryDirectory(prefix="rtk-isa-") as tmp:
            ask, answer = Path(tmp) / "request.json", Path(tmp) / "result.json"
            ask.write_text(json.dumps(request))
            proc = subprocess.Popen([*fresh_python("toolkit.isa"), str(ask), str(answer)],
                                    env={**os.environ, ENV: tier}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            failure, tail = None, []
            try:
                for line in proc.stdout:
                    if line.startswith(PROGRESS):
                        if progress:
                            positional, facts = json.loads(line[len(PROGRESS):])
                            progress(*positional, **facts)
                    elif line.startswith(FAILED):
                        failure = line[len(FAILED):].strip()
                    else:
                        sys.stderr.write(line)
                        tail = (tail + [line.rstrip()])[-5:]
            except BaseException:   # Ctrl-C or SIGTERM here: the child must not outlive this process
                proc.kill()
                proc.wait()
                raise
            code = proc.wait()
            if failure is not None:
                raise RtkError(failure)
            if code != 0 or not answer.is_file():
                raise RuntimeError(f"the {tier}-capped process exited {code}: {' | '.join(tail)[-300:]}")
            return returns.model_validate_json(answer.read_text())

    return call


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _child(ask: Path, answer: Path) -> int:
    """The capped process: run the requested function, its arguments typed by its annotations; write its result."""
    from toolkit.io import write_json

    request = json.loads(ask.read_text())
    module, name = request["fn"].split(":")
    fn = getattr(importlib.import_module(module), name)
    hints = typing.get_type_hints(fn)
    arguments = {k: TypeAdapter(hints[k]).validate_python(v) if k in hints else v
                 for k, v in request["arguments"].items()}
    try:
        result = fn(**arguments, progress=lambda *a, **k: print(PROGRESS + json.dumps([a, k]), file=sys.stderr,
                                                                 flush=True))
    except RtkError as exc:
        print(f"{FAILED} {exc}", file=sys.stderr, flush=True)
        return 2
    write_json(answer, result)
    return 0


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1]), Path(sys.argv[2])))
