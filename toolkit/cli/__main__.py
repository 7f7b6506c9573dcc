"""`python -m toolkit.cli`: the same entry point as the `rtk` script."""

from toolkit.cli import main

main()
