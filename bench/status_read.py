#!/usr/bin/env python
"""Benchmark: what one status read costs as jobs grow, on PostgreSQL.

    .venv/bin/python bench/status_read.py                  # 10 / 1,000 / 20,000 / 100,000 tasks; BENCHMARKS.md
    .venv/bin/python bench/status_read.py --sizes 10 20000 --reads 100 --no-write-md

A fresh database ``status_bench_<random>`` on 127.0.0.1:5432 (dropped afterwards). For each size N, one job whose
first stage has N tasks (inserted with ``Store.start_stage``, as the orchestrator does); then, through the store's
own calls, half of them claimed and completed and 16 more claimed (2 workers x a prefetch of 8), so the stage has
queued, running and completed tasks, as a job has while it runs. Side by side in one process, alternating read by read:

- **geomill**: ``postgres_queries.JOB_VIEW``, the statement behind ``GET /api/jobs/status/{id}`` (the job row with
  each stage's counters row, counting only its running and cancelled tasks);
- **count all** (the read before 2026-12-03): the same job row with each stage's tasks counted by status
  (``COUNT(*) ... GROUP BY stage, status`` over the job's tasks).

Both are run the same way (psycopg, prepared, one row fetched). Each figure is wall time per read on loopback
(client + PostgreSQL), median and p99 over ``--reads`` reads after 20 unmeasured ones, plus PostgreSQL's own
execution time (``EXPLAIN ANALYZE``, median of 5). The counts ``PostgresStore.job_view`` derives must equal the
counted ones (checked).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from common import pg_create_db, pg_drop_db, publish  # (bench/ is on sys.path when a script runs)

SECTION = "## Status read cost by job size (bench/status_read.py)"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{db}"

# The read before 2026-12-03, kept here as the reference: every task of the job counted by status.
COUNT_ALL_SQL = """
SELECT j.*, (SELECT json_agg(x ORDER BY x.stage) FROM (
    SELECT s.*, c.status AS task_status, c.n AS task_count FROM stages s LEFT JOIN (
        SELECT stage, status, COUNT(*) AS n FROM tasks WHERE job_id = j.job_id GROUP BY stage, status
    ) c ON c.stage = s.stage WHERE s.job_id = j.job_id ORDER BY s.stage) x) AS stage_rows
