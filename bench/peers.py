#!/usr/bin/env python
"""Benchmark: geomill against the tools users would pick instead, in one run, A B A B ...

Three parts (``--parts``, all by default), each system in turn within a round, 5 rounds (``--repeat``), medians:

- throughput: 3 stages x N no-op tasks (``--sizes``); stage k+1 starts when all N tasks of stage k are done; 2 worker
  processes.
- enqueue: the time to get ``--enqueue-n`` (100,000) tasks durably enqueued, with no worker running them.
- recovery: ``--recovery-tasks`` tasks of ``--recovery-task-s`` s on 2 worker processes, each its own process group;
  the first one's group is SIGKILLed while it runs a task; time until the tasks are given back, restarted and all
  done, and how many ran twice or were lost.

    python -m venv bench/.venv-peers && bench/.venv-peers/bin/pip install -r bench/requirements-peers.txt  # once
    .venv/bin/python bench/peers.py --sizes 1000 10000 --repeat 5 --enqueue-n 100000   # the issue's benchmark
    .venv/bin/python bench/peers.py --parts enqueue recovery --enqueue-n 10000 --repeat 1 --no-write-md  # smoke
    .venv/bin/python bench/peers.py --render-only bench/out/peers/runs.json           # a cut-short run's section

A run of some parts rewrites only their subsections of the BENCHMARKS.md section; the others are kept.

Systems (each run gets a fresh PostgreSQL database on 127.0.0.1:5432 and, where RabbitMQ is used, a fresh vhost;
both deleted afterwards):

- geomill-pg:     ``geomill run fanout -p n=N -p stages=3 -p tag=<rand> -w 2`` on PostgreSQL dispatch.
- geomill-rabbit: the same with GEOMILL_BROKER_URL (RabbitMQ dispatch).
  processing = jobs.started_at -> jobs.finished_at from ``geomill status JOB --json``; ``run`` spawns its worker
  processes after submitting, so wall time also includes their start-up and shut-down.
- celery:         Celery 5 + RabbitMQ broker + PostgreSQL result backend (SQLAlchemy, psycopg 3); one chord per
  stage, whose callback launches the next stage's chord; ``celery worker --pool prefork --concurrency 2``.
- procrastinate:  procrastinate 3 on PostgreSQL, 2 worker processes x concurrency 4; fan-in by a counter row
  (``UPDATE ... SET remaining = remaining - 1 ... RETURNING``); the task that brings it to 0 batch-defers the next
  stage.
  Peers: workers are started and ready before the clock starts; processing = the driver's first enqueue of stage 1
  -> the last stage's fan-in (recorded by the task that completes it).

Enqueue and recovery methods per system: ENQUEUE_METHOD and recovery_method() below (rendered into the section).

This file runs under geomill's venv (driver, geomill) and, for the Celery/procrastinate workers and drivers, under
bench/.venv-peers (``peers.py _celery-worker`` etc.); its top-level imports are the standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # noqa: E402  (bench/ is on sys.path when a script runs)
from common import pg_drop_db, update_section  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out" / "peers"
PEERS_PY = BENCH_DIR / ".venv-peers" / "bin" / "python"
MAIN_PY = REPO / ".venv" / "bin" / "python"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
SECTION = "## Peers: geomill vs Celery vs procrastinate (bench/peers.py)"
STAGES = 3
WORKERS = 2
PROC_CONCURRENCY = 4
SYSTEMS = ("geomill-pg", "geomill-rabbit", "celery", "procrastinate")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{db}"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/{vhost}"
RUN_TIMEOUT_S = 1800
PROC_BATCH = 10_000  # procrastinate enqueue: jobs per batch_defer call
LEASE_S = float(os.environ.get("PEERS_LEASE_S", "5"))  # recovery: geomill lease = procrastinate stalled-worker age
STALLED_S = LEASE_S
HEARTBEAT_S = LEASE_S / 3  # geomill heartbeats at a third of its lease; procrastinate's worker heartbeat the same

GUARANTEES = {
    "geomill-pg": "every task's state durable in PostgreSQL; stage advance exactly once (guarded update in the DB)",
    "geomill-rabbit": "same as geomill-pg (PostgreSQL is the source of truth; messages carry ids, persistent, "
                      "quorum queues, publisher confirms on)",
    "celery": "results durable in PostgreSQL, messages in RabbitMQ (persistent by default); chord advance by the "
              "chord_unlock task polling the result backend; acks early (default), publisher confirms off "
              "(default): a lost publish or a worker crash can lose a task, and the chord then never fires",
    "procrastinate": "every job durable in PostgreSQL; stage advance once per counter reaching 0, but the counter "
                     "update and the job's completion are separate transactions: a retried task decrements twice",
}


# ---------------------------------------------------------------- services



def pg_create_db() -> str:
    return common.pg_create_db("peers_bench")


def rabbit_add_vhost() -> str:
    name = f"peers_bench_{secrets.token_hex(5)}"
    for args in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)
    return name


def rabbit_delete_vhost(name: str) -> None:
    subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, timeout=120)


def wait_no_other_bench(limit_s: float = 600) -> float:
    """Wait (up to 10 min, polling every 15 s) until bench/orchestration.py is not running; returns seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if subprocess.run(["pgrep", "-f", "bench/orchestration.py"], capture_output=True).returncode != 0:
            break
        time.sleep(15)
    return time.monotonic() - t0


def _checked(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run `cmd`; a failure raises with the tail of its stderr (it ends up in the run's record)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:3]))} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return proc


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_")}
    env["GEOMILL_DRILL_JOBS"] = "true"  # fanout is a drill job type
    env.update(extra)
    return env


# ---------------------------------------------------------------- geomill


def run_geomill(n: int, broker: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"geomill-{n}-", dir=OUT))
    db = pg_create_db()
    vhost = rabbit_add_vhost() if broker else None
    env = child_env(GEOMILL_DATABASE_URL=PG_URL.format(db=db))
    if vhost:
        env["GEOMILL_BROKER_URL"] = AMQP_URL.format(vhost=vhost)
    exe = str(REPO / ".venv" / "bin" / "geomill")
    data = ["--data-dir", str(workdir / "data")]
    try:
        _checked([exe, "db", "upgrade", *data], env=env, cwd=workdir)
        tag = f"bench-{secrets.token_hex(6)}"
        t0 = time.perf_counter()
        proc = subprocess.run([exe, "run", "fanout", "-p", f"n={n}", "-p", f"stages={STAGES}", "-p", f"tag={tag}",
                               "-w", str(WORKERS), "--json", *data], env=env, cwd=workdir, capture_output=True,
                              text=True, timeout=RUN_TIMEOUT_S)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"geomill run exited {proc.returncode}: {proc.stderr[-3000:]}")
        job_id = json.loads(proc.stdout)["job_id"]
        st = subprocess.run([exe, "status", job_id, "--json", *data], env=env, cwd=workdir, capture_output=True,
                            text=True, check=True)
        status = json.loads(st.stdout)
        if status.get("status") != "completed":
            raise RuntimeError(f"job {job_id} ended {status.get('status')}")
        started, finished = (_ts(_find(status, k)) for k in ("started_at", "finished_at"))
        return {"processing_s": finished - started, "wall_s": wall, "job_id": job_id}
    finally:
        pg_drop_db(db)
        if vhost:
            rabbit_delete_vhost(vhost)
        shutil.rmtree(workdir, ignore_errors=True)


