"""The `rtk` command line: each command builds one settings model from its flags and calls one library function.

app.py holds the typer app and the error handling (exit 2 bad input, 1 gate, 3 bug); flags.py turns flags into
settings models; the commands are in make.py (artifacts), measure.py (running and comparing them) and runs.py
(recipes).
"""

from toolkit.cli import make, measure, runs  # noqa: F401  (registers the commands on `app`)
from toolkit.cli.app import app, main

__all__ = ["app", "main"]
