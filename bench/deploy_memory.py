"""Memory per deployment role (issue 24): the scale-out Compose topology (deploy/compose/scaleout.yaml) as local
processes, as tests/deploy/test_scaleout_processes.py runs it, completing a raster job (S3) and a vector job
(PostGIS) while the resident memory of every process is sampled; the peak per role is what the Kubernetes
resources (deploy/k8s/base) are set from.

Usage: ``python bench/deploy_memory.py [--raster PATH] [--interval 0.3]``: prints a Markdown table for
BENCHMARKS.md. Needs the services of scripts/services.sh (PostgreSQL, RabbitMQ, moto).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "deploy"), str(ROOT / "tests"), str(ROOT / "src")]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))  # roles

import scaleout_topology  # noqa: E402
from scaleout_topology import ROLES, Topology, complete_a_raster_and_a_vector_job, scaleout  # noqa: E402


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Sampler(threading.Thread):
    """Peak RSS per role: of its supervisor, of its largest other process, and of the whole process tree."""

    def __init__(self, top: Topology, interval: float) -> None:
        super().__init__(daemon=True)
        self.top, self.interval = top, interval
        self.supervisor: dict[str, float] = collections.defaultdict(float)
        self.child: dict[str, float] = collections.defaultdict(float)
        self.tree: dict[str, float] = collections.defaultdict(float)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for role, proc in list(self.top.procs.items()):
                own = _rss_mib(proc.pid)
                children = [_rss_mib(c) for c in _children(proc.pid)]
                self.supervisor[role] = max(self.supervisor[role], own)
                self.child[role] = max([self.child[role], *children])
                self.tree[role] = max(self.tree[role], own + sum(children))
            time.sleep(self.interval)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raster", type=Path, default=scaleout_topology.SAMPLE_RASTER)
    parser.add_argument("--interval", type=float, default=0.3)
    args = parser.parse_args()
    scaleout_topology.SAMPLE_RASTER = args.raster
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="geomill-memory-") as tmp, scaleout(Path(tmp)) as top:
        sampler = Sampler(top, args.interval)
        sampler.start()
        complete_a_raster_and_a_vector_job(top)
        sampler.done.set()
        sampler.join()
    print(f"Measured {started} by `bench/deploy_memory.py` (raster {args.raster.name}, "
          f"{args.raster.stat().st_size / 2**20:.1f} MiB; vector: 67 polygons; 1 worker process per worker role; "
          f"RSS sampled every {args.interval} s).\n")
    print("| role | supervisor (MiB) | largest worker process (MiB) | whole tree (MiB) |")
    print("|---|---|---|---|")
    for role in ROLES:
        print(f"| {role} | {sampler.supervisor[role]:.0f} | {sampler.child[role]:.0f} | {sampler.tree[role]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
