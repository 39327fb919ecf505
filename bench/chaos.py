#!/usr/bin/env python
"""Chaos, long form (issue 20): the harness of tests/chaos (tests/chaos/harness.py) with repetitions, 1,000-task
fanouts and an optional soak. Each run: a fresh PostgreSQL database (and RabbitMQ vhost), a small `process_raster`,
a small `process_vector` into PostGIS and a `fanout` of N tasks on real `geomill worker` processes; one fault; then
lost tasks, duplicated effects, stuck jobs and the time from the fault to every job terminal.

    .venv/bin/python bench/chaos.py                                  # every fault x 3, N = 1,000, BENCHMARKS.md
    .venv/bin/python bench/chaos.py --runs 1 --n 200 --no-write-md   # quick look
    .venv/bin/python bench/chaos.py --faults kill_mid_task --runs 10
    .venv/bin/python bench/chaos.py --soak-minutes 30 --faults none  # soak only: a random SIGKILL every minute

The PostgreSQL and RabbitMQ restart drills stop the local servers for a few seconds: run it on a machine where
nothing else needs them. Disk full needs root (a tmpfs). Results go to bench/out/chaos/results-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "chaos")]  # the harness and its helpers (procs, services)

from harness import FAULTS, Drill, Result, _kill_pid_of, run_disk_full, run_fault  # noqa: E402

from common import publish  # noqa: E402  (bench/ is on sys.path when a script runs)
from services import ensure_postgres, fresh_database, fresh_vhost  # noqa: E402

HEADING = "## Issue 20: chaos table"


def one_run(name: str, n: int, sleep_s: float) -> Result:
    root = Path(tempfile.mkdtemp(prefix=f"geomill-chaos-{name}-"))
    with fresh_database("geomill_chaos") as url:
        if name == "disk_full":
            return run_disk_full(root, url, n=n)
        fault = FAULTS[name]
        if fault.broker:
            with fresh_vhost("geomill_chaos") as amqp:
                return run_fault(fault, root, url, amqp, n=n, sleep_s=sleep_s)
        return run_fault(fault, root, url, None, n=n, sleep_s=sleep_s)


def _rss_kib(pgids: set[int]) -> int:
    """Resident memory of every process in the worker process groups (from /proc)."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) not in pgids:
                continue
            status = (proc / "status").read_text()
        except (OSError, ProcessLookupError):
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


def soak(minutes: float, kill_every_s: float, n: int) -> tuple[Result, list[tuple[float, int]], int]:
    """One fanout of `n` short tasks (sized to last about `minutes`) plus the raster and vector jobs, two worker
    supervisors; every `kill_every_s` a random worker process running a task is SIGKILLed. Memory sampled."""
    root = Path(tempfile.mkdtemp(prefix="geomill-chaos-soak-"))
    samples: list[tuple[float, int]] = []
    kills = 0
    with fresh_database("geomill_chaos") as url:
        drill = Drill(root, url, n=n, sleep_s=0.05, bound_s=minutes * 60 + 300)
        drill.inputs()
        try:
            drill.submit()
            for _ in range(2):
                drill.start_worker(2)
            pgids = {w.pid for w in drill.workers}
            started = time.monotonic()
            next_kill = started + kill_every_s
            fault_at = started
            while time.monotonic() - started < minutes * 60:
                samples.append((round(time.monotonic() - started), _rss_kib(pgids)))
                status = drill.statuses()
                if status and all(v not in ("queued", "processing") for v in status.values()):
                    break
                if time.monotonic() >= next_kill:
                    running = drill.task_rows("processing")
                    if running and _kill_pid_of(random.choice(running)[1]):
                        kills += 1
                        fault_at = time.monotonic()
                    next_kill += kill_every_s
                time.sleep(5)
            result = drill.measure("soak", fault_at)
            samples.append((round(time.monotonic() - started), _rss_kib(pgids)))
        finally:
            drill.close()
    return result, samples, kills


