"""PyTorch eager: the runner for rtk checkpoints (`.pt`), the FP32 reference.

`runner.py` imports torch at its top, so it is loaded only through the registry, when a `.pt` is run.
"""
