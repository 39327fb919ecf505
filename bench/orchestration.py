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

src/ is copied at start and every run imports that copy (others edit the tree meanwhile). Before each run the
script waits for a quiet machine, and re-runs (up to 3 times) a run during which other work used > 0.3 cores.
`--components` (default) then times the pieces of one stage advance at the largest N in one process. Results
are saved to bench/out/orchestration/results-*.json; `--render-from FILE [--write-md]` re-renders a report.
"""

from __future__ import annotations

import argparse
import dataclasses
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

import common  # noqa: E402  (bench/ is on sys.path when a script runs)
from common import busy_cpu_seconds, pg_drop_db, update_section  # noqa: E402

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
    p.add_argument("--components", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the pieces of one stage advance at the largest N, in one process (default: yes)")
    p.add_argument("--render-from", type=Path, metavar="JSON",
                   help="no runs: print (and with --write-md, write) the report of a saved results file")
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
    quiet_wait_s: float = 0.0  # waited before the run for the machine to calm down
    pg_cpu_s: float = 0.0  # CPU of the PostgreSQL server during the run (all its processes)
    discarded: int = 0  # earlier attempts of this run thrown away because other work loaded the machine
    pg: dict[str, float] = field(default_factory=dict)  # deltas (PostgreSQL only)

    @property
    def others_cores(self) -> float:
        """Busy cores used neither by geomill's processes nor by the PostgreSQL server: other work on the machine."""
        return max(0.0, self.busy_cores - (self.cpu_s + self.pg_cpu_s) / self.wall_s)

    @property
    def tasks(self) -> int:
        return STAGES * self.n

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.processing_s


