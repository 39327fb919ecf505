#!/usr/bin/env python
"""Markdown table of several harness runs: per scenario and system, the median over runs of the harness's own
per-run figure (summary.json: the median of the adapter's samples in the `clean` phase). Standard library only.

    python bench/queue_harness/table.py fixed20=/tmp/pgqbench/results/<run1> fixed20=<run2> depth500=<run3> ...
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

COLUMNS = [("completion_rate", "completed jobs/s", 0), ("enqueue_rate", "enqueued jobs/s", 0),
           ("claim_p50_ms", "pickup p50 ms", 0), ("claim_p95_ms", "pickup p95 ms", 0),
           ("claim_p99_ms", "pickup p99 ms", 0), ("end_to_end_p50_ms", "end-to-end p50 ms", 0),
           ("queue_depth", "queue depth", 0)]


def collect(args: list[str], phase: str = "clean") -> dict[tuple[str, str], dict[str, list[float]]]:
    out: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for arg in args:
        scenario, _, run_dir = arg.partition("=")
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        for system, doc in summary["systems"].items():
            metrics = doc["phases"].get(phase, {}).get("metrics", {})
            for key, _label, _digits in COLUMNS:
                if key in metrics:
                    out[(scenario, system)][key].append(float(metrics[key]["median"]))
    return out


def render(data: dict[tuple[str, str], dict[str, list[float]]]) -> str:
    head = "| scenario | system | runs | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for (scenario, system), metrics in data.items():
        runs = max((len(v) for v in metrics.values()), default=0)
        cells = []
        for key, _label, digits in COLUMNS:
            values = metrics.get(key)
            cells.append(f"{statistics.median(values):,.{digits}f}" if values else "—")
        lines.append(f"| {scenario} | {system} | {runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(collect(sys.argv[1:])))
