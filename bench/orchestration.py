#!/usr/bin/env python
"""Benchmark: orchestration overhead. One ``fanout`` job of 3 stages x N no-op tasks, 2 worker processes,
on SQLite and on PostgreSQL, alternately (A B A B ...), medians reported.

    .venv/bin/python bench/orchestration.py                            # N = 100, 1,000, 10,000; 3 rounds; BENCHMARKS.md
    .venv/bin/python bench/orchestration.py --sizes 100 --repeat 1     # quick check, no BENCHMARKS.md update
    .venv/bin/python bench/orchestration.py --backends postgres --sizes 1000 --no-write-md

Each run is ``geomill run fanout -p n=N -p stages=3 -p tag=<random> -w 2 --json`` in a fresh data dir (SQLite) or
against a fresh database ``geomill_bench_<random>`` on 127.0.0.1:5432 (PostgreSQL, dropped afterwards). ``run``
submits the job, then spawns its 2 worker processes, so its wall time includes process start-up and shut-down.
The main figures therefore come from the job's own timestamps in the database:

- processing = jobs.started_at (the first stage's compare-and-set) -> jobs.finished_at; tasks/s = 3N / processing
- submit -> finished = jobs.created_at -> jobs.finished_at (includes spawning the worker processes)
- stage gap (per boundary k -> k+1) = min(tasks.execution_started_at of stage k+1) - max(tasks.finished_at of
  stage k), split at stages.created_at of stage k+1 (taken when start_stage begins, i.e. after planning) into
  "signal + plan" (stage_complete event, orchestrator wake-up, reading the previous stages, planning N tasks) and
  "insert + wake + claim" (inserting N task rows, commit, NOTIFY/poll wake-up, the first claim).
- PostgreSQL only: per task, the delta of pg_stat_database (xact_commit, tup_inserted + tup_updated +
  tup_deleted) of the bench database, and of pg_stat_wal (wal_records, wal_sync; server-wide) around the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out" / "orchestration"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
SECTION = "## Orchestration (bench/orchestration.py)"

STAGES = 3
WORKERS = 2
DEFAULT_SIZES = (100, 1_000, 10_000)
BACKENDS = ("sqlite", "postgres")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{db}"
TARGET_TASKS_PER_S = 1_000  # on PostgreSQL
TARGET_GAP_P50_MS = 50.0

# Reference figures from /work/shared/BENCHMARKING.md (measured elsewhere, 2026-11-23; NOT in this run).
REFERENCE = [
    ("Celery 5.7, RabbitMQ broker, PostgreSQL result backend (SQLAlchemy), one chord per stage whose callback "
     "starts the next stage's chord", "286 tasks/s", "315 tasks/s"),
    ("Celery 5.7, RabbitMQ broker, `rpc://` backend, the client waits for each stage (`group.get()`); no durable "
     "state, not a real fan-in", "809 tasks/s", "773 tasks/s"),
    ("procrastinate 3.10, 2 worker processes x concurrency 4, fan-in by a counter row (the task that reaches 0 "
     "batch-defers the next stage)", "606 tasks/s", "615 tasks/s"),
]


# ---------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=",".join(str(n) for n in DEFAULT_SIZES),
                   help="tasks per stage, comma-separated (default 100,1000,10000)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; each round runs every size on every backend")
    p.add_argument("--backends", default=",".join(BACKENDS), help="sqlite,postgres (alternated in this order)")
    p.add_argument("--write-md", action=argparse.BooleanOptionalAction, default=None,
                   help="update the section in BENCHMARKS.md (default: only for the full default run)")
    p.add_argument("--keep", action="store_true", help="keep SQLite data dirs (and do not drop PostgreSQL dbs)")
    args = p.parse_args(argv)
    args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(args.backends) - set(BACKENDS):
        p.error(f"unknown backend(s) {sorted(unknown)}")
    if args.write_md is None:
        args.write_md = (args.sizes == list(DEFAULT_SIZES) and args.repeat >= 3 and args.backends == list(BACKENDS))
    return args


# ---------------------------------------------------------------- measuring one run


@dataclass
class Run:
    backend: str
    n: int
    round: int
    wall_s: float  # the whole `geomill run` command: start-up, submit, processing, shut-down
    submit_to_finish_s: float  # jobs.created_at -> finished_at
    processing_s: float  # jobs.started_at -> finished_at
    startup_s: float  # jobs.created_at -> started_at (worker processes spawned, job_submitted handled)
    gaps_s: list[float]  # per stage boundary
    gap_plan_s: list[float]  # last finish of stage k -> start_stage of k+1 (signal + read + plan)
    gap_claim_s: list[float]  # start_stage of k+1 -> first claim of k+1 (insert + commit + wake + claim)
    stage1_claim_s: float  # started_at -> first claim of stage 1 (insert N + commit + wake + claim)
    stage_run_s: list[float]  # first claim -> last finish, per stage
    finalize_s: float  # last finish of the last stage -> jobs.finished_at
    apps: int  # distinct executed_by_app
    cpu_s: float  # CPU of the geomill process tree (RUSAGE_CHILDREN delta)
    busy_cores: float  # whole machine, average busy cores during the run (/proc/stat)
    pg: dict[str, float] = field(default_factory=dict)  # deltas (PostgreSQL only)

    @property
    def tasks(self) -> int:
        return STAGES * self.n

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.processing_s


def busy_cpu_seconds() -> float:
    """CPU time spent busy by the whole machine since boot (/proc/stat), in seconds."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


