#!/usr/bin/env python
"""Benchmark: geomill against the tools users would pick instead, in one run, A B A B ...

Workload: 3 stages x N no-op tasks; stage k+1 starts when all N tasks of stage k are done; 2 worker processes.

    bench/.venv-peers/bin/pip install -r bench/requirements-peers.txt   # once (venv: python -m venv bench/.venv-peers)
    .venv/bin/python bench/peers.py                                     # N = 1,000; 3 rounds; BENCHMARKS.md
    .venv/bin/python bench/peers.py --sizes 1000 10000 --repeat 5
    .venv/bin/python bench/peers.py --sizes 1000 --repeat 1 --no-write-md

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


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_")}
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
        subprocess.run([exe, "db", "upgrade", *data], env=env, cwd=workdir, check=True, capture_output=True)
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
        subprocess.run([str(PEERS_PY), __file__, f"_{system}-setup"], env=env, cwd=BENCH_DIR, check=True,
                       capture_output=True, timeout=120)
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
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        worker_prefetch_multiplier=4,        # default
        task_acks_late=False,                # default
        broker_transport_options={"confirm_publish": False},  # default: no publisher confirms
        result_chord_retry_interval=1.0,     # default: chord_unlock polls the DB backend every second
        database_create_tables_at_setup=True,
        worker_hijack_root_logger=False,
    )

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
    return app


async def procrastinate_setup() -> None:
    app = _make_proc_app()
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(
            "CREATE TABLE peers_stage (stage int PRIMARY KEY, remaining int NOT NULL)")


async def procrastinate_worker() -> None:
    app = _make_proc_app()
    async with app.open_async():
        print("READY", flush=True)
        await app.run_worker_async(queues=["peers"], concurrency=PROC_CONCURRENCY, install_signal_handlers=True)


async def procrastinate_drive() -> None:
    n = int(os.environ["PEERS_N"])
    app = _make_proc_app()
    async with app.open_async():
        t0 = time.time()
        await app.advance(0, n)  # inserts stage 1's counter row and batch-defers its N tasks
    done = _wait_done(Path(os.environ["PEERS_DONE_FILE"]))
    print(json.dumps({"processing_s": done - t0}))


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


def render(args: argparse.Namespace, runs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    sizes = args.sizes
    lines = [SECTION, "",
             f"Measured {meta['date']} on {meta['machine']}, one run, A B A B ... ({args.repeat} rounds per size"
             f"{'' if args.repeat >= 3 else ', fewer than the 3 asked for: short of time'}). Workload: 3 stages x N "
             "no-op tasks, stage k+1 starts when all N of stage k are done, 2 worker processes. "
             "tasks/s = 3N / processing time (median of rounds); ratio = that system's tasks/s / geomill-pg's.", "",
             "Reproduce: `python -m venv bench/.venv-peers && bench/.venv-peers/bin/pip install -r "
             f"bench/requirements-peers.txt && .venv/bin/python bench/peers.py --sizes {' '.join(map(str, sizes))} "
             f"--repeat {args.repeat}`", ""]
    head = "| system | " + " | ".join(f"N = {n:,}: tasks/s (ratio) | processing / wall s" for n in sizes) + " |"
    lines += [head, "|---|" + "---|---|" * len(sizes)]
    base = {n: med([r["processing_s"] for r in runs if r["system"] == "geomill-pg" and r["n"] == n and "error" not in r])
            for n in sizes}
    for system in args.systems:
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
    lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", "",
              "Settings and guarantees:",
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
              "procrastinate 3.10, 2 × concurrency 4, counter-row fan-in 606 / 615.", "",
              "Not done here (asked in issue 5): 5 rounds, enqueue rate for 100,000 tasks, recovery time after "
              "SIGKILL of a worker, rows/fsyncs per task for the peers.", ""]
    return "\n".join(lines)



def update_benchmarks_md(section: str) -> None:
    update_section(SECTION, section)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--no-write-md", action="store_true")
    p.add_argument("--render-only", type=Path, help="write the section from a saved runs.json (e.g. a cut-short run)")
    args = p.parse_args(argv)
    if args.render_only:
        saved = json.loads(args.render_only.read_text())
        runs = saved["runs"]
        args.sizes = sorted({r["n"] for r in runs})
        args.repeat = max(r["round"] for r in runs)
        section = render(args, runs, saved["meta"])
        print(section)
        if not args.no_write_md:
            update_benchmarks_md(section)
        return 0
    if not PEERS_PY.exists():
        sys.exit(f"missing {PEERS_PY}: python -m venv bench/.venv-peers && "
                 "bench/.venv-peers/bin/pip install -r bench/requirements-peers.txt")
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} CPUs, {platform.platform()}", "versions": versions()}
    runs: list[dict[str, Any]] = []
    for n in args.sizes:
        for rnd in range(1, args.repeat + 1):
            for system in args.systems:
                waited = wait_no_other_bench()
                rec: dict[str, Any] = {"system": system, "n": n, "round": rnd, "waited_s": round(waited, 1)}
                try:
                    if system.startswith("geomill"):
                        rec.update(run_geomill(n, broker=system == "geomill-rabbit"))
                    else:
                        rec.update(run_peer(system, n))
                    rec["tasks_per_s"] = 3 * n / rec["processing_s"]
                except Exception as exc:  # noqa: BLE001 - a failed run is reported, the others go on
                    rec["error"] = f"{type(exc).__name__}: {exc}"
                runs.append(rec)
                print(json.dumps(rec), flush=True)
                (OUT / "runs.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    section = render(args, runs, meta)
    print(section)
    if not args.no_write_md:
        update_benchmarks_md(section)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1].startswith("_"):
        role = sys.argv[1]
        sys.modules.setdefault("peers", sys.modules["__main__"])
        if role == "_celery-setup":
            celery_setup()
        elif role == "_celery-drive":
            celery_drive()
        elif role == "_procrastinate-setup":
            asyncio.run(procrastinate_setup())
        elif role == "_procrastinate-worker":
            asyncio.run(procrastinate_worker())
        elif role == "_procrastinate-drive":
            asyncio.run(procrastinate_drive())
        else:
            sys.exit(f"unknown role {role}")
        sys.exit(0)
    sys.exit(main())
