"""Every TensorRT and cuda-python name rtk uses exists in the real Python bindings of each supported major.

The list is toolkit/backends/tensorrt/api.py, the one the backend checks an installed TensorRT against. The bindings are
the real wheels from PyPI, imported on this CPU machine with a stand-in for TensorRT's native libraries
(tests/trt_bindings.py says how and why). The static test reads the backend's source, so a call into
TensorRT or cuda-python that is not in the list fails here before it can fail on a user's GPU.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from toolkit.backends.tensorrt import api as trt_api

from trt_bindings import CUDART, TENSORRT, check

ROOT = Path(__file__).parents[1]
# every module of the TensorRT backend but the list itself and check.py, which reads ONNX graphs only
BACKEND = sorted(p for p in (ROOT / "toolkit" / "backends" / "tensorrt").glob("*.py")
                 if p.name not in ("api.py", "check.py"))


@pytest.mark.parametrize("bindings", TENSORRT + CUDART, ids=lambda b: b.label)
def test_every_name_rtk_uses_exists(bindings):
    found = check(bindings)
    assert found["version"] == bindings.requirements[0].split("==")[1]
    assert found["missing"] == [], f"{bindings.label} lacks {found['missing']}"


def _chain(node: ast.Attribute) -> tuple[str | None, list[str]]:
    """(base, attributes) of `a.b.c` or `self.a.b.c` (base 'a'); base None when it is not a plain name."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    attrs.reverse()
    if isinstance(node, ast.Name) and node.id == "self" and attrs:
        return attrs[0], attrs[1:]
    return (node.id, attrs) if isinstance(node, ast.Name) else (None, attrs)


def _listed(table: dict, parts: list[str]) -> str | None:
    """None when `parts` is a listed name or lies under a listed leaf (`__version__.split`), else the first
    unlisted prefix."""
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name in table and not any(other.startswith(name + ".") for other in table):
            return None
        if name not in table and not any(other.startswith(name + ".") for other in table):
            return name
    return None if ".".join(parts) in table else ".".join(parts)


def backend_uses(sources: dict[str, str]) -> tuple[set[str], list[str]]:
    """(listed names the code uses, problems): every `trt.X`, `cudart.X` and attribute of a TensorRT object in
    `sources` (file name -> source text)."""
    used, problems = set(), []
    for filename, text in sources.items():
        tree = ast.parse(text)
        inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in inner:
                continue
            base, attrs = _chain(node)
            if not attrs:
                continue
            if base == "trt":
                table, parts = trt_api.TENSORRT, attrs
            elif base == "cudart":
                table, parts = trt_api.CUDART, attrs
            elif base in trt_api.RECEIVERS:
                cls = trt_api.RECEIVERS[base]
                table = trt_api.CUDART if cls.startswith("cuda") else trt_api.TENSORRT
                parts = [cls, *attrs]
            else:
                continue
            where, dotted = f"{filename}:{node.lineno}", ".".join(parts)
            unlisted = _listed(table, parts)
            if unlisted:
                problems.append(f"{where}: {unlisted} is not in backends/tensorrt/api.py")
                continue
            if dotted in table and id(node) in calls and calls[id(node)].keywords:
                problems.append(f"{where}: call {dotted} positionally (keyword names are not checked)")
            used.add(max((n for n in table if dotted == n or dotted.startswith(n + ".")), key=len))
    return used, problems


def test_backend_uses_only_listed_names():
    used, problems = backend_uses({p.name: p.read_text() for p in BACKEND})
    assert problems == []
    stale = sorted((set(trt_api.TENSORRT) | set(trt_api.CUDART)) - used)
    assert stale == [], f"listed in backends/tensorrt/api.py but not used by the backend: {stale}"


def test_static_check_catches_unlisted_calls():
    source = ("config.set_flag(trt.BuilderFlag.INT8)\nshape = self.engine.get_binding_shape(0)\n"
              "cudart.cudaDeviceReset()\nbuilder.create_network(flags=0)\nname = trt.__version__.split('.')\n")
    used, problems = backend_uses({"new.py": source})
    assert problems == ["new.py:1: BuilderFlag.INT8 is not in backends/tensorrt/api.py",
                        "new.py:2: ICudaEngine.get_binding_shape is not in backends/tensorrt/api.py",
                        "new.py:3: cudaDeviceReset is not in backends/tensorrt/api.py",
                        "new.py:4: call Builder.create_network positionally (keyword names are not checked)"]
    assert used == {"IBuilderConfig.set_flag", "Builder.create_network", "__version__"}