def _find(doc: Any, key: str) -> Any:
    """The first value of `key` in a nested JSON document (the job's own timestamps come first)."""
    if isinstance(doc, dict):
        if key in doc and doc[key]:
            return doc[key]
        for v in doc.values():
            found = _find(v, key)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for v in doc:
            found = _find(v, key)
            if found is not None:
                return found
    return None


def _ts(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------- peers: driver side (geomill's venv)


def run_peer(system: str, n: int) -> dict[str, Any]:
    """Start the peer's 2 worker processes, wait until ready, run its driver; returns its measurements."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{system}-{n}-", dir=OUT))
    db = pg_create_db()
    vhost = rabbit_add_vhost() if system == "celery" else None
    env = child_env(PEERS_DB_URL=PG_URL.format(db=db), PEERS_N=str(n), PEERS_DONE_FILE=str(workdir / "done"),
                    PYTHONPATH=str(BENCH_DIR))
    if vhost:
        env["PEERS_BROKER_URL"] = AMQP_URL.format(vhost=vhost)
    workers: list[subprocess.Popen] = []
    try:
        # schema / tables first, then the workers
        _checked([str(PEERS_PY), __file__, f"_{system}-setup"], env=env, cwd=BENCH_DIR)
        t_launch = time.perf_counter()
        if system == "celery":
            logf = open(workdir / "worker.log", "w")
            workers.append(subprocess.Popen(
                [str(PEERS_PY), "-m", "celery", "-A", "peers:celery_app", "worker", "--pool", "prefork",
                 "--concurrency", str(WORKERS), "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                 "--without-heartbeat"], env=env, cwd=BENCH_DIR, stdout=logf, stderr=subprocess.STDOUT))
            _wait_log(workdir / "worker.log", "ready.", 60)
        else:
            for i in range(WORKERS):
                logf = open(workdir / f"worker{i}.log", "w")
                workers.append(subprocess.Popen([str(PEERS_PY), __file__, "_procrastinate-worker"], env=env,
                                                cwd=BENCH_DIR, stdout=logf, stderr=subprocess.STDOUT))
            for i in range(WORKERS):
                _wait_log(workdir / f"worker{i}.log", "READY", 60)
        drv = subprocess.run([str(PEERS_PY), __file__, f"_{system}-drive"], env=env, cwd=BENCH_DIR,
                             capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        wall = time.perf_counter() - t_launch
        if drv.returncode != 0:
            raise RuntimeError(f"{system} driver exited {drv.returncode}: {drv.stderr[-3000:]}")
        out = json.loads(drv.stdout.strip().splitlines()[-1])
        out["wall_s"] = wall  # workers' start-up included, not their shut-down
        return out
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        pg_drop_db(db)
        if vhost:
            rabbit_delete_vhost(vhost)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_log(path: Path, marker: str, limit_s: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if path.exists() and marker in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker not ready after {limit_s}s: {path.read_text(errors='replace')[-3000:]}")


def _wait_done(path: Path, limit_s: float = RUN_TIMEOUT_S) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if path.exists() and path.read_text().strip():
            return float(path.read_text().strip())
        time.sleep(0.01)
    raise RuntimeError("the last stage never finished")


# ---------------------------------------------------------------- Celery (bench/.venv-peers)


def _make_celery_app():
    from celery import Celery, chord, group

    db_url = os.environ["PEERS_DB_URL"].replace("postgresql://", "db+postgresql+psycopg://")
    app = Celery("peers", broker=os.environ["PEERS_BROKER_URL"], backend=db_url)
    mode = os.environ.get("PEERS_MODE", "throughput")
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        worker_prefetch_multiplier=4,        # default
        task_acks_late=False,                # default
        broker_transport_options={"confirm_publish": False},  # default: no publisher confirms
        result_chord_retry_interval=1.0,     # default: chord_unlock polls the DB backend every second
        database_create_tables_at_setup=True,
        worker_hijack_root_logger=False,
    )
    if mode == "enqueue":   # durably enqueued = confirmed by the broker
        app.conf.broker_transport_options = {"confirm_publish": True}
    if mode == "recovery":  # what Celery's docs advise for tasks that must survive a worker crash
        app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True,
                        broker_transport_options={"confirm_publish": True})

    @app.task(name="peers.sleep")
    def sleep_task(key: str, seconds: float) -> None:
        _mark("start", key)
        time.sleep(seconds)
        _mark("done", key)

    @app.task(name="peers.noop")
    def noop(i: int) -> None:
        return None

    @app.task(name="peers.stage_done")
    def stage_done(_results: list[Any], stage: int, n: int) -> None:
        if stage < STAGES:
            launch_stage(stage + 1, n)
        else:
            Path(os.environ["PEERS_DONE_FILE"]).write_text(repr(time.time()))

    def launch_stage(stage: int, n: int) -> None:
        chord(group(noop.s(i) for i in range(n)), stage_done.s(stage, n)).apply_async()

    app.launch_stage = launch_stage  # type: ignore[attr-defined]
    return app


if os.environ.get("PEERS_BROKER_URL") and os.environ.get("PEERS_DB_URL"):
    celery_app = _make_celery_app()


def celery_setup() -> None:
    pass  # the SQLAlchemy backend creates its tables itself (database_create_tables_at_setup)


def celery_drive() -> None:
    n = int(os.environ["PEERS_N"])
    t0 = time.time()
    celery_app.launch_stage(1, n)
    done = _wait_done(Path(os.environ["PEERS_DONE_FILE"]))
    print(json.dumps({"processing_s": done - t0}))


# ---------------------------------------------------------------- procrastinate (bench/.venv-peers)


def _make_proc_app():
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["PEERS_DB_URL"]))

    @app.task(name="noop", queue="peers")
    async def noop(stage: int, n: int) -> None:
        row = await app.connector.execute_query_one_async(
            "UPDATE peers_stage SET remaining = remaining - 1 WHERE stage = %(stage)s RETURNING remaining",
            stage=stage)
        if row["remaining"] == 0:
            await advance(stage, n)

    async def advance(stage: int, n: int) -> None:
        if stage < STAGES:
            await app.connector.execute_query_async(
                "INSERT INTO peers_stage (stage, remaining) VALUES (%(stage)s, %(n)s)", stage=stage + 1, n=n)
            await noop.batch_defer_async(*({"stage": stage + 1, "n": n} for _ in range(n)))
        else:
            Path(os.environ["PEERS_DONE_FILE"]).write_text(repr(time.time()))

    app.advance = advance  # type: ignore[attr-defined]

    if os.environ.get("PEERS_MODE") == "recovery":
        @app.task(name="sleep", queue="peers")
        async def sleep_task(key: str, seconds: float) -> None:
            _mark("start", key)
            await asyncio.sleep(seconds)
            _mark("done", key)

        # procrastinate's documented recipe: a periodic task that retries the jobs of workers whose heartbeat stopped
        @app.periodic(cron="* * * * * *")  # every second (croniter's 6th field is seconds)
        @app.task(name="retry_stalled", queue="peers", queueing_lock="retry_stalled")
        async def retry_stalled(timestamp: int) -> None:
            stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_S)
            for job in stalled:
                await app.job_manager.retry_job(job)

        app.sleep_task = sleep_task  # type: ignore[attr-defined]
    return app


async def procrastinate_setup() -> None:
    app = _make_proc_app()
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(
            "CREATE TABLE peers_stage (stage int PRIMARY KEY, remaining int NOT NULL)")


async def procrastinate_worker() -> None:
    app = _make_proc_app()
    opts: dict[str, Any] = {"concurrency": PROC_CONCURRENCY}
    if os.environ.get("PEERS_MODE") == "recovery":
        opts = {"concurrency": 1, "update_heartbeat_interval": HEARTBEAT_S, "stalled_worker_timeout": STALLED_S}
    async with app.open_async():
        print("READY", flush=True)
        await app.run_worker_async(queues=["peers"], install_signal_handlers=True, **opts)


async def procrastinate_drive() -> None:
    n = int(os.environ["PEERS_N"])
    app = _make_proc_app()
    async with app.open_async():
        t0 = time.time()
        await app.advance(0, n)  # inserts stage 1's counter row and batch-defers its N tasks
    done = _wait_done(Path(os.environ["PEERS_DONE_FILE"]))
    print(json.dumps({"processing_s": done - t0}))


# ---------------------------------------------------------------- enqueue rate (driver side, geomill's venv)


def _pg(db: str):
    import psycopg

    return psycopg.connect(PG_URL.format(db=db), autocommit=True)


def _start(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """A long-running process in its own process group, so that a SIGKILL of the group reaches its children."""
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def _group_pids(pgid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


def _until(predicate: Any, limit_s: float, what: str, interval: float = 0.05, alive: Any = None) -> Any:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        value = predicate()
        if value:
            return value
        if alive is not None and not alive():
            raise RuntimeError(f"a process died while waiting for {what}")
        time.sleep(interval)
    raise RuntimeError(f"timed out after {limit_s:.0f} s waiting for {what}")


def rabbit_queue(vhost: str, queue: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of `queue` (pika passive declare); None while it does not exist."""
    import pika
    import pika.exceptions

    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL.format(vhost=vhost)))
    try:
        method = conn.channel().queue_declare(queue, passive=True).method
        return method.message_count, method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return None
    finally:
        if conn.is_open:
            conn.close()


