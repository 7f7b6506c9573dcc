"""rtk: take a ResNet50 classifier from PyTorch to an edge runtime and prove it still works."""

__version__ = "0.2.0"