def postgres_cpu_seconds() -> float:
    """CPU used by the local PostgreSQL server so far: its live processes, plus the postmaster's reaped children
    (the backends of connections that have closed)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        if comm != "postgres" and not comm.startswith("postgres:"):
            continue
        f = text[text.rindex(")") + 2:].split()
        total += int(f[11]) + int(f[12])  # utime, stime
        if Path(f"/proc/{f[1]}/comm").read_text().strip() != "postgres":  # the postmaster: add reaped children
            total += int(f[13]) + int(f[14])
    return total / tick


QUIET_CORES = 0.25  # before each run, wait until the machine is this idle (busy cores over 1 s) ...
QUIET_MAX_WAIT = 120.0  # ... for at most this long
NOISY_CORES = 0.3  # a run during which other work used more than this is run again ...
MAX_DISCARDS = 3  # ... at most this many times (the last attempt is kept and its load shown)


def wait_quiet() -> float:
    """Wait (up to QUIET_MAX_WAIT) until others' load is below QUIET_CORES; returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < QUIET_MAX_WAIT:
        b0 = busy_cpu_seconds()
        time.sleep(1.0)
        if busy_cpu_seconds() - b0 < QUIET_CORES:
            break
    return time.monotonic() - t0


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
    env["GEOMILL_DRILL_JOBS"] = "true"  # fanout is a drill job type
    if SNAPSHOT is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(SNAPSHOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    if database_url:
        env["GEOMILL_DATABASE_URL"] = database_url
    return env


def geomill_cmd(n: int, data_dir: Path) -> list[str]:
    exe = Path(sys.executable).with_name("geomill")
    tag = f"bench-{secrets.token_hex(6)}"  # not all digits: -p values are parsed as JSON
    return [str(exe), "run", "fanout", "-p", f"n={n}", "-p", f"stages={STAGES}", "-p", f"tag={tag}",
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
    return common.pg_create_db("geomill_bench")


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
        os.sync()
        waited = wait_quiet()
        before = pg_counters(db) if db else {}
        cpu0, busy0, pg0 = children_cpu_seconds(), busy_cpu_seconds(), postgres_cpu_seconds()
        t0 = time.perf_counter()
        proc = subprocess.run(geomill_cmd(n, data_dir), env=geomill_env(url), cwd=workdir,
                              capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        cpu_s, busy = children_cpu_seconds() - cpu0, (busy_cpu_seconds() - busy0) / wall
        pg_end = postgres_cpu_seconds()
        if proc.returncode != 0:
            raise RuntimeError(f"geomill exited {proc.returncode}:\n{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}")
        job_id = json.loads(proc.stdout)["job_id"]
        pg: dict[str, float] = {}
        if db:
            time.sleep(1.0)  # backends flush their statistics as they exit; the WAL writer's come a little later
            pg_end = postgres_cpu_seconds()  # the run's backends have exited and been reaped by now
            after = pg_counters(db)
            pg = {k: after[k] - before.get(k, 0.0) for k in after}
        where = str(data_dir / "geomill.db") if backend == "sqlite" else url
        run = derive(backend, n, rnd, wall, read_timestamps(backend, where, job_id), cpu_s, busy, pg)
        run.quiet_wait_s, run.pg_cpu_s = waited, pg_end - pg0
        return run
    finally:
        if db and not keep:
            pg_drop_db(db)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- components of a stage advance


def timed_ms(fn, reps: int = 3) -> tuple[float, Any]:
    xs, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        xs.append(time.perf_counter() - t0)
    return 1000 * statistics.median(xs), out


READ_STAGE = "read one finished stage's outcomes (Orchestrator.stage_results)"
PLAN = "plan: N TaskSpec (fanout's plan)"
VALIDATE = "validate + task ids + routing of N tasks (Orchestrator._new_tasks)"
INSERT = "start_stage: insert N task rows, one transaction (store.start_stage)"
HEARTBEAT = "per task, not per stage: start + stop of the task's heartbeat thread (µs)"
SCRATCH = "  insert N rows into a scratch copy of tasks"
SCRATCH_MANY = f"{SCRATCH}: executemany INSERT (as start_stage)"
SCRATCH_COPY = f"{SCRATCH}: COPY FROM STDIN"


def components(backend: str, n: int, keep: bool) -> dict[str, float]:
    """One process, no other load from geomill: the pieces a stage advance is made of, for one stage of N tasks.
    Uses geomill's orchestrator and store directly (the snapshot of src/); stage 1 is marked done by SQL. A piece
    that this version of geomill cannot be timed by (an internal renamed) is left out, with a note."""
    from geomill.config import Settings
    from geomill.domain import FailurePolicy
    from geomill.runtime import Runtime

    wait_quiet()
    workdir = Path(tempfile.mkdtemp(prefix=f"components-{backend}-", dir=OUT))
    db = pg_create_db() if backend == "postgres" else None
    url = PG_URL.format(db=db) if db else None
    out: dict[str, float] = {}

    def piece(label: str, fn: Any, reps: int = 3) -> Any:
        try:
            out[label], value = timed_ms(fn, reps)
            return value
        except Exception as exc:  # noqa: BLE001 - report and go on: these are diagnostics
            print(f"  (components, {backend}: cannot time {label.strip()!r}: {type(exc).__name__}: {exc})")
            return None

    try:
        rt = Runtime.open(Settings(data_dir=workdir / "data", database_url=url, log_level="ERROR"))
        orch, store = rt.orchestrator, rt.store
        jt = rt.registry.job_type("fanout")
        job = orch.submit("fanout", {"n": n, "stages": STAGES, "tag": "components"}).job
        params = jt.params_model.model_validate(job.params)
        plan = piece(PLAN, lambda: list(jt.stages[0].plan(params, [])))  # plans may be generators: consume it
        tasks = piece(VALIDATE, lambda: orch._new_tasks(job.job_id, 1, plan, set()))
        piece(INSERT, lambda: store.start_stage(job.job_id, 1, "work-1", FailurePolicy.FAIL_JOB, tasks), reps=1)
        finish = ("UPDATE tasks SET status = 'completed', attempt = 1, finished_at = {now}, result = {obj}('key', "
                  "task_key, 'attempt', 1, 'pid', 1) WHERE job_id = {p}; UPDATE stages SET remaining = 0, completed_at "
                  "= {now} WHERE job_id = {p}")
        if db:
            import psycopg

            con: Any = psycopg.connect(url, autocommit=True)
            for stmt in finish.format(now="now()", obj="jsonb_build_object", p="%s").split("; "):
                con.execute(stmt, (job.job_id,))
        else:
            con = sqlite3.connect(str(workdir / "data" / "geomill.db"), isolation_level=None)
            for stmt in finish.format(now=time.time(), obj="json_object", p="?").split("; "):
                con.execute(stmt, (job.job_id,))
        piece(READ_STAGE, lambda: orch.stage_results(job.job_id, 1, jt))
        try:
            out[HEARTBEAT] = heartbeat_us(tasks)
        except Exception as exc:  # noqa: BLE001
            print(f"  (components, {backend}: cannot time the heartbeat: {type(exc).__name__}: {exc})")
        if db and tasks:
            out.update(pg_insert_alternatives(con, tasks, job.job_id))
        con.close()
        rt.close()
    finally:
        if db and not keep:
            pg_drop_db(db)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


def heartbeat_us(tasks: list[Any], reps: int = 2000) -> float:
    """What WorkerLoop pays per task for its Heartbeat (a new thread started and joined), store never called."""
    from geomill.worker.heartbeat import Heartbeat

    class _T:
        task_id, job_id, attempt = tasks[0].task_id, "job", 1

    t0 = time.perf_counter()
    for _ in range(reps):
        with Heartbeat(None, _T, 60.0, 20.0):  # type: ignore[arg-type]
            pass
    return 1e6 * (time.perf_counter() - t0) / reps


def pg_insert_alternatives(con: Any, tasks: list[Any], job_id: str) -> dict[str, float]:
    """Inserting N task rows into a scratch copy of `tasks` (same indexes, no foreign key): row by row in one
    transaction (what start_stage does, minus the FK and correlation look-up) against COPY."""
    from psycopg.types.json import Jsonb

    cols = "task_id, job_id, stage, task_key, task_type, params, max_attempts, target_queue, timeout_seconds, status"
    rows = [(t.task_id, job_id, 2, t.task_key, t.task_type, Jsonb(t.params), t.max_attempts, t.target_queue,
             float(t.timeout_seconds), "queued") for t in tasks]
    con.execute("CREATE TABLE scratch_tasks (LIKE tasks INCLUDING ALL)")

    def executemany() -> None:
        with con.transaction():
            con.cursor().executemany(f"INSERT INTO scratch_tasks ({cols}) VALUES ({', '.join(['%s'] * 10)})", rows)
        con.execute("TRUNCATE scratch_tasks")

    def copy() -> None:
        with con.transaction():
            with con.cursor().copy(f"COPY scratch_tasks ({cols}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
        con.execute("TRUNCATE scratch_tasks")

    return {SCRATCH_MANY: timed_ms(executemany)[0], SCRATCH_COPY: timed_ms(copy)[0]}


def components_table(comp: dict[str, dict[str, float]], n: int) -> list[str]:
    backends = list(comp)
    rows = [f"| piece of a stage advance, one stage of N = {n:,} tasks (ms, median of 3, unless marked) | "
            + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]
    keys = list(dict.fromkeys(k for b in backends for k in comp[b]))
    for k in keys:
        rows.append(f"| {k} | " + " | ".join(f"{comp[b][k]:.1f}" if k in comp[b] else "–" for b in backends) + " |")
    return rows


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
        "gap_p50_ms": 1000 * med(gaps), "gap_p99_ms": 1000 * pct(gaps, 99), "gap_n": len(gaps),
        "gap_plan_ms": 1000 * med([g for r in rs for g in r.gap_plan_s]),
        "gap_claim_ms": 1000 * med([g for r in rs for g in r.gap_claim_s]),
        "stage1_claim_ms": 1000 * med([r.stage1_claim_s for r in rs]),
        "finalize_ms": 1000 * med([r.finalize_s for r in rs]),
        "startup_s": med([r.startup_s for r in rs]),
        "stage_run_s": med([sum(r.stage_run_s) for r in rs]),
        "cpu_s": med([r.cpu_s for r in rs]), "busy_cores": med([r.busy_cores for r in rs]),
        "others_cores": med([r.others_cores for r in rs]),
        "pg_cores": med([r.pg_cpu_s / r.wall_s for r in rs]), "discarded": sum(r.discarded for r in rs),
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
            "| of which PostgreSQL server | of which other work | worker processes seen |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (backend, n), rs in group(runs).items():
        s = summary(rs)
        rows.append(f"| {backend} | {n:,} | {s['startup_s']:.2f} | {s['stage1_claim_ms']:.0f} "
                    f"| {s['stage_run_s']:.3f} | {s['finalize_ms']:.0f} | {s['cpu_s']:.1f} "
                    f"| {s['busy_cores']:.2f} | {s['pg_cores']:.2f} | {s['others_cores']:.2f} | {s['apps']} |")
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
                     f"{r.wall_s:.2f} s, gaps [{gaps}] ms, busy cores {r.busy_cores:.2f} (PostgreSQL "
                     f"{r.pg_cpu_s / r.wall_s:.2f}, other work {r.others_cores:.2f}; waited {r.quiet_wait_s:.0f} s for "
                     f"a quiet machine; {r.discarded} noisy attempt(s) discarded)")
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


def analysis(runs: list[Run], comp: dict[str, dict[str, float]], n: int) -> list[str]:
    """What the stage gap and the finalizer are made of at the largest N, from this run's figures; then the changes
    the figures point to."""
    lines = [f"What dominates at N = {n:,} (this run):"]
    groups = group(runs)
    for backend, c in comp.items():
        rs = groups.get((backend, n))
        if not rs:
            continue
        s = summary(rs)
        plan = c.get(PLAN, math.nan) + c.get(VALIDATE, math.nan)
        lines.append(
            f"- {backend}: stage gap p50 {s['gap_p50_ms']:.0f} ms = signal + plan {s['gap_plan_ms']:.0f} ms + "
            f"insert + wake + claim {s['gap_claim_ms']:.0f} ms (medians over boundaries). Alone in one process: "
            f"planning and validating the N tasks {plan:.0f} ms, inserting them in one transaction "
            f"(the engine chunks them) {c.get(INSERT, math.nan):.0f} ms; reading one finished stage's outcomes "
            f"{c.get(READ_STAGE, math.nan):.0f} ms "
            f"(paid only by a plan or finalizer that reads results; fanout's finalizer reads the {STAGES} counter rows, "
            f"and its finalize step, last task → job finished, took {s['finalize_ms']:.0f} ms). Under "
            "the run's load (2 workers and, for PostgreSQL, the server on 2 cores) each piece takes longer.")
    many, copy = comp.get("postgres", {}).get(SCRATCH_MANY), comp.get("postgres", {}).get(SCRATCH_COPY)
    lines += ["", "How the engine keeps these low (see `engine/orchestrator.py`, `worker/loop.py`):"]
    if many and copy:
        lines.append(
            f"- A stage's tasks go in by COPY (PostgreSQL; {copy:.0f} ms against {many:.0f} ms for row-by-row "
            f"executemany of {n:,} rows into a scratch copy of `tasks`), and a big plan in chunks: the first "
            "256 tasks with the stage row, the rest 2,000 per transaction while workers already run the first. The "
            "plan is only peeked at (one spec) before the first commit, so the gap does not grow with N.")
    lines += [
        "- Finalizers and failure checks read counts from the stage counter rows, not every task's outcome.",
        "- A worker with short prefetched tasks records their successes in one statement (`complete_tasks`: one "
        "commit, one counter decrement per stage), at most 50 ms after the first of them finished; commits and "
        "WAL fsyncs per task above show it. The worker whose batch emitted stage_complete plans the next stage "
        "at once, without waiting for a wake-up.",
        "- Not done: one heartbeat thread is started and joined per task (timed above); a long-lived heartbeat "
        "thread per worker process would save that too.",
    ]
    return lines


def collect_meta(args: argparse.Namespace, started: dt.datetime) -> dict[str, Any]:
    """Everything the report states about the set-up, captured when the run starts (the tree may change later)."""
    return {"started": started.isoformat(), "machine": machine(), "versions": versions(args.backends),
            "settings": geomill_settings(), "pg": pg_server() if "postgres" in args.backends else {},
            "sizes": args.sizes, "repeat": args.repeat, "backends": args.backends}


def render_section(args: argparse.Namespace, runs: list[Run], comp: dict[str, dict[str, float]],
                   meta: dict[str, Any], duration_s: float) -> str:
    m, v, settings, pg = meta["machine"], meta["versions"], meta["settings"], meta["pg"]
    started = dt.datetime.fromisoformat(meta["started"])
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
        f"ran exactly once (max attempt 1). Before each run the script waits (up to {QUIET_MAX_WAIT:.0f} s) until "
        f"the machine is below {QUIET_CORES} busy cores, and a run during which other work (neither geomill's "
        f"processes nor the PostgreSQL server) used more than {NOISY_CORES} cores is discarded and run again (at "
        f"most {MAX_DISCARDS} times): other sessions run test suites on this machine. Busy cores, the server's and "
        "other work's share are listed per row and per run below.",
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
        "finished_at of stage k), 2 boundaries per run; p50/p99 over all boundaries of all runs of that row "
        "(p50 = the median; p99 nearest-rank, so with so few samples — in brackets — it is the maximum). It is "
        "split at stages.created_at of stage k+1 (taken when start_stage begins, after planning) into *signal + plan* "
        "(stage_complete event → orchestrator wakes → reads what it needs of the previous stages → plans and "
        "validates N tasks) and *insert + wake + claim* (inserts N rows, commits, wakes workers, first claim). Timestamps are "
        "read from the database (SQLite: epoch REAL written by the worker; PostgreSQL: timestamptz `now()`, i.e. "
        "the start of the writing transaction, so a claim of 8 tasks stamps all 8 with the claim's time).", "",
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
    if comp:
        lines += [
            "What a stage advance is made of, timed piece by piece in one process with no other geomill load "
            f"(`--components`, after the runs; stage 1 of a fresh job with N = {max(args.sizes):,}, marked done by "
            "SQL). At the boundary k → k+1 the orchestrator reads the results of ALL k previous stages, then plans, "
            "validates and inserts stage k+1 in one transaction; workers can claim only after that commit:", "",
            *components_table(comp, max(args.sizes)), "",
            *analysis(runs, comp, max(args.sizes)), "",
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
    update_section(SECTION, section)


# ---------------------------------------------------------------- main


def save_results(path: Path, runs: list[Run], comp: dict[str, dict[str, float]], meta: dict[str, Any],
                 duration_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "duration_s": duration_s, "components": comp,
                                "runs": [dataclasses.asdict(r) for r in runs]}, indent=1))


def load_results(path: Path) -> tuple[list[Run], dict[str, dict[str, float]], dict[str, Any], float]:
    doc = json.loads(path.read_text())
    return [Run(**r) for r in doc["runs"]], doc["components"], doc["meta"], doc["duration_s"]


def report(args: argparse.Namespace, runs: list[Run], comp: dict[str, dict[str, float]], meta: dict[str, Any],
           duration_s: float) -> None:
    print()
    for block in (results_table(runs), detail_table(runs), components_table(comp, max(args.sizes)) if comp else [],
                  pg_table(runs) if "postgres" in args.backends else [], targets(runs),
                  analysis(runs, comp, max(args.sizes)) if comp else []):
        print("\n".join(block) + "\n")
    if args.write_md:
        update_benchmarks_md(render_section(args, runs, comp, meta, duration_s))
        print(f"updated {BENCHMARKS_MD}")


def main(argv: list[str] | None = None) -> int:
    global SRC_HASH
    args = parse_args(argv)
    if args.render_from:
        runs, comp, meta, duration_s = load_results(args.render_from)
        args.sizes, args.repeat, args.backends = meta["sizes"], meta["repeat"], meta["backends"]
        report(args, runs, comp, meta, duration_s)
        return 0
    started = dt.datetime.now().astimezone()
    snapshot, SRC_HASH = snapshot_src()
    where = subprocess.run([sys.executable, "-c", "import geomill; print(geomill.__file__)"], env=geomill_env(None),
                           capture_output=True, text=True, check=True).stdout.strip()
    if not where.startswith(str(snapshot)):
        sys.exit(f"geomill imports from {where}, not from the snapshot {snapshot}")
    print(f"measuring the copy of src/ at {snapshot} (sha256 {SRC_HASH})")
    t0 = time.monotonic()
    meta = collect_meta(args, started)
    print("versions:", meta["versions"])
    print("settings:", meta["settings"])
    runs: list[Run] = []
    for rnd in range(1, args.repeat + 1):
        for n in args.sizes:
            for backend in args.backends:
                for attempt in range(MAX_DISCARDS + 1):
                    r = run_once(backend, n, rnd, args.keep)
                    if r.others_cores <= NOISY_CORES or attempt == MAX_DISCARDS:
                        break
                    print(f"  (round {rnd} {backend} N={n:,}: other work used {r.others_cores:.2f} cores during the "
                          "run; discarded, running it again)", flush=True)
                r.discarded = attempt
                runs.append(r)
                gaps = ", ".join(f"{1000 * g:.0f}" for g in r.gaps_s)
                print(f"  round {rnd} {backend:8s} N={n:>6,}: processing {r.processing_s:7.3f} s "
                      f"{r.tasks_per_s:7,.0f} tasks/s  submit→fin {r.submit_to_finish_s:7.3f} s  wall "
                      f"{r.wall_s:6.2f} s  gaps [{gaps}] ms (plan "
                      f"{', '.join(f'{1000 * g:.0f}' for g in r.gap_plan_s)})  busy {r.busy_cores:.2f} "
                      f"(pg {r.pg_cpu_s / r.wall_s:.2f}, other {r.others_cores:.2f}, waited {r.quiet_wait_s:.0f} s)"
                      + (f" commits/task {r.pg['commits'] / r.tasks:.2f} wal_sync/task "
                         f"{r.pg['wal_sync'] / r.tasks:.2f}" if r.pg else ""), flush=True)
    comp: dict[str, dict[str, float]] = {}
    if args.components:
        for backend in args.backends:
            comp[backend] = components(backend, max(args.sizes), args.keep)
    duration_s = time.monotonic() - t0
    saved = OUT / f"results-{started:%Y%m%d-%H%M%S}.json"
    save_results(saved, runs, comp, meta, duration_s)
    print(f"results saved to {saved} (re-render with --render-from)")
    report(args, runs, comp, meta, duration_s)
    if not args.keep:
        shutil.rmtree(snapshot.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