SNAPSHOT: Path | None = None  # a copy of src/ taken at start: every run measures the same code (see snapshot_src)


def snapshot_src() -> tuple[Path, str]:
    """Copy src/ (others edit the tree while this runs) and put the copy first on the path, here and in the
    geomill processes (PYTHONPATH comes before the editable install's .pth entry). Returns (copy, content hash)."""
    global SNAPSHOT
    OUT.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix="src-", dir=OUT)) / "src"
    shutil.copytree(REPO / "src", dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    for f in sorted(p for p in dest.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(dest)).encode() + b"\0" + f.read_bytes())
    SNAPSHOT = dest
    sys.path.insert(0, str(dest))
    return dest, digest.hexdigest()[:12]


def geomill_env(database_url: str | None) -> dict[str, str]:
    """Defaults for every GEOMILL_* setting (none inherited), except the database; the snapshot of src/ first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_")}
    if SNAPSHOT is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(SNAPSHOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    if database_url:
        env["GEOMILL_DATABASE_URL"] = database_url
    return env


def geomill_cmd(n: int, data_dir: Path) -> list[str]:
    exe = Path(sys.executable).with_name("geomill")
    return [str(exe), "run", "fanout", "-p", f"n={n}", "-p", f"stages={STAGES}", "-p", f"tag=bench-{secrets.token_hex(6)}",
            "-w", str(WORKERS), "--data-dir", str(data_dir), "--json"]


# job and per-stage timestamps, epoch seconds, the same for both backends
SQLITE_QUERIES = {
    "job": "SELECT status, created_at, started_at, finished_at FROM jobs WHERE job_id = ?",
    "tasks": """SELECT stage, COUNT(*) AS n, SUM(status = 'completed') AS completed, MAX(attempt) AS max_attempt,
                       MIN(execution_started_at) AS first_start, MAX(finished_at) AS last_finish,
                       COUNT(DISTINCT executed_by_app) AS apps
                FROM tasks WHERE job_id = ? GROUP BY stage ORDER BY stage""",
    "stages": "SELECT stage, created_at, completed_at FROM stages WHERE job_id = ? ORDER BY stage",
    "apps": "SELECT COUNT(DISTINCT executed_by_app) FROM tasks WHERE job_id = ?",
}
_E = "EXTRACT(EPOCH FROM {})::float8"
PG_QUERIES = {
    "job": f"SELECT status, {_E.format('created_at')}, {_E.format('started_at')}, {_E.format('finished_at')} "
           "FROM jobs WHERE job_id = %s",
    "tasks": f"""SELECT stage, COUNT(*) AS n, COUNT(*) FILTER (WHERE status = 'completed') AS completed,
                        MAX(attempt) AS max_attempt, {_E.format('MIN(execution_started_at)')} AS first_start,
                        {_E.format('MAX(finished_at)')} AS last_finish, COUNT(DISTINCT executed_by_app) AS apps
                 FROM tasks WHERE job_id = %s GROUP BY stage ORDER BY stage""",
    "stages": f"SELECT stage, {_E.format('created_at')}, {_E.format('completed_at')} FROM stages "
              "WHERE job_id = %s ORDER BY stage",
    "apps": "SELECT COUNT(DISTINCT executed_by_app) FROM tasks WHERE job_id = %s",
}


def read_timestamps(backend: str, where: str, job_id: str) -> dict[str, Any]:
    if backend == "sqlite":
        con = sqlite3.connect(f"file:{where}?mode=ro", uri=True)
        try:
            out = {k: con.execute(sql, (job_id,)).fetchall() for k, sql in SQLITE_QUERIES.items()}
        finally:
            con.close()
    else:
        import psycopg

        with psycopg.connect(where) as con:
            out = {k: con.execute(sql, (job_id,)).fetchall() for k, sql in PG_QUERIES.items()}
    return out


def derive(backend: str, n: int, rnd: int, wall: float, ts: dict[str, Any], cpu_s: float, busy: float,
           pg: dict[str, float]) -> Run:
    status, created, started, finished = ts["job"][0]
    if status != "completed":
        raise RuntimeError(f"{backend} N={n}: job ended {status}")
    tasks = {r[0]: r for r in ts["tasks"]}
    stages = {r[0]: r for r in ts["stages"]}
    if sorted(tasks) != list(range(1, STAGES + 1)):
        raise RuntimeError(f"{backend} N={n}: stages with tasks {sorted(tasks)}")
    for k, (_, count, completed, max_attempt, *_rest) in tasks.items():
        if count != n or completed != n or max_attempt != 1:
            raise RuntimeError(f"{backend} N={n} stage {k}: {count} tasks, {completed} completed, "
                               f"max attempt {max_attempt} (expected {n}, {n}, 1)")
    first = {k: tasks[k][4] for k in tasks}
    last = {k: tasks[k][5] for k in tasks}
    gaps, plan, claim = [], [], []
    for k in range(1, STAGES):
        planned = stages[k + 1][1]
        gaps.append(first[k + 1] - last[k])
        plan.append(planned - last[k])
        claim.append(first[k + 1] - planned)
    return Run(
        backend=backend, n=n, round=rnd, wall_s=wall, submit_to_finish_s=finished - created,
        processing_s=finished - started, startup_s=started - created, gaps_s=gaps, gap_plan_s=plan,
        gap_claim_s=claim, stage1_claim_s=first[1] - started,
        stage_run_s=[last[k] - first[k] for k in range(1, STAGES + 1)], finalize_s=finished - last[STAGES],
        apps=ts["apps"][0][0], cpu_s=cpu_s, busy_cores=busy, pg=pg,
    )


# PostgreSQL counters around a run
PG_DB_STATS = ("SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS rows_written "
               "FROM pg_stat_database WHERE datname = %s")
PG_OTHER_COMMITS = "SELECT COALESCE(SUM(xact_commit), 0) FROM pg_stat_database WHERE datname <> %s"
PG_WAL_STATS = "SELECT wal_records, wal_bytes, wal_sync, wal_write FROM pg_stat_wal"


def pg_counters(db: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        row = con.execute(PG_DB_STATS, (db,)).fetchone() or (0, 0)
        other = con.execute(PG_OTHER_COMMITS, (db,)).fetchone()[0]
        wal = con.execute(PG_WAL_STATS).fetchone()
    return {"commits": float(row[0] or 0), "rows_written": float(row[1] or 0), "other_db_commits": float(other),
            "wal_records": float(wal[0]), "wal_bytes": float(wal[1]), "wal_sync": float(wal[2]),
            "wal_write": float(wal[3])}


def pg_create_db() -> str:
    import psycopg

    db = f"geomill_bench_{secrets.token_hex(5)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    return db


def pg_drop_db(db: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def run_once(backend: str, n: int, rnd: int, keep: bool) -> Run:
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{backend}-{n}-", dir=OUT))
    data_dir = workdir / "data"
    db = pg_create_db() if backend == "postgres" else None
    url = PG_URL.format(db=db) if db else None
    try:
        # the schema first (as a deployed service has it), so the counters below see only the job's own writes
        exe = Path(sys.executable).with_name("geomill")
        subprocess.run([str(exe), "db", "upgrade", "--data-dir", str(data_dir)], env=geomill_env(url), cwd=workdir,
                       check=True, capture_output=True)
        before = pg_counters(db) if db else {}
        os.sync()
        cpu0, busy0 = children_cpu_seconds(), busy_cpu_seconds()
        t0 = time.perf_counter()
        proc = subprocess.run(geomill_cmd(n, data_dir), env=geomill_env(url), cwd=workdir,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        cpu_s, busy = children_cpu_seconds() - cpu0, (busy_cpu_seconds() - busy0) / wall
        if proc.returncode != 0:
            raise RuntimeError(f"geomill exited {proc.returncode}:\n{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}")
        job_id = json.loads(proc.stdout)["job_id"]
        pg: dict[str, float] = {}
        if db:
            time.sleep(1.0)  # backends flush their statistics as they exit; the WAL writer's come a little later
            after = pg_counters(db)
            pg = {k: after[k] - before.get(k, 0.0) for k in after}
        where = str(data_dir / "geomill.db") if backend == "sqlite" else url
        return derive(backend, n, rnd, wall, read_timestamps(backend, where, job_id), cpu_s, busy, pg)
    finally:
        if db and not keep:
            pg_drop_db(db)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- statistics


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with few samples, p99 is the maximum)."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def med(values: list[float]) -> float:
    return statistics.median(values)


def group(runs: list[Run]) -> dict[tuple[str, int], list[Run]]:
    out: dict[tuple[str, int], list[Run]] = {}
    for r in runs:
        out.setdefault((r.backend, r.n), []).append(r)
    return out


def summary(rs: list[Run]) -> dict[str, Any]:
    gaps = [g for r in rs for g in r.gaps_s]
    s = {
        "runs": len(rs), "processing_s": med([r.processing_s for r in rs]),
        "submit_s": med([r.submit_to_finish_s for r in rs]), "wall_s": med([r.wall_s for r in rs]),
        "tasks_per_s": med([r.tasks_per_s for r in rs]),
        "gap_p50_ms": 1000 * pct(gaps, 50), "gap_p99_ms": 1000 * pct(gaps, 99), "gap_n": len(gaps),
        "gap_plan_ms": 1000 * med([g for r in rs for g in r.gap_plan_s]),
        "gap_claim_ms": 1000 * med([g for r in rs for g in r.gap_claim_s]),
        "stage1_claim_ms": 1000 * med([r.stage1_claim_s for r in rs]),
        "finalize_ms": 1000 * med([r.finalize_s for r in rs]),
        "startup_s": med([r.startup_s for r in rs]),
        "stage_run_s": med([sum(r.stage_run_s) for r in rs]),
        "cpu_s": med([r.cpu_s for r in rs]), "busy_cores": med([r.busy_cores for r in rs]),
        "apps": min(r.apps for r in rs),
    }
    if rs[0].pg:
        per = {k: med([r.pg[k] / r.tasks for r in rs]) for k in rs[0].pg}
        s.update({f"pg_{k}": v for k, v in per.items()})
        s["pg_other_db_commits"] = med([r.pg["other_db_commits"] for r in rs])
    return s


# ---------------------------------------------------------------- report


def results_table(runs: list[Run]) -> list[str]:
    rows = ["| backend | N | runs | processing, started → finished (s) | submit → finished (s) | wall incl. "
            "start-up (s) | **tasks/s** (3N / processing) | stage gap p50 / p99 (ms) [samples] | gap: signal + "
            "plan / insert + wake + claim (ms) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for (backend, n), rs in group(runs).items():
        s = summary(rs)
        rows.append(f"| {backend} | {n:,} | {s['runs']} | {s['processing_s']:.3f} | {s['submit_s']:.3f} "
                    f"| {s['wall_s']:.2f} | **{s['tasks_per_s']:,.0f}** | {s['gap_p50_ms']:.0f} / "
                    f"{s['gap_p99_ms']:.0f} [{s['gap_n']}] | {s['gap_plan_ms']:.0f} / {s['gap_claim_ms']:.0f} |")
    return rows


def detail_table(runs: list[Run]) -> list[str]:
    rows = ["| backend | N | start-up: submit → started (s) | stage 1: started → first claim (ms) | 3 stages' "
            "run time, first claim → last finish (s) | finalize (ms) | geomill CPU (s) | machine busy cores "
            "| worker processes seen |",
            "|---|---|---|---|---|---|---|---|---|"]
    for (backend, n), rs in group(runs).items():
        s = summary(rs)
        rows.append(f"| {backend} | {n:,} | {s['startup_s']:.2f} | {s['stage1_claim_ms']:.0f} "
                    f"| {s['stage_run_s']:.3f} | {s['finalize_ms']:.0f} | {s['cpu_s']:.1f} "
                    f"| {s['busy_cores']:.2f} | {s['apps']} |")
    return rows


def pg_table(runs: list[Run]) -> list[str]:
    rows = ["| N | commits / task | rows written / task (ins+upd+del) | WAL records / task | WAL bytes / task "
            "| WAL fsyncs / task | commits in OTHER databases during the run |", "|---|---|---|---|---|---|---|"]
    for (backend, n), rs in group(runs).items():
        if backend != "postgres":
            continue
        s = summary(rs)
        rows.append(f"| {n:,} | {s['pg_commits']:.2f} | {s['pg_rows_written']:.2f} | {s['pg_wal_records']:.2f} "
                    f"| {s['pg_wal_bytes']:.0f} | {s['pg_wal_sync']:.2f} | {s['pg_other_db_commits']:.0f} |")
    return rows


def raw_runs(runs: list[Run]) -> list[str]:
    lines = []
    for r in runs:
        gaps = ", ".join(f"{1000 * g:.0f}" for g in r.gaps_s)
        lines.append(f"- round {r.round} {r.backend} N={r.n:,}: processing {r.processing_s:.3f} s "
                     f"({r.tasks_per_s:,.0f} tasks/s), submit→finished {r.submit_to_finish_s:.3f} s, wall "
                     f"{r.wall_s:.2f} s, gaps [{gaps}] ms, busy cores {r.busy_cores:.2f}")
    return lines


def targets(runs: list[Run]) -> list[str]:
    lines = []
    for (backend, n), rs in group(runs).items():
        if backend != "postgres":
            continue
        s = summary(rs)
        ok_tp = s["tasks_per_s"] >= TARGET_TASKS_PER_S
        ok_gap = s["gap_p50_ms"] <= TARGET_GAP_P50_MS
        lines.append(f"- PostgreSQL, N = {n:,}: {s['tasks_per_s']:,.0f} tasks/s (target ≥ {TARGET_TASKS_PER_S:,}) "
                     f"— **{'met' if ok_tp else 'NOT met'}**; stage gap p50 {s['gap_p50_ms']:.0f} ms (target ≤ "
                     f"{TARGET_GAP_P50_MS:.0f} ms, {s['gap_n']} samples) — **{'met' if ok_gap else 'NOT met'}**")
    for (backend, n), rs in group(runs).items():
        if backend == "sqlite":
            s = summary(rs)
            lines.append(f"- (SQLite, N = {n:,}, no target: {s['tasks_per_s']:,.0f} tasks/s, stage gap p50 "
                         f"{s['gap_p50_ms']:.0f} ms)")
    return lines


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {"nproc": str(os.cpu_count()), "memory": f"{mem_kb / 2**20:.1f} GiB", "cpu": cpu,
            "kernel": platform.release()}


def pg_server() -> dict[str, str]:
    import psycopg

    names = ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "commit_delay", "shared_buffers",
             "full_page_writes", "wal_level")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as con:
        return {name: con.execute(f"SHOW {name}").fetchone()[0] for name in names}


SRC_HASH = "not snapshotted"


def versions(backends: list[str]) -> dict[str, str]:
    from importlib.metadata import version

    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    v = {"geomill": f"{version('geomill')} (git {commit}; src/ copied at start, content sha256 {SRC_HASH})",
         "Python": platform.python_version(), "SQLite": sqlite3.sqlite_version}
    if "postgres" in backends:
        v["PostgreSQL server"] = pg_server()["server_version"]
        v["psycopg"] = version("psycopg")
        v["psycopg-pool"] = version("psycopg-pool")
    return v


def geomill_settings() -> dict[str, Any]:
    """The defaults every run used (no GEOMILL_* variable is passed on except the database URL)."""
    from geomill.config import Settings
    from geomill.worker import loop

    env = geomill_env(None)
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        s = Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"GEOMILL_PREFETCH": s.prefetch, "GEOMILL_POLL_INTERVAL_SECONDS": s.poll_interval_seconds,
            "GEOMILL_DB_POOL_SIZE": s.db_pool_size, "GEOMILL_SQLITE_SYNCHRONOUS": s.sqlite_synchronous,
            "GEOMILL_LEASE_SECONDS": s.lease_seconds, "GEOMILL_JANITOR_INTERVAL_SECONDS": s.janitor_interval_seconds,
            "EVENT_POLL (worker/loop.py, while busy)": loop.EVENT_POLL, "SHORT_TASK": loop.SHORT_TASK}


def reproduce_command(args: argparse.Namespace) -> str:
    cmd = "cd /work/main && .venv/bin/python bench/orchestration.py"
    if args.sizes != list(DEFAULT_SIZES):
        cmd += " --sizes " + ",".join(str(n) for n in args.sizes)
    if args.repeat != 3:
        cmd += f" --repeat {args.repeat}"
    if args.backends != list(BACKENDS):
        cmd += " --backends " + ",".join(args.backends)
    return cmd


def render_section(args: argparse.Namespace, runs: list[Run], started: dt.datetime, duration_s: float) -> str:
    m, v = machine(), versions(args.backends)
    settings = geomill_settings()
    pg = pg_server() if "postgres" in args.backends else {}
    lines = [
        SECTION, "",
        f"Measured {started:%Y-%m-%d %H:%M %Z} by `bench/orchestration.py` ({duration_s / 60:.0f} min): "
        f"{args.repeat} round(s); in each round every N runs on "
        + " then ".join(args.backends) + " back to back (A B A B …); medians over rounds. This machine drifts "
        "15–20% between passes: compare only figures from one run.", "",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}; PostgreSQL runs on "
        "the same machine and shares its 2 cores with geomill.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Workload: `geomill run fanout -p n=N -p stages={STAGES} -p tag=<random> -w {WORKERS} --json`: one job "
        f"of {STAGES} stages × N no-op `demo.work` tasks (sleep_s 0); stage k+1 is planned when all N tasks of stage "
        f"k are done; {WORKERS} worker processes (standalone role: both run tasks and handle orchestration events). "
        "SQLite: a fresh data dir per run. PostgreSQL: a fresh database `geomill_bench_<random>` per run on "
        "127.0.0.1:5432 (dropped afterwards). Every run is checked: job completed, 3N tasks completed, every task "
        "ran exactly once (max attempt 1).",
        "- geomill settings (defaults): " + ", ".join(f"{k}={val}" for k, val in settings.items())
        + "; SQLite in WAL mode with synchronous=NORMAL; PostgreSQL dispatch by LISTEN/NOTIFY.",
    ]
    if pg:
        lines.append("- PostgreSQL server settings: " + ", ".join(f"{k}={val}" for k, val in pg.items()
                                                               if k != "server_version")
                     + " (durable commits: every commit waits for its WAL fsync).")
    lines += [
        "- Figures: *processing* = jobs.started_at → finished_at (from the first stage's compare-and-set to the "
        "finalizer; the main figure); *submit → finished* = jobs.created_at → finished_at (adds spawning the 2 "
        "worker processes); *wall* = the whole `geomill run` command (adds CLI start-up and shut-down; the schema "
        "is created just before by `geomill db upgrade`, not timed). "
        "tasks/s = 3N / processing. *Stage gap* = min(tasks.execution_started_at of stage k+1) − max(tasks."
        "finished_at of stage k), 2 boundaries per run; p50/p99 are nearest-rank over all boundaries of all runs "
        "of that row (the number of samples is in brackets: with so few, p99 is the maximum). It is split at "
        "stages.created_at of stage k+1 (taken when start_stage begins, after planning) into *signal + plan* "
        "(stage_complete event → orchestrator wakes → reads the previous stages' tasks → plans and validates N "
        "tasks) and *insert + wake + claim* (inserts N rows, commits, wakes workers, first claim). Timestamps are "
        "read from the database (SQLite: epoch REAL written by the worker; PostgreSQL: timestamptz `now()`, i.e. "
        "the start of the writing transaction).", "",
        *results_table(runs), "",
        "Where the time goes (medians):", "",
        *detail_table(runs), "",
    ]
    if pg:
        lines += [
            "PostgreSQL writes per task (median over runs of the counter delta around the run ÷ 3N; rows and "
            "commits are the bench database's own from pg_stat_database (the schema was created before the "
            "run by `geomill db upgrade`, so they are the job's own, plus a handful for the janitor and start-up); "
            "WAL counters come from pg_stat_wal and are server-wide, so commits in other databases during the run "
            "— shown in the last column — inflate them):", "",
            *pg_table(runs), "",
        ]
    lines += [
        "Runs:", *raw_runs(runs), "",
        "Targets (issue 3):", *targets(runs), "",
        "Context only — NOT measured in this run: reference figures from `/work/shared/BENCHMARKING.md` "
        "(same workload, 2 worker processes, a 2-core machine like this one with local PostgreSQL 15 and RabbitMQ "
        "3.10, measured 2026-11-23 elsewhere; this machine drifts 15–20% between passes, so treat any ratio as "
        "rough):", "",
        "| system and configuration (reference, not measured here) | N = 1,000 | N = 10,000 |", "|---|---|---|",
        *[f"| {name} | {a} | {b} |" for name, a, b in REFERENCE], "",
        "Reproduce:", "", "```", reproduce_command(args), "```", "",
    ]
    return "\n".join(lines)


def update_benchmarks_md(section: str) -> None:
    """Replace our section (up to the next `## ` heading) or append it; other sections are left as they are."""
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    BENCHMARKS_MD.write_text(text)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    global SRC_HASH
    args = parse_args(argv)
    started = dt.datetime.now().astimezone()
    snapshot, SRC_HASH = snapshot_src()
    where = subprocess.run([sys.executable, "-c", "import geomill; print(geomill.__file__)"], env=geomill_env(None),
                           capture_output=True, text=True, check=True).stdout.strip()
    if not where.startswith(str(snapshot)):
        sys.exit(f"geomill imports from {where}, not from the snapshot {snapshot}")
    print(f"measuring the copy of src/ at {snapshot} (sha256 {SRC_HASH})")
    t0 = time.monotonic()
    print("versions:", versions(args.backends))
    print("settings:", geomill_settings())
    runs: list[Run] = []
    for rnd in range(1, args.repeat + 1):
        for n in args.sizes:
            for backend in args.backends:
                r = run_once(backend, n, rnd, args.keep)
                runs.append(r)
                gaps = ", ".join(f"{1000 * g:.0f}" for g in r.gaps_s)
                print(f"  round {rnd} {backend:8s} N={n:>6,}: processing {r.processing_s:7.3f} s "
                      f"{r.tasks_per_s:7,.0f} tasks/s  submit→fin {r.submit_to_finish_s:7.3f} s  wall "
                      f"{r.wall_s:6.2f} s  gaps [{gaps}] ms (plan "
                      f"{', '.join(f'{1000 * g:.0f}' for g in r.gap_plan_s)})  busy {r.busy_cores:.2f} "
                      + (f" commits/task {r.pg['commits'] / r.tasks:.2f} wal_sync/task "
                         f"{r.pg['wal_sync'] / r.tasks:.2f}" if r.pg else ""), flush=True)
    print()
    for block in (results_table(runs), detail_table(runs),
                  pg_table(runs) if "postgres" in args.backends else [], targets(runs)):
        print("\n".join(block) + "\n")
    if args.write_md:
        update_benchmarks_md(render_section(args, runs, started, time.monotonic() - t0))
        print(f"updated {BENCHMARKS_MD}")
    if not args.keep:
        shutil.rmtree(snapshot.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
