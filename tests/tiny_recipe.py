"""A test helper: the smallest complete recipe (4 synthetic classes, random ResNet50 at 64 px, ONNX Runtime).

Line numbers matter: tests/test_recipe.py expects errors at the lines below."""

TINY = """\
version: 1
name: tiny
data:
  synth: {classes: 4, per_class: 12, val_per_class: 8, size: 64}
model:
  source: random
  input_size: 64
compile:
  targets: [onnxruntime]
bench:
  runs: 5
  warmup: 1
  repeats: 2
gates:
  max_drop_pt: 0.5
  max_p99_ms: {onnxruntime: 100000}
"""