def rabbit_depth(vhost: str, queue: str) -> int | None:
    found = rabbit_queue(vhost, queue)
    return found[0] if found else None


def _time_until(predicate: Any, limit_s: float, t_from: float) -> float | None:
    """Seconds from `t_from` until `predicate()` holds (polled every 20 ms); None if not within limit_s."""
    try:
        _until(predicate, limit_s, "requeue", 0.02)
    except RuntimeError:
        return None
    return time.time() - t_from


def enqueue_geomill(n: int, broker: bool, limit_s: float) -> dict[str, Any]:
    """Only the planner runs (`geomill serve --mode platform_only`, no task worker): submit a one-stage fanout of n
    tasks; enqueued = the stage sealed with all n rows committed (DB clock: jobs.created_at -> the first poll, every
    20 ms, that sees it). With RabbitMQ, also until the task queue holds n messages (published by the outbox)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"enqueue-geomill-{n}-", dir=OUT))
    db = pg_create_db()
    vhost = rabbit_add_vhost() if broker else None
    env = child_env(GEOMILL_DATABASE_URL=PG_URL.format(db=db), GEOMILL_DATA_DIR=str(workdir / "data"))
    if vhost:
        env["GEOMILL_BROKER_URL"] = AMQP_URL.format(vhost=vhost)
    exe = str(REPO / ".venv" / "bin" / "geomill")
    planner = None
    try:
        _checked([exe, "db", "upgrade"], env=env, cwd=workdir)
        planner = _start([exe, "serve", "--mode", "platform_only", "--no-http", "-w", "1"], env, workdir,
                         workdir / "planner.log")
        alive = lambda: planner.poll() is None  # noqa: E731
        with _pg(db) as con:
            _until(lambda: con.execute("SELECT count(*) FROM workers").fetchone()[0], 60, "the planner", 0.1, alive)
            time.sleep(2)  # its worker process opens its LISTEN connection / broker consumer
            sub = subprocess.run([exe, "submit", "fanout", "-p", f"n={n}", "-p", "stages=1",
                                  "-p", f"tag=enqueue-{secrets.token_hex(6)}"], env=env, cwd=workdir,
                                 capture_output=True, text=True, timeout=120)
            if sub.returncode != 0:
                raise RuntimeError(f"geomill submit exited {sub.returncode}: {sub.stderr[-2000:]}")
            job_id = sub.stdout.strip()
            created = float(con.execute("SELECT extract(epoch FROM created_at) FROM jobs WHERE job_id = %s",
                                        (job_id,)).fetchone()[0])

            def sealed() -> float | None:
                row = con.execute("SELECT total, sealed, extract(epoch FROM clock_timestamp()) FROM stages "
                                  "WHERE job_id = %s AND stage = 1", (job_id,)).fetchone()
                return float(row[2]) if row and row[1] and row[0] >= n else None

            sealed_at = _until(sealed, limit_s, "the stage to be sealed", 0.02, alive)
            rows, queued = con.execute("SELECT count(*), count(*) FILTER (WHERE status = 'queued') FROM tasks "
                                       "WHERE job_id = %s", (job_id,)).fetchone()
        out: dict[str, Any] = {"enqueue_s": sealed_at - created, "rows": rows, "queued": queued}
        if vhost:
            _until(lambda: (rabbit_depth(vhost, "default-tasks") or 0) >= n, limit_s, "n messages in the broker",
                   0.2, alive)
            out["in_broker_s"] = time.time() - created
            out["broker_depth"] = rabbit_depth(vhost, "default-tasks")
        if rows != n:
            raise RuntimeError(f"{rows} task rows, expected {n}")
        return out
    finally:
        if planner is not None:
            _stop_group(planner)
        pg_drop_db(db)
        if vhost:
            rabbit_delete_vhost(vhost)
        shutil.rmtree(workdir, ignore_errors=True)


def enqueue_peer(system: str, n: int, limit_s: float) -> dict[str, Any]:
    """No worker at all: the peer's driver enqueues n no-op tasks and reports when they are durably in."""
    workdir = Path(tempfile.mkdtemp(prefix=f"enqueue-{system}-{n}-", dir=OUT))
    db = pg_create_db()
    vhost = rabbit_add_vhost() if system == "celery" else None
    env = child_env(PEERS_DB_URL=PG_URL.format(db=db), PEERS_N=str(n), PEERS_MODE="enqueue",
                    PEERS_LIMIT_S=str(limit_s), PYTHONPATH=str(BENCH_DIR))
    if vhost:
        env["PEERS_BROKER_URL"] = AMQP_URL.format(vhost=vhost)
    try:
        _checked([str(PEERS_PY), __file__, f"_{system}-setup"], env=env, cwd=BENCH_DIR)
        drv = subprocess.run([str(PEERS_PY), __file__, f"_{system}-enqueue"], env=env, cwd=BENCH_DIR,
                             capture_output=True, text=True, timeout=limit_s + 120)
        if drv.returncode != 0:
            raise RuntimeError(f"{system} enqueue exited {drv.returncode}: {drv.stderr[-3000:]}")
        out = json.loads(drv.stdout.strip().splitlines()[-1])
        if out.get("count") != n:
            raise RuntimeError(f"{out.get('count')} tasks enqueued, expected {n}")
        return out
    finally:
        pg_drop_db(db)
        if vhost:
            rabbit_delete_vhost(vhost)
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- SIGKILL recovery (driver side, geomill's venv)


def recovery_geomill(m: int, task_s: float, broker: bool, lease_s: float, limit_s: float) -> dict[str, Any]:
    """2 x `geomill worker -w 1` (each its own process group); m tasks of task_s; SIGKILL the group of the first
    worker while it runs a task; geomill gets the task back when its lease expires (janitor every second)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"recovery-geomill-{m}-", dir=OUT))
    done_dir = workdir / "done"
    done_dir.mkdir()
    db = pg_create_db()
    vhost = rabbit_add_vhost() if broker else None
    env = child_env(GEOMILL_DATABASE_URL=PG_URL.format(db=db), GEOMILL_DATA_DIR=str(workdir / "data"),
                    GEOMILL_LEASE_SECONDS=str(lease_s), GEOMILL_JANITOR_INTERVAL_SECONDS="1")
    if vhost:
        env["GEOMILL_BROKER_URL"] = AMQP_URL.format(vhost=vhost)
    exe = str(REPO / ".venv" / "bin" / "geomill")
    workers: list[subprocess.Popen] = []
    try:
        _checked([exe, "db", "upgrade"], env=env, cwd=workdir)
        workers = [_start([exe, "worker", "-w", "1"], env, workdir, workdir / f"worker{i}.log") for i in range(2)]
        sub = _checked([exe, "submit", "fanout", "-p", f"n={m}", "-p", "stages=1", "-p", f"sleep_s={task_s}",
                        "-p", f"marker_dir={done_dir}", "-p", f"tag=recovery-{secrets.token_hex(6)}"],
                       env=env, cwd=workdir)
        job_id = sub.stdout.strip()
        victim = workers[0]
        with _pg(db) as con:
            def tasks() -> list[tuple]:
                return con.execute(
                    "SELECT task_key, status, attempt, executed_by_app, extract(epoch FROM execution_started_at), "
                    "extract(epoch FROM finished_at) FROM tasks WHERE job_id = %s", (job_id,)).fetchall()

            def held() -> list[str]:
                pids = _group_pids(victim.pid)
                return [t[0] for t in tasks() if t[1] == "processing" and t[3] and int(t[3].rsplit("#", 1)[1]) in pids]

            held_keys = _until(held, 120, "the victim to hold a task", 0.05, lambda: victim.poll() is None)
            left = sum(1 for t in tasks() if t[1] != "completed")
            victim_pids = _group_pids(victim.pid)
            t_kill = time.time()
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()

            def requeued() -> bool:  # no held task is still "processing" by the dead worker
                now = {t[0]: t for t in tasks()}
                return not any(now[k][1] == "processing" and int(now[k][3].rsplit("#", 1)[1]) in victim_pids
                               for k in held_keys)

            requeued_s = _time_until(requeued, limit_s, t_kill)
            try:
                _until(lambda: all(t[1] == "completed" for t in tasks()), limit_s, "every task to complete", 0.1)
            except RuntimeError:
                pass  # reported as not recovered
            rows = {t[0]: t for t in tasks()}
        completed = [t for t in rows.values() if t[1] == "completed"]
        restarts = [float(rows[k][4]) for k in held_keys if rows[k][2] > 1 and rows[k][4] is not None]
        twice = sum(1 for f in done_dir.iterdir() if len(f.read_text().splitlines()) > 1)
        return {"held": len(held_keys), "left_at_kill": left, "requeued_s": requeued_s,
                "restart_s": (max(restarts) - t_kill) if len(restarts) == len(held_keys) else None,
                "all_done_s": (max(float(t[5]) for t in completed) - t_kill) if len(completed) == m else None,
                "reran": sum(1 for t in rows.values() if t[2] > 1), "completed_twice": twice,
                "lost": m - len(completed)}
    finally:
        for w in workers:
            _stop_group(w)
        pg_drop_db(db)
        if vhost:
            rabbit_delete_vhost(vhost)
        shutil.rmtree(workdir, ignore_errors=True)


def _read_marks(path: Path) -> list[tuple[float, int]]:
    """(time, pid) per line of a marker file written by _mark."""
    if not path.exists():
        return []
    return [(float(a), int(b)) for a, b in (line.split() for line in path.read_text().splitlines() if line.strip())]


def recovery_peer(system: str, m: int, task_s: float, lease_s: float, limit_s: float) -> dict[str, Any]:
    """2 worker processes of concurrency 1, each its own process group; m tasks of task_s that record their start
    and end (time, pid) in marker files; SIGKILL the group of the first worker while it runs a task."""
    workdir = Path(tempfile.mkdtemp(prefix=f"recovery-{system}-{m}-", dir=OUT))
    markers = workdir / "markers"
    for sub in ("start", "done"):
        (markers / sub).mkdir(parents=True)
    db = pg_create_db()
    vhost = rabbit_add_vhost() if system == "celery" else None
    env = child_env(PEERS_DB_URL=PG_URL.format(db=db), PEERS_N=str(m), PEERS_TASK_S=str(task_s),
                    PEERS_MODE="recovery", PEERS_MARKERS=str(markers), PEERS_LEASE_S=str(lease_s),
                    PYTHONPATH=str(BENCH_DIR))
    if vhost:
        env["PEERS_BROKER_URL"] = AMQP_URL.format(vhost=vhost)
    keys = [f"t{i:05d}" for i in range(m)]
    workers: list[subprocess.Popen] = []
    try:
        _checked([str(PEERS_PY), __file__, f"_{system}-setup"], env=env, cwd=BENCH_DIR)
        for i in range(2):
            if system == "celery":
                cmd = [str(PEERS_PY), "-m", "celery", "-A", "peers:celery_app", "worker", "--pool", "prefork",
                       "--concurrency", "1", "-n", f"w{i}@%h", "--loglevel", "INFO", "--without-gossip",
                       "--without-mingle", "--without-heartbeat"]
            else:
                cmd = [str(PEERS_PY), __file__, "_procrastinate-worker"]
            workers.append(_start(cmd, env, BENCH_DIR, workdir / f"worker{i}.log"))
        for i in range(2):
            _wait_log(workdir / f"worker{i}.log", "ready." if system == "celery" else "READY", 60)
        _checked([str(PEERS_PY), __file__, f"_{system}-recovery-submit"], env=env, cwd=BENCH_DIR)
        victim = workers[0]

        def held() -> list[str]:
            pids = _group_pids(victim.pid)
            return [k for k in keys
                    if any(p in pids for _, p in _read_marks(markers / "start" / k))
                    and not any(p in pids for _, p in _read_marks(markers / "done" / k))]

        held_keys = _until(held, 120, "the victim to hold a task", 0.05, lambda: victim.poll() is None)
        left = sum(1 for k in keys if not _read_marks(markers / "done" / k))
        if system == "procrastinate":
            with _pg(db) as con:
                def jobs() -> dict[str, tuple[str, int | None]]:
                    return {k: (st, w) for k, st, w in con.execute(
                        "SELECT args->>'key', status, worker_id FROM procrastinate_jobs WHERE task_name = 'sleep' "
                        "AND args->>'key' = ANY(%s)", (held_keys,)).fetchall()}
                doing = {k: v[1] for k, v in jobs().items() if v[0] == "doing"}
                t_kill = time.time()
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait()
                # requeued: the dead worker's jobs are no longer "doing" under its worker id (retry_job made them
                # "todo", possibly picked up since)
                requeued_s = _time_until(lambda: not any(v[0] == "doing" and v[1] == doing.get(k)
                                                         for k, v in jobs().items()), limit_s, t_kill)
        else:
            t_kill = time.time()
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            # requeued: the broker dropped the dead worker's consumer, which returns its unacknowledged messages
            requeued_s = _time_until(lambda: (rabbit_queue(vhost, "celery") or (0, 2))[1] <= 1, limit_s, t_kill)
        try:
            _until(lambda: all(_read_marks(markers / "done" / k) for k in keys), limit_s, "every task to complete",
                   0.1)
        except RuntimeError:
            pass  # reported as not recovered
        starts = {k: _read_marks(markers / "start" / k) for k in keys}
        dones = {k: _read_marks(markers / "done" / k) for k in keys}
        restarts = [min(t for t, _ in starts[k] if t > t_kill) for k in held_keys if any(t > t_kill for t, _ in starts[k])]
        completed = [k for k in keys if dones[k]]
        return {"held": len(held_keys), "left_at_kill": left, "requeued_s": requeued_s,
                "restart_s": (max(restarts) - t_kill) if len(restarts) == len(held_keys) else None,
                "all_done_s": (max(min(t for t, _ in dones[k]) for k in keys) - t_kill)
                              if len(completed) == m else None,
                "reran": sum(1 for k in keys if len(starts[k]) > 1),
                "completed_twice": sum(1 for k in keys if len(dones[k]) > 1), "lost": m - len(completed)}
    finally:
        for w in workers:
            _stop_group(w)
        pg_drop_db(db)
        if vhost:
            rabbit_delete_vhost(vhost)
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- enqueue / recovery: peer side (bench/.venv-peers)


def _mark(kind: str, key: str) -> None:
    with open(Path(os.environ["PEERS_MARKERS"]) / kind / key, "a") as fh:
        fh.write(f"{time.time()!r} {os.getpid()}\n")


def celery_enqueue() -> None:
    """A group of n signatures, each published persistent with a publisher confirm; then wait until the queue holds
    them all (passive declare)."""
    from celery import group

    n = int(os.environ["PEERS_N"])
    noop = celery_app.tasks["peers.noop"]
    t0 = time.time()
    group(noop.s(i) for i in range(n)).apply_async()
    published = time.time()
    depth = 0
    with celery_app.connection_for_write() as conn:
        deadline = time.monotonic() + float(os.environ["PEERS_LIMIT_S"])
        while time.monotonic() < deadline:
            depth = conn.default_channel.queue_declare("celery", passive=True).message_count
            if depth >= n:
                break
            time.sleep(0.05)
    print(json.dumps({"enqueue_s": time.time() - t0, "published_s": published - t0, "count": depth}))


def celery_recovery_submit() -> None:
    sleep = celery_app.tasks["peers.sleep"]
    for i in range(int(os.environ["PEERS_N"])):
        sleep.apply_async((f"t{i:05d}", float(os.environ["PEERS_TASK_S"])))


async def procrastinate_enqueue() -> None:
    """batch_defer of n jobs, PROC_BATCH per call (one INSERT each, committed on its own)."""
    n = int(os.environ["PEERS_N"])
    app = _make_proc_app()
    async with app.open_async():
        noop = app.tasks["noop"]
        t0 = time.time()
        for start in range(0, n, PROC_BATCH):
            await noop.batch_defer_async(*({"stage": 1, "n": n} for _ in range(min(PROC_BATCH, n - start))))
        elapsed = time.time() - t0
        row = await app.connector.execute_query_one_async(
            "SELECT count(*) AS c FROM procrastinate_jobs WHERE status = 'todo'")
    print(json.dumps({"enqueue_s": elapsed, "count": row["c"]}))


async def procrastinate_recovery_submit() -> None:
    app = _make_proc_app()
    async with app.open_async():
        task_s = float(os.environ["PEERS_TASK_S"])
        await app.sleep_task.batch_defer_async(*({"key": f"t{i:05d}", "seconds": task_s}
                                                 for i in range(int(os.environ["PEERS_N"]))))


# ---------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def versions() -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version()}
    try:
        out["geomill"] = subprocess.run([str(MAIN_PY), "-c", "import importlib.metadata as m; print(m.version('geomill'))"],
                                        capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    code = ("import importlib.metadata as m\nfor p in ('celery','kombu','amqp','sqlalchemy','procrastinate','psycopg'):"
            "\n    print(p, m.version(p))")
    for line in subprocess.run([str(PEERS_PY), "-c", code], capture_output=True, text=True).stdout.splitlines():
        k, v = line.split()
        out[k] = v
    import psycopg

    with psycopg.connect(PG_ADMIN_URL) as con:
        out["postgresql"] = con.execute("SHOW server_version").fetchone()[0]
    rmq = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True).stdout.strip()
    out["rabbitmq"] = rmq.splitlines()[-1] if rmq else "?"
    return out


PARTS = ("throughput", "enqueue", "recovery")
SUBHEADINGS = {
    "throughput": "### Throughput: 3 stages × N no-op tasks",
    "enqueue": "### Enqueue rate",
    "recovery": "### Recovery after SIGKILL of a worker holding tasks",
}
FULL_COMMAND = ".venv/bin/python bench/peers.py --sizes 1000 10000 --repeat 5 --enqueue-n 100000"


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "—" if v is None or v != v else format(v, spec)


def _versions_line(meta: dict[str, Any]) -> str:
    return "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + "."


def render_throughput(args: argparse.Namespace, runs: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    sizes = sorted({r["n"] for r in runs})
    repeat = max(r["round"] for r in runs)
    lines = [SUBHEADINGS["throughput"], "",
             f"Measured {meta['date']} on {meta['machine']}, one run, A B A B ... ({repeat} rounds per size"
             f"{'' if repeat >= 5 else ', fewer than the 5 the issue asks for'}). Workload: 3 stages x N "
             "no-op tasks, stage k+1 starts when all N of stage k are done, 2 worker processes. "
             "tasks/s = 3N / processing time (median of rounds); ratio = that system's tasks/s / geomill-pg's.", ""]
    head = "| system | " + " | ".join(f"N = {n:,}: tasks/s (ratio) | processing / wall s" for n in sizes) + " |"
    lines += [head, "|---|" + "---|---|" * len(sizes)]
    base = {n: med([r["processing_s"] for r in runs if r["system"] == "geomill-pg" and r["n"] == n and "error" not in r])
            for n in sizes}
    for system in SYSTEMS:
        if not any(r["system"] == system for r in runs):
            continue
        cells = []
        for n in sizes:
            ok = [r for r in runs if r["system"] == system and r["n"] == n and "error" not in r]
            bad = [r for r in runs if r["system"] == system and r["n"] == n and "error" in r]
            if not ok:
                cells += [f"failed ({len(bad)})" if bad else "not run", ""]
                continue
            p, w = med([r["processing_s"] for r in ok]), med([r["wall_s"] for r in ok])
            rate = 3 * n / p
            ratio = (base[n] / p) if base[n] == base[n] else float("nan")
            cells += [f"{rate:,.0f} ({ratio:.2f}×)" + (f", {len(bad)} failed" if bad else ""), f"{p:.2f} / {w:.2f}"]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines += ["", "Per run (processing s): " + "; ".join(
        f"{r['system']} N={r['n']} r{r['round']}: " + (f"{r['processing_s']:.2f}" if "error" not in r else "FAILED")
        for r in runs), ""]
    errs = [r for r in runs if "error" in r]
    if errs:
        lines += ["Failures: " + "; ".join(f"{r['system']} N={r['n']}: {r['error'][:200]}" for r in errs), ""]
    lines += [_versions_line(meta), "", "Settings and guarantees:",
              "- geomill-pg / geomill-rabbit: default settings (none of GEOMILL_* inherited except the database and "
              "broker URLs); `geomill run` spawns its 2 worker processes after submitting, so its processing time "
              "(jobs.started_at → finished_at) may include part of their start-up; wall = the whole `run` command.",
              f"  {GUARANTEES['geomill-pg']}. RabbitMQ: {GUARANTEES['geomill-rabbit']}.",
              "- celery: `celery worker --pool prefork --concurrency 2 --without-gossip --without-mingle "
              "--without-heartbeat`, json serializer, prefetch multiplier 4, acks early, publisher confirms OFF "
              "(kombu default), `result_chord_retry_interval` 1 s (default; chord_unlock polls the backend), result "
              "backend `db+postgresql+psycopg://` (SQLAlchemy). One chord per stage; its callback launches the next "
              f"stage's chord. Guarantees: {GUARANTEES['celery']}. Workers started and ready before the clock; "
              "processing = first publish → the last callback; wall includes worker start-up.",
              f"- procrastinate: 2 processes × `run_worker_async(concurrency={PROC_CONCURRENCY})` (LISTEN/NOTIFY on), "
              "async tasks, counter table `peers_stage`; the task that brings `remaining` to 0 inserts the next "
              f"counter row and `batch_defer_async`s the next stage. Guarantees: {GUARANTEES['procrastinate']}. "
              "Workers started and ready before the clock.", "",
              "Reference figures from shared/BENCHMARKING.md (NOT measured in this run; same kind of machine, "
              "2026-11-23): Celery 5.7 chord-per-stage with PostgreSQL backend 286 / 315 tasks/s (N = 1,000 / 10,000); "
              "Celery with `rpc://` and a client-side barrier (no durable state, not a real fan-in) 809 / 773; "
              "procrastinate 3.10, 2 × concurrency 4, counter-row fan-in 606 / 615.", ""]
    return lines


ENQUEUE_METHOD = {
    "geomill-pg": "`geomill submit fanout -p n=N -p stages=1` with only a planner running (`geomill serve --mode "
                  "platform_only --no-http -w 1`, no task worker); from `jobs.created_at` to the first poll (every "
                  "20 ms, DB clock) that sees `stages.sealed` with `total` = N; the orchestrator commits the first "
                  "256 rows with the stage, then chunks of 2,000, each its own transaction (COPY)",
    "geomill-rabbit": "same as geomill-pg (the PostgreSQL rows are what is durable); second figure: until the "
                      "`default-tasks` quorum queue holds N messages (pika passive declare every 0.2 s), published "
                      "by the outbox up to 500 messages at a time with all their publisher confirms in flight",
    "celery": "`group(noop.s(i) for i in range(N)).apply_async()` with `confirm_publish=True` (each persistent "
              "message confirmed by the broker), then until the `celery` queue (classic, durable) reports N "
              "messages; no worker running; second figure: time for `apply_async` to return",
    "procrastinate": f"`noop.batch_defer_async(...)` of {PROC_BATCH:,} jobs per call (one INSERT each, committed "
                     "on its own), until the last call returns; the driver then counts N `todo` rows; no worker "
                     "running",
}


def render_enqueue(runs: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    n = runs[0]["n"]
    repeat = max(r["round"] for r in runs)
    lines = [SUBHEADINGS["enqueue"], "",
             f"Measured {meta['date']} on {meta['machine']}: time to get N = {n:,} tasks durably enqueued, "
             f"{repeat} run(s) per system{'' if repeat >= 5 else ' (fewer than the 5 the issue asks for)'}, A B A B "
             "..., medians; each run on a fresh database (and vhost).", "",
             "| system | durably enqueued: tasks/s | s | second figure: tasks/s | s | runs ok |",
             "|---|---|---|---|---|---|"]
    for system in SYSTEMS:
        mine = [r for r in runs if r["system"] == system]
        if not mine:
            continue
        ok = [r for r in mine if "error" not in r]
        e = med([r["enqueue_s"] for r in ok])
        second_key = {"geomill-rabbit": "in_broker_s", "celery": "published_s"}.get(system)
        s2 = med([r[second_key] for r in ok if r.get(second_key) is not None]) if second_key else None
        label2 = {"geomill-rabbit": " (in RabbitMQ)", "celery": " (apply_async returned)"}.get(system, "")
        lines.append(f"| {system} | {_fmt(n / e if ok else None, ',.0f')} | {_fmt(e if ok else None)} | "
                     f"{_fmt(n / s2 if s2 else None, ',.0f')}{label2 if s2 else ''} | {_fmt(s2)} | "
                     f"{len(ok)}/{len(mine)} |")
    lines += ["", "Per run (s): " + "; ".join(
        f"{r['system']} r{r['round']}: " + (f"{r['enqueue_s']:.2f}" if "error" not in r else "FAILED")
        for r in runs), ""]
    errs = [r for r in runs if "error" in r]
    if errs:
        lines += ["Failures: " + "; ".join(f"{r['system']} r{r['round']}: {r['error'][:200]}" for r in errs), ""]
    lines += ["How each is measured:"] + [f"- {s}: {ENQUEUE_METHOD[s]}." for s in SYSTEMS
                                          if any(r["system"] == s for r in runs)] + ["", _versions_line(meta), ""]
    return lines


def recovery_method(system: str, lease_s: float) -> str:
    return {
        "geomill-pg": f"2 × `geomill worker -w 1`; the killed worker's task comes back when its lease expires: "
                      f"GEOMILL_LEASE_SECONDS={lease_s:g} (default 60; heartbeat every {lease_s / 3:.2f} s), "
                      "GEOMILL_JANITOR_INTERVAL_SECONDS=1 (default 5); the task's attempt counter goes up",
        "geomill-rabbit": "same settings as geomill-pg, RabbitMQ dispatch (the message was acknowledged at the claim; "
                          "the reclaimed task is sent again through the outbox)",
        "celery": "2 × `celery worker --pool prefork --concurrency 1 -n wK@%h`, `task_acks_late=True`, "
                  "`task_reject_on_worker_lost=True`, publisher confirms on, prefetch multiplier 4 (default): the "
                  "broker redelivers the killed worker's unacknowledged messages (running and prefetched) when its "
                  "connection drops",
        "procrastinate": f"2 worker processes × concurrency 1, `update_heartbeat_interval={lease_s / 3:.2f}`, "
                         f"`stalled_worker_timeout={lease_s:g}`, and procrastinate's documented recipe: a periodic "
                         "task (every second, `queueing_lock`) calling `job_manager.get_stalled_jobs("
                         f"seconds_since_heartbeat={lease_s:g})` and `retry_job` for each",
    }[system]


def render_recovery(runs: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    st = meta.get("recovery", {})
    m, task_s, lease_s, limit_s = st.get("tasks"), st.get("task_s"), st.get("lease_s"), st.get("limit_s")
    repeat = max(r["round"] for r in runs)
    lines = [SUBHEADINGS["recovery"], "",
             f"Measured {meta['date']} on {meta['machine']}: {m} tasks of {task_s:g} s on 2 worker processes, each "
             "its own process group; as soon as the first worker is seen running a task, its whole process group is "
             f"SIGKILLed. {repeat} run(s) per system{'' if repeat >= 5 else ' (fewer than the 5 the issue asks for)'}"
             f", medians. A run that has not finished {limit_s:g} s after the kill counts as not recovered.", "",
             "| system | held at kill | left at kill | kill → held task(s) requeued, s | kill → held task(s) "
             "restarted, s | kill → all done, s | survivor-only floor, s | re-run | completed twice | lost | "
             "recovered |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for system in SYSTEMS:
        mine = [r for r in runs if r["system"] == system]
        if not mine:
            continue
        ok = [r for r in mine if "error" not in r]
        done = [r for r in ok if r.get("all_done_s") is not None]
        restarted = [r["restart_s"] for r in ok if r.get("restart_s") is not None]
        requeued = [r["requeued_s"] for r in ok if r.get("requeued_s") is not None]
        cells = [_fmt(med([r["held"] for r in ok]) if ok else None, "g"),
                 _fmt(med([r["left_at_kill"] for r in ok]) if ok else None, "g"),
                 _fmt(med(requeued) if requeued else None),
                 _fmt(med(restarted) if restarted else None),
                 _fmt(med([r["all_done_s"] for r in done]) if done else None),
                 _fmt(med([(r["left_at_kill"] - 1) * task_s for r in ok]) if ok else None, ".1f"),
                 str(sum(r["reran"] for r in ok)), str(sum(r["completed_twice"] for r in ok)),
                 str(sum(r["lost"] for r in ok)),
                 f"{len(done)}/{len(mine)}" + (f" (not within {limit_s:g} s: {len(ok) - len(done)})"
                                                if len(ok) > len(done) else "")
                 + (f", {len(mine) - len(ok)} failed" if len(mine) > len(ok) else "")]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines += ["", "held = tasks the killed worker was running (by their start records); left = tasks not completed "
              "at the kill; requeued = until the system itself gives the held tasks back (geomill: no longer 'proce"
              "ssing' by the dead worker, polled every 20 ms; procrastinate: no longer 'doing' under the dead worke"
              "r's id; Celery: the broker shows 1 consumer left, which is when it returns the dead connection's una"
              "cknowledged messages); restarted = the last held task's new start, which also waits for the survivin"
              "g worker to be free (medians of runs where all restarted); all "
              "done = the last task's completion; survivor-only floor = (left − 1) × task time, what the surviving "
              "worker alone needs anyway; re-run = tasks started more than once, completed twice = tasks whose body "
              "ran to the end twice, lost = never completed (totals over runs).", "",
              "Per run (kill → all done s): " + "; ".join(
                  f"{r['system']} r{r['round']}: " + ("FAILED" if "error" in r else _fmt(r.get("all_done_s")))
                  for r in runs), ""]
    errs = [r for r in runs if "error" in r]
    if errs:
        lines += ["Failures: " + "; ".join(f"{r['system']} r{r['round']}: {r['error'][:200]}" for r in errs), ""]
    lines += ["Recovery mechanism per system:"] + [f"- {s}: {recovery_method(s, lease_s)}." for s in SYSTEMS
                                                   if any(r["system"] == s for r in runs)] + ["", _versions_line(meta),
                                                                                              ""]
    return lines


def existing_subsections(path: Path = BENCHMARKS_MD) -> dict[str, list[str]]:
    """The current section's subsections by part, so a run of some parts keeps the others. A section written before
    the parts existed is all throughput."""
    if not path.exists():
        return {}
    text = path.read_text()
    start = text.find(SECTION + "\n")
    if start < 0:
        return {}
    body = text[start + len(SECTION) + 1:]
    nxt = body.find("\n## ")
    body_lines = (body[:nxt + 1] if nxt >= 0 else body).rstrip("\n").splitlines()
    found: dict[str, list[str]] = {}
    current: str | None = None
    for line in body_lines:
        part = next((p for p, h in SUBHEADINGS.items() if line.startswith(h)), None)
        if part:
            current = part
            found[part] = []
        if current:
            found[current].append(line)
    if not found:  # the old single-table section
        legacy = [ln for ln in body_lines if not ln.startswith(("Reproduce:", "Not done here"))]
        found["throughput"] = [SUBHEADINGS["throughput"], ""] + legacy
    return {p: ls + [""] if ls and ls[-1] else ls for p, ls in found.items()}


def render(args: argparse.Namespace, runs: list[dict[str, Any]], meta: dict[str, Any],
           keep: dict[str, list[str]] | None = None) -> str:
    keep = keep or {}
    lines = [SECTION, "",
             "Three parts, each on this machine's PostgreSQL and RabbitMQ, systems interleaved A B A B ... within a "
             "part: throughput of a 3-stage fan-out, enqueue rate, and recovery after a worker is SIGKILLed.", "",
             "Reproduce (the issue's benchmark; about 1.5–2 hours on 2 CPUs, most of it Celery's confirmed publishes and the 10,000-task throughput runs):", "",
             "```",
             "python -m venv bench/.venv-peers && bench/.venv-peers/bin/pip install -r bench/requirements-peers.txt",
             FULL_COMMAND,
             "# one part only (the other subsections are kept): --parts enqueue recovery; fewer systems: --systems",
             "```", ""]
    renderers = {"throughput": lambda rs: render_throughput(args, rs, meta),
                 "enqueue": lambda rs: render_enqueue(rs, meta), "recovery": lambda rs: render_recovery(rs, meta)}
    for part in PARTS:
        mine = [r for r in runs if r.get("part", "throughput") == part]
        if mine:
            lines += renderers[part](mine)
        elif part in keep:
            lines += keep[part]
        else:
            lines += [SUBHEADINGS[part], "", f"Not measured yet: `{FULL_COMMAND} --parts {part}`.", ""]
    out: list[str] = []
    for line in lines:  # no runs of blank lines
        if not (line == "" and out and out[-1] == ""):
            out.append(line)
    return "\n".join(out)


def update_benchmarks_md(section: str) -> None:
    update_section(SECTION, section)


def _record(part: str, system: str, rnd: int, fn: Any, **extra: Any) -> dict[str, Any]:
    waited = wait_no_other_bench()
    rec: dict[str, Any] = {"part": part, "system": system, "round": rnd, **extra, "waited_s": round(waited, 1)}
    try:
        rec.update(fn())
    except Exception as exc:  # noqa: BLE001 - a failed run is reported, the others go on
        rec["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(rec), flush=True)
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000], help="throughput: tasks per stage")
    p.add_argument("--repeat", type=int, default=5, help="runs per system (per size), medians reported")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--enqueue-n", type=int, default=100_000, help="enqueue: tasks")
    p.add_argument("--enqueue-limit-s", type=float, default=900)
    p.add_argument("--recovery-tasks", type=int, default=10)
    p.add_argument("--recovery-task-s", type=float, default=1.0)
    p.add_argument("--lease-seconds", type=float, default=5.0,
                   help="recovery: geomill's lease and procrastinate's stalled-worker age")
    p.add_argument("--recovery-limit-s", type=float, default=180, help="recovery: give up this long after the kill")
    p.add_argument("--no-write-md", action="store_true")
    p.add_argument("--render-only", type=Path, help="write the section from a saved runs.json (e.g. a cut-short run)")
    args = p.parse_args(argv)
    if args.render_only:
        saved = json.loads(args.render_only.read_text())
        section = render(args, saved["runs"], saved["meta"], existing_subsections())
        print(section)
        if not args.no_write_md:
            update_benchmarks_md(section)
        return 0
    if not PEERS_PY.exists():
        sys.exit(f"missing {PEERS_PY}: python -m venv bench/.venv-peers && "
                 "bench/.venv-peers/bin/pip install -r bench/requirements-peers.txt")
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} CPUs, {platform.platform()}", "versions": versions(),
            "recovery": {"tasks": args.recovery_tasks, "task_s": args.recovery_task_s, "lease_s": args.lease_seconds,
                         "limit_s": args.recovery_limit_s}}
    runs: list[dict[str, Any]] = []

    def save() -> None:
        (OUT / "runs.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))

    if "throughput" in args.parts:
        for n in args.sizes:
            for rnd in range(1, args.repeat + 1):
                for system in args.systems:
                    def one(system: str = system, n: int = n) -> dict[str, Any]:
                        out = (run_geomill(n, broker=system == "geomill-rabbit") if system.startswith("geomill")
                               else run_peer(system, n))
                        out["tasks_per_s"] = 3 * n / out["processing_s"]
                        return out
                    runs.append(_record("throughput", system, rnd, one, n=n))
                    save()
    if "enqueue" in args.parts:
        n, limit = args.enqueue_n, args.enqueue_limit_s
        for rnd in range(1, args.repeat + 1):
            for system in args.systems:
                runs.append(_record("enqueue", system, rnd, (
                    (lambda s=system: enqueue_geomill(n, s == "geomill-rabbit", limit)) if system.startswith("geomill")
                    else (lambda s=system: enqueue_peer(s, n, limit))), n=n))
                save()
    if "recovery" in args.parts:
        m, task_s, lease, limit = (args.recovery_tasks, args.recovery_task_s, args.lease_seconds,
                                   args.recovery_limit_s)
        for rnd in range(1, args.repeat + 1):
            for system in args.systems:
                runs.append(_record("recovery", system, rnd, (
                    (lambda s=system: recovery_geomill(m, task_s, s == "geomill-rabbit", lease, limit))
                    if system.startswith("geomill") else (lambda s=system: recovery_peer(s, m, task_s, lease, limit))),
                    tasks=m))
                save()
    section = render(args, runs, meta, existing_subsections())
    print(section)
    if not args.no_write_md:
        update_benchmarks_md(section)
    return 0


ROLES = {
    "_celery-setup": lambda: celery_setup(),
    "_celery-drive": lambda: celery_drive(),
    "_celery-enqueue": lambda: celery_enqueue(),
    "_celery-recovery-submit": lambda: celery_recovery_submit(),
    "_procrastinate-setup": lambda: asyncio.run(procrastinate_setup()),
    "_procrastinate-worker": lambda: asyncio.run(procrastinate_worker()),
    "_procrastinate-drive": lambda: asyncio.run(procrastinate_drive()),
    "_procrastinate-enqueue": lambda: asyncio.run(procrastinate_enqueue()),
    "_procrastinate-recovery-submit": lambda: asyncio.run(procrastinate_recovery_submit()),
}

if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1].startswith("_"):
        sys.modules.setdefault("peers", sys.modules["__main__"])
        if sys.argv[1] not in ROLES:
            sys.exit(f"unknown role {sys.argv[1]}")
        ROLES[sys.argv[1]]()
        sys.exit(0)
    sys.exit(main())
