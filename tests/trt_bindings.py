"""The real TensorRT and cuda-python Python bindings on a machine without a GPU, for the API conformance test.

Each set of wheels is fetched once with `pip download --no-deps` (TensorRT's bindings are 1.1-1.4 MB a major,
cuda-bindings 7.6-8.4 MB) and installed with `pip install --no-deps --target` into its own folder of a cache
outside the repo (`$XDG_CACHE_HOME/rtk-tests`, else `~/.cache/rtk-tests`; never the project's venv). Code runs
against them in a bare interpreter (`python -S`) that sees that folder and nothing else installed.

TensorRT's bindings link libnvinfer, libnvinfer_plugin and libnvonnxparser of their major, which only NVIDIA's
own index ships (the `tensorrt-cu1x-libs` packages on PyPI are placeholders). tests/trt_standin.c stands in for
them, compiled here with gcc; it exists only for this check (see its header). `import tensorrt` in a real install
is the `tensorrt-cu1x` package, whose `__init__` is `from tensorrt_bindings import *` plus `__version__`: `run`
gives the code the same namespace as `trt`, rather than installing that package, whose older sdists pip-install
the libraries from NVIDIA's index while they are built.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
API = HERE.parent / "toolkit" / "backends" / "tensorrt" / "api.py"
STANDIN = HERE / "trt_standin.c"
NV_LIBS = ("nvinfer", "nvinfer_plugin", "nvonnxparser")


@dataclass(frozen=True)
class Bindings:
    """One release of a binding package, installed together with the packages it needs to import."""

    kind: str                  # "tensorrt" or "cudart"
    major: int
    requirements: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.requirements[0].replace("==", "-")


# The oldest and newest TensorRT 10 (JetPack 6 ships 10.3 as a system package), the oldest and newest 11.
# The cu12 and cu13 bindings wheels of one release carry the same tensorrt.so (sha256 compared for 10.16.1.11
# and 11.4.0.106), so the cu12 ones stand for both.
TENSORRT = tuple(Bindings("tensorrt", int(v.split(".")[0]), (f"tensorrt-cu12-bindings=={v}",))
                 for v in ("10.0.1", "10.16.1.11", "11.0.0.114", "11.4.0.106"))
CUDART = (Bindings("cudart", 12, ("cuda-bindings==12.9.10", "cuda-pathfinder==1.9.1")),
          Bindings("cudart", 13, ("cuda-bindings==13.5.0", "cuda-pathfinder==1.9.1")))

# Run inside `python -S`: load the backend's api.py by path (it imports nothing), import the bindings, report.
_CHECK = r"""
import importlib.util, json, sys, types
site, api_path, kind, major = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, site)
spec = importlib.util.spec_from_file_location("rtk_trt_api", api_path)
api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(api)
if kind == "tensorrt":
    import tensorrt_bindings
    names = {}
    exec("from tensorrt_bindings import *", names)
    module = types.SimpleNamespace(**names, __version__=tensorrt_bindings.__version__)
    version, table = module.__version__, api.TENSORRT
else:
    import cuda.bindings
    from cuda.bindings import runtime as module
    version, table = cuda.bindings.__version__, api.CUDART
print(json.dumps({"version": version, "missing": api.missing(module, api.used_on(table, major))}))
"""


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rtk-tests"


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def install(bindings: Bindings) -> Path:
    """The folder holding `bindings` (downloaded and installed on first use, then reused)."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    site = cache_root() / "site" / f"{bindings.label}-{tag}"
    if (site / ".complete").is_file():
        return site
    wheels = cache_root() / "wheels"
    _pip("download", "--no-deps", "--only-binary=:all:", "--dest", str(wheels), *bindings.requirements)
    files = []
    for req in bindings.requirements:
        name, version = req.split("==")
        stem = re.sub(r"[-_.]+", "_", name).lower() + f"-{version}-"
        files += [str(p) for p in wheels.glob("*.whl")
                  if p.name.lower().startswith(stem) and (f"-{tag}-" in p.name or "-py3-none-" in p.name)]
    site.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=site.parent, prefix=".tmp-"))
    try:
        _pip("install", "--no-deps", "--no-index", "--target", str(tmp), *files)
        (tmp / ".complete").write_text(json.dumps({"requirements": bindings.requirements, "wheels": files}))
        _publish(tmp, site, done=site / ".complete")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return site


def _publish(tmp: Path, final: Path, *, done: Path) -> None:
    """Rename a finished folder into place, unless another test run got there first (theirs is kept)."""
    if done.exists():
        return
    shutil.rmtree(final, ignore_errors=True)   # an unfinished one, left by an interrupted run
    try:
        tmp.rename(final)
    except OSError:
        if not done.exists():
            raise


def standin(major: int) -> Path:
    """A folder with tests/trt_standin.c compiled under the sonames TensorRT `major`'s bindings load."""
    source = STANDIN.read_bytes()
    folder = cache_root() / "standin" / f"{major}-{hashlib.sha256(source).hexdigest()[:12]}"
    if (folder / f"libnvinfer.so.{major}").is_file():
        return folder
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("the TensorRT API check compiles tests/trt_standin.c: install gcc")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    try:
        lib = tmp / "libtrt_standin.so"
        subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(STANDIN)], check=True)
        for name in NV_LIBS:
            (tmp / f"lib{name}.so.{major}").symlink_to(lib.name)
        _publish(tmp, folder, done=folder / f"libnvinfer.so.{major}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def env_for(bindings: Bindings) -> dict[str, str]:
    """The environment to import `bindings` in: the stand-in on the library path for TensorRT."""
    env = dict(os.environ)
    if bindings.kind == "tensorrt":
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(standin(bindings.major)),
                                                                env.get("LD_LIBRARY_PATH")]))
    return env


def check(bindings: Bindings) -> dict:
    """{"version", "missing"}: the names backends/tensorrt/api.py lists for this major that the real bindings lack."""
    site = install(bindings)
    done = subprocess.run([sys.executable, "-S", "-c", _CHECK, str(site), str(API), bindings.kind,
                           str(bindings.major)], capture_output=True, text=True, env=env_for(bindings))
    if done.returncode != 0:
        raise RuntimeError(f"importing {bindings.label} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def tensorrt_package() -> Path:
    """A folder holding the `tensorrt` package exactly as NVIDIA's `tensorrt-cu1x` sdist writes it: two lines over
    `tensorrt_bindings` (see the module docstring for why the sdist itself is not installed)."""
    folder = cache_root() / "tensorrt-package"
    init = folder / "tensorrt" / "__init__.py"
    if not init.is_file():
        init.parent.mkdir(parents=True, exist_ok=True)
        init.write_text("from tensorrt_bindings import *\nfrom tensorrt_bindings import __version__\n")
    return folder


def run_rtk(args: list[str], *, tensorrt: Bindings | None, cudart: Bindings,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python ARGS` in the project's interpreter with rtk's sources and, ahead of everything installed, the real
    `tensorrt` (with the stand-in libraries) and cuda-python bindings given."""
    paths = [str(install(cudart))]
    env = env_for(cudart)
    if tensorrt is not None:
        paths += [str(install(tensorrt)), str(tensorrt_package())]
        env = env_for(tensorrt)
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(HERE.parent)])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd)
