"""PyTorch eager backend (runner.py imports torch, so it is loaded only when a .pt is run)."""