def _rss_profile(rss: list[int]) -> str:
    """RSS (MiB) at fractions of the run, skipping the first samples (processes still starting)."""
    if not rss:
        return "-"
    return " / ".join(str(rss[min(len(rss) - 1, int(len(rss) * f))] // 1024) for f in (0.1, 0.25, 0.5, 0.75, 0.9, 1.0))


def _row(name: str, results: list[Result]) -> str:
    rec = [r.recovery_s for r in results if r.recovery_s is not None]
    recovery = f"{statistics.median(rec):.1f} / {max(rec):.1f}" if rec else "-"
    notes = sorted({note for r in results for note in r.notes if not note.startswith("raster failed at once")})
    return (f"| {name} | {len(results)} | {sum(r.lost for r in results)} | {sum(r.duplicated for r in results)} | "
            f"{sum(r.stuck for r in results)} | {recovery} | {sum(r.retried for r in results)} / "
            f"{sum(r.reruns for r in results)} | {'; '.join(notes)[:160]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default="all", help="comma-separated names, 'all', or 'none' (soak only)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions per fault")
    parser.add_argument("--n", type=int, default=1000, help="fanout tasks per mixed job")
    parser.add_argument("--sleep-s", type=float, default=0.01, help="work time of each fanout task")
    parser.add_argument("--soak-minutes", type=float, default=0, help="0: no soak")
    parser.add_argument("--soak-kill-every-s", type=float, default=60)
    parser.add_argument("--soak-n", type=int, default=0, help="fanout tasks of the soak (0: sized to its minutes)")
    parser.add_argument("--no-write-md", dest="write_md", action="store_false")
    args = parser.parse_args()
    ensure_postgres()
    names = {"all": [*FAULTS, "disk_full"], "none": []}.get(args.faults, args.faults.split(","))
    results: dict[str, list[Result]] = {}
    started = time.monotonic()
    for name in names:
        for i in range(args.runs):
            r = one_run(name, args.n, args.sleep_s)
            print(f"{name} #{i + 1}: {r}", flush=True)
            results.setdefault(name, []).append(r)
    soak_text = ""
    if args.soak_minutes:
        n = args.soak_n or int(args.soak_minutes * 60 * 4 / 0.08)  # 4 worker processes, ~80 ms per task
        r, samples, kills = soak(args.soak_minutes, args.soak_kill_every_s, n)
        results.setdefault("soak", []).append(r)
        rss = [kib for _, kib in samples if kib]
        soak_text = (f"\nSoak: {args.soak_minutes:g} min, fanout of {n:,} tasks x 0.05 s, 2 supervisors x 2 worker "
                     f"processes, {kills} random SIGKILLs (one every {args.soak_kill_every_s:g} s): lost {r.lost}, "
                     f"duplicated {r.duplicated}, stuck {r.stuck}. Worker RSS (all processes of both supervisors, "
                     f"sampled every 5 s) at 10 / 25 / 50 / 75 / 90 / 100 % of the run: {_rss_profile(rss)} MiB; "
                     f"max {max(rss, default=0) // 1024} MiB ({len(samples)} samples; a killed process is "
                     f"replaced by a fresh one, so a leak shows as a rising floor).\n")
        (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
        (ROOT / "bench" / "out" / f"soak-rss-{int(time.time())}.json").write_text(json.dumps(samples))
    wall = time.monotonic() - started
    out = ROOT / "bench" / "out" / "chaos"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{int(time.time())}.json").write_text(json.dumps(
        {k: [vars(r) for r in v] for k, v in results.items()}, indent=1))
    load = os.getloadavg()
    command = " ".join(["bench/chaos.py", *sys.argv[1:]])
    section = "\n".join([
        HEADING, "",
        f"`{command}` — runs per fault {args.runs}, fanout N = {args.n:,} tasks x {args.sleep_s:g} s plus a "
        f"96² `process_raster` and a 40-feature `process_vector` (PostGIS) per run, PostgreSQL 15 (RabbitMQ for the "
        f"broker faults), 1 `geomill worker --processes 2` (2 for the janitor drill), lease 3 s, janitor every "
        f"0.5 s. {os.cpu_count()} cores shared with other work (load average at the end {load[0]:.1f}); "
        f"wall time {wall / 60:.1f} min. Recovery = seconds from the fault to every job terminal (includes the "
        f"rest of the work). retried / reruns = fanout tasks that took a second attempt / executions beyond the "
        f"first (at-least-once after a kill; never two runs of one attempt). disk_full: the raster job fails "
        f"at once with `OutOfSpace` naming the folder (docs/rasters.md); recovery is the fanout job's.", "",
        "| fault | runs | lost | duplicated | stuck | p50 / max recovery (s) | retried / reruns | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *[_row(name, rs) for name, rs in results.items()],
        soak_text,
    ])
    publish(HEADING, section, args.write_md)


if __name__ == "__main__":
    main()