FROM jobs j WHERE j.job_id = %s
"""


def counts_of_count_all(row: dict[str, Any]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    for r in row["stage_rows"]:
        if r["task_status"] is not None:
            counts.setdefault(r["stage"], {})[r["task_status"]] = r["task_count"]
    return counts


def make_job(store: Any, n: int) -> str:
    from geomill.domain import FailurePolicy, NewJob, NewTask, make_task_id

    job_id = f"status-bench-{n}"
    store.create_job(NewJob(job_id, "fanout", {"n": n, "tag": "status-bench"}, 1, None))
    tasks = [NewTask(make_task_id(job_id, 1, f"k{i}"), f"k{i}", "demo.work", {"key": f"k{i}"}, "default-tasks", 3,
                     60.0) for i in range(n)]
    assert store.start_stage(job_id, 1, "work", FailurePolicy.FAIL_JOB, tasks)
    done = 0
    while done < n // 2:  # half the stage finished, as a worker finishes them: claimed, then completed
        got = store.claim_tasks(["default-tasks"], "status-bench", 600.0, min(1000, n // 2 - done))
        store.complete_tasks([(t.task_id, t.attempt, {}) for t in got])
        done += len(got)
    store.claim_tasks(["default-tasks"], "status-bench", 600.0, min(16, n - done))  # 2 workers x prefetch 8 running
    return job_id


def pg_execution_ms(con: psycopg.Connection, sql: str, job_id: str) -> float:
    times = []
    for _ in range(5):
        plan = con.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, (job_id,)).fetchone()
        times.append(plan[next(iter(plan))][0]["Execution Time"])  # type: ignore[index]
    return statistics.median(times)


def q(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def measure(store: Any, con: psycopg.Connection, job_id: str, reads: int) -> dict[str, Any]:
    from geomill.store.postgres_queries import JOB_VIEW

    times: dict[str, list[float]] = {"geomill": [], "count_all": []}
    statements = {"geomill": JOB_VIEW, "count_all": COUNT_ALL_SQL}
    for i in range(reads + 20):
        for name, sql in statements.items():
            t0 = time.perf_counter()
            con.execute(sql, (job_id,), prepare=True).fetchone()
            if i >= 20:
                times[name].append((time.perf_counter() - t0) * 1000)
    derived = {s.stage: s.counts for s in store.job_view(job_id).stages}
    counted = counts_of_count_all(con.execute(COUNT_ALL_SQL, (job_id,)).fetchone())  # type: ignore[arg-type]
    if derived != counted:
        raise AssertionError(f"{job_id}: derived {derived} != counted {counted}")
    return {"counts": derived[1], **{name: {"p50": statistics.median(t), "p99": q(t, 0.99),
                                            "pg_ms": pg_execution_ms(con, statements[name], job_id)}
                                     for name, t in times.items()}}


def render(results: dict[int, dict[str, Any]], args: argparse.Namespace, pg_version: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION, "",
        f"Measured {now} on {platform.platform()}, PostgreSQL {pg_version}, Python {platform.python_version()}: one "
        "job per size, half its tasks completed and 16 running; the two reads alternate, "
        f"{args.reads} measured reads each (wall time on loopback, client + server), and PostgreSQL's own execution "
        "time (EXPLAIN ANALYZE, median of 5). The counts geomill derives equal the counted ones at every size (checked).", "",
        f"Reproduce: `.venv/bin/python bench/status_read.py --sizes {' '.join(map(str, args.sizes))} "
        f"--reads {args.reads}`", "",
        "| tasks in the job | geomill p50 ms | geomill p99 ms | geomill PG exec ms | count all p50 ms "
        "| count all p99 ms | count all PG exec ms | count all / geomill (p50) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r in results.items():
        g, c = r["geomill"], r["count_all"]
        lines.append(f"| {n:,} | {g['p50']:.2f} | {g['p99']:.2f} | {g['pg_ms']:.3f} | {c['p50']:.2f} | {c['p99']:.2f} "
                     f"| {c['pg_ms']:.3f} | {c['p50'] / g['p50']:.1f}× |")
    lines += ["", "geomill: `postgres_queries.JOB_VIEW`, the statement behind `GET /api/jobs/status/{id}` (each stage's "
              "counts from its counters row; only running and cancelled tasks are counted). count all: the statement "
              "it replaced on 2026-12-03, every task of the job counted by status. Both prepared, run the same way.",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 1_000, 20_000, 100_000])
    p.add_argument("--reads", type=int, default=300)
    p.add_argument("--no-write-md", action="store_true")
    args = p.parse_args(argv)

    from geomill.config import Settings
    from geomill.store import open_store

    db = pg_create_db("status_bench")
    url = PG_URL.format(db=db)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(database_url=url, data_dir=Path(tmp), db_pool_size=1)
            store = open_store(url, settings)
            store.migrate()
            results = {}
            with psycopg.connect(url, autocommit=True, row_factory=dict_row) as con:
                pg_version = con.execute("SHOW server_version").fetchone()["server_version"]  # type: ignore[index]
                for n in args.sizes:
                    t0 = time.monotonic()
                    job_id = make_job(store, n)
                    con.execute("ANALYZE tasks")
                    results[n] = measure(store, con, job_id, args.reads)
                    r = results[n]
                    print(f"{n:>8,} tasks (set up in {time.monotonic() - t0:.1f} s; {json.dumps(r['counts'])}): "
                          f"geomill p50 {r['geomill']['p50']:.2f} ms p99 {r['geomill']['p99']:.2f} ms "
                          f"(PG {r['geomill']['pg_ms']:.3f}); count all p50 {r['count_all']['p50']:.2f} ms "
                          f"p99 {r['count_all']['p99']:.2f} ms (PG {r['count_all']['pg_ms']:.3f})", flush=True)
            store.close()
    finally:
        pg_drop_db(db)
    publish(SECTION, render(results, args, pg_version), not args.no_write_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
