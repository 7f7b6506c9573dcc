"""Fuzzing the two parsers of untrusted input: recipes (YAML) and images. The only exception allowed out is
RtkError, with a one-line message; anything else is a crash. Budgets are bounded for CI (5,000 cases;
RTK_FUZZ_SCALE=10 runs ten times as many cases locally)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from toolkit.data import load_image
from toolkit.errors import RtkError
from toolkit.recipe import Recipe, parse_recipe

from tiny_recipe import TINY

SCALE = float(os.environ.get("RTK_FUZZ_SCALE", "1"))
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def budget(examples: int) -> settings:
    """`examples` cases (times RTK_FUZZ_SCALE), no per-case deadline, the same cases on every run."""
    return settings(max_examples=int(examples * SCALE), deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))

YAML_BITS = list("{}[]:,-&*!|>'\"#%@`?\n\t ") + ["name: ", "data:", "synth:", "  ", "- ", "!!python/object:os.system",
                                                 "&a ", "*a", "<<: ", "~", "null", ".inf", "0x1F", "1e999", "---", "..."]


def _check(text: str) -> None:
    try:
        recipe = parse_recipe(text, Path("fuzz.yaml"))
    except RtkError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.yaml"), str(exc)
    else:
        assert isinstance(recipe, Recipe)


@budget(1000)
@given(st.lists(st.sampled_from(YAML_BITS) | st.text(max_size=6), max_size=40).map("".join))
def test_random_yaml_text(text):
    _check(text)


@budget(1000)
@given(st.integers(0, len(TINY) - 1), st.integers(0, 40), st.text(max_size=12))
def test_mutated_valid_recipe(at, cut, insert):
    _check(TINY[:at] + insert + TINY[at + cut:])


KEYS = ["version", "name", "data", "synth", "root", "model", "source", "seed", "bench", "runs", "gates",
        "max_drop_pt", "compile", "targets", "quantize", "prune", "export", "opset", "classes", "size"]
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
           | st.text(max_size=10) | st.sampled_from(["onnxruntime", "random", "none", "fuzz", "1", ""]))
TREES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5), max_leaves=25)


@budget(1000)
@given(st.dictionaries(st.sampled_from(KEYS), TREES, max_size=8))
def test_random_nested_dicts(tree):
    _check(yaml.safe_dump(tree, allow_unicode=True))


def _encoded(fmt: str, mode: str, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


SEEDS = [_encoded("PNG", "RGB", (12, 9)), _encoded("PNG", "RGBA", (5, 7)), _encoded("PNG", "P", (8, 8)),
         _encoded("JPEG", "RGB", (16, 16)), _encoded("JPEG", "CMYK", (8, 8)), _encoded("BMP", "L", (4, 4)),
         _encoded("GIF", "P", (6, 6)), _encoded("TIFF", "RGB", (5, 5))]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "image.bin"


def _load(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        img = load_image(path)
    except RtkError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
    else:
        assert img.mode == "RGB" and img.size[0] > 0 and img.size[1] > 0


@budget(1000)
@given(st.binary(max_size=512))
def test_random_bytes_as_image(scratch, data):
    _load(scratch, data)


@budget(1000)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, 4096))
def test_mutated_images(scratch, seed, flips, keep):
    data = bytearray(seed)
    for at, value in flips:
        data[at % len(data)] = value
    _load(scratch, bytes(data[: max(keep, 8)]))
