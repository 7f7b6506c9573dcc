"""rtk against the alternatives, side by side in one run: `python -m benchmarks.run [--quick]`."""
