"""`rtk run RECIPE`: run.py (the run folder, the stage cache, the manifest), stages.py (every stage, validate and
bench included), gates.py (the gates, shared with `rtk validate`) and report.py (report.json/.md and plots from
what the stages returned; it runs nothing)."""

from toolkit.pipeline.run import run

__all__ = ["run"]
