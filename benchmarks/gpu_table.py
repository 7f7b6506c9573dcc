"""The one table `benchmarks/gpu_check.sh` prints: per engine precision, the compile, validate and bench JSON
that the rtk commands wrote into the work folder (GPU compute and copies as separate columns, as trtexec does).

    python -m benchmarks.gpu_table WORK_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

PRECISIONS = ("fp32", "fp16", "int8")
COLUMNS = ("precision", "engine MB", "build s", "top-1 %", "agree %", "cosine", "batch", "p50 ms", "compute ms",
           "h2d ms", "d2h ms", "images/s")


def gpu_table(work: Path) -> Table:
    """Rows from `compile.<precision>.json`, `validate.<precision>.json` and `bench.<precision>.json` in `work`."""
    read = lambda name: json.loads((work / name).read_text())  # noqa: E731
    device = read(f"bench.{PRECISIONS[0]}.json")["runtime"].get("device")
    table = Table(title=f"TensorRT on {device}")
    for col in COLUMNS:
        table.add_column(col, justify="right")
    for precision in PRECISIONS:
        comp, val, bench = (read(f"{kind}.{precision}.json") for kind in ("compile", "validate", "bench"))
        for i, point in enumerate(bench["results"]):
            phases = point.get("phases_ms") or {}
            phase = lambda k: f"{phases[k]['p50']:.3f}" if k in phases else "—"  # noqa: E731
            head = ([precision, f"{comp['size_mb']:.1f}", f"{comp['seconds']:.0f}", f"{val['top1']:.2f}",
                     f"{val['agreement']:.2f}", f"{val['cosine']:.5f}"] if i == 0 else [""] * 6)
            table.add_row(*head, str(point["batch"]), f"{point['latency_ms']['p50']:.3f}", phase("compute"),
                          phase("h2d"), phase("d2h"), f"{point['throughput_ips']:.0f}")
    return table


if __name__ == "__main__":
    Console().print(gpu_table(Path(sys.argv[1])))
