#!/usr/bin/env python
"""geomill as an adapter of the public harness hardbyte/postgresql-job-queue-benchmarking (its `long_horizon`
contract, CONTRIBUTING_ADAPTERS.md there): one long-running process, configured by environment variables, that
prints one JSON record per line on stdout (a descriptor at start, then samples every SAMPLE_EVERY_S) and, with
PRODUCER_PACING=harness (the harness's default), enqueues the jobs the harness asks for with `ENQUEUE <n>` lines on
its stdin. Logs go to stderr. SIGTERM: stop producing, drain the workers, stop the geomill processes, exit 0.

A harness job is one geomill job with one task: the job type `harness_job` (harness_job.py beside this file, loaded
as a plugin: one stage, one `demo.work` task) with sleep_s=JOB_WORK_MS and a unique tag, submitted through the
service layer (`geomill.service.submit.submit`, the path the CLI and the HTTP API take) into the PostgreSQL store at
DATABASE_URL. The work is done by real `geomill serve --no-http` processes that
this adapter starts and stops (GEOMILL_BENCH_LAYOUT, GEOMILL_BENCH_PROCESSES: see serve_commands); every state change
is durable.

Observation reads the store's tables (jobs, tasks) by SQL: pickup latency (the contract's `claim_*`) = the task's
execution_started_at - the job's created_at (submit -> worker start, planner step included), end-to-end = the job's
finished_at - created_at, both on the database clock; queue_depth = queued tasks + jobs not yet planned.

Run it with geomill's venv and its source first on the path, e.g.
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/geomill_bench PRODUCER_RATE=200 SAMPLE_EVERY_S=2 \
      PRODUCER_PACING=adapter PYTHONPATH=src .venv/bin/python bench/queue_harness/geomill_adapter.py
or through the harness with bench/queue_harness/run_harness.py (README.md beside this file).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

SYSTEM = "geomill"
HERE = Path(__file__).resolve().parent
PLUGINS = ["harness_job"]  # harness_job.py beside this file
JOB_TYPE = "harness_job"
EVENT_TABLES = ["public.jobs", "public.stages", "public.tasks", "public.events"]
OBSERVER_METRICS = frozenset({"queue_depth", "producer_target_rate"})
LATENCY_WINDOW_S = 30.0
OVERLAP_S = 5.0  # finished rows committed up to this late behind the watermark are still seen (deduplicated by id)


def env_int(key: str, default: int) -> int:
    value = os.environ.get(key)
    return int(value) if value not in (None, "") else default


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instance_id() -> int:
    return env_int("BENCH_INSTANCE_ID", 0)


def emit(record: dict[str, Any]) -> None:
    record.setdefault("instance_id", instance_id())
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    print(f"[geomill-adapter] {message}", file=sys.stderr, flush=True)


def percentiles(events: deque[tuple[float, float]], now: float) -> tuple[float, float, float]:
    """p50/p95/p99 of the values recorded in the last LATENCY_WINDOW_S (bounded: the deque has a maxlen)."""
    values = sorted(v for t, v in list(events) if t >= now - LATENCY_WINDOW_S)
    if not values:
        return 0.0, 0.0, 0.0
    n = len(values)
    return tuple(values[min(n - 1, round(p * (n - 1)))] for p in (0.50, 0.95, 0.99))  # type: ignore[return-value]


def pg_url(url: str) -> str:
    """geomill's store takes postgresql://; the harness hands out postgres://."""
    return "postgresql://" + url.removeprefix("postgres://") if url.startswith("postgres://") else url


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enqueued = 0
        self.completed = 0
        self.failed = 0
        self.queue_depth = 0
        self.claim_ms: deque[tuple[float, float]] = deque(maxlen=32768)
        self.e2e_ms: deque[tuple[float, float]] = deque(maxlen=32768)


class Adapter:
    def __init__(self) -> None:
        self.database_url = pg_url(os.environ["DATABASE_URL"])
        self.sample_every_s = max(1, env_int("SAMPLE_EVERY_S", 5))
        self.producer_rate = env_int("PRODUCER_RATE", 800)
        self.batch_max = max(1, env_int("PRODUCER_BATCH_MAX", 128))
        self.batch_ms = max(1, env_int("PRODUCER_BATCH_MS", 25))
        self.pacing = os.environ.get("PRODUCER_PACING", "harness")
        self.producer_mode = os.environ.get("PRODUCER_MODE", "fixed")
        self.target_depth = env_int("TARGET_DEPTH", 1000)
        self.work_s = env_int("JOB_WORK_MS", 1) / 1000.0
        self.processes = max(1, env_int("GEOMILL_BENCH_PROCESSES", 2))
        self.submitters = max(1, env_int("GEOMILL_BENCH_SUBMITTERS", 2))
        self.data_dir = Path(os.environ.get("GEOMILL_DATA_DIR") or tempfile.mkdtemp(prefix="geomill-adapter-"))
        self.markers = os.environ.get("GEOMILL_ADAPTER_MARKERS", "") == "1"  # tests: count executions on disk
        self.run_tag = secrets.token_hex(4)
        self.stop = threading.Event()
        self.counters = Counters()
        self.tokens: queue.Queue[int] = queue.Queue()
        self.seq = 0
        self.seq_lock = threading.Lock()
        self.layout = os.environ.get("GEOMILL_BENCH_LAYOUT", "split")
        self.serves: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------------ setup

    def settings_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_")}
        env.update(GEOMILL_DATABASE_URL=self.database_url, GEOMILL_DATA_DIR=str(self.data_dir),
                   GEOMILL_PLUGINS=json.dumps(PLUGINS), GEOMILL_WORKERS=str(self.processes),
                   GEOMILL_LOG_LEVEL="WARNING")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
        return env

    def open_runtime(self) -> Any:
        from geomill.config import Settings
        from geomill.runtime import Runtime

        settings = Settings(database_url=self.database_url, data_dir=self.data_dir, plugins=PLUGINS,
                            workers=self.processes)
        return Runtime.open(settings)  # migrates the schema (idempotent)

    def serve_commands(self) -> list[list[str]]:
        """`split` (default): one planner process (`serve --mode platform_only`) and GEOMILL_BENCH_PROCESSES - 1
        task worker processes (`serve --queues default-tasks`), the platform layout; `standalone`: GEOMILL_BENCH_
        PROCESSES processes that each plan and run tasks (`serve -w N`, the out-of-the-box default)."""
        geomill = [sys.executable, "-c", "from geomill.cli import main; main()", "serve", "--no-http"]
        if self.layout == "standalone":
            return [[*geomill, "-w", str(self.processes)]]
        workers = str(max(1, self.processes - 1))
        return [[*geomill, "--mode", "platform_only", "-w", "1"],
                [*geomill, "--queues", "default-tasks", "-w", workers]]

    def start_workers(self) -> None:
        for cmd in self.serve_commands():
            self.serves.append(subprocess.Popen(cmd, env=self.settings_env(), stdin=subprocess.DEVNULL,
                                                stdout=sys.stderr, stderr=sys.stderr, start_new_session=True))

    def workers_exited(self) -> int | None:
        codes = [p.returncode for p in self.serves if p.poll() is not None]
        return codes[0] if codes else None

    def stop_workers(self, grace_s: float = 4.0) -> None:
        live = [p for p in self.serves if p.poll() is None]
        for p in live:
            os.killpg(p.pid, signal.SIGTERM)  # serve drains: running tasks finish first
        deadline = time.monotonic() + grace_s
        for p in live:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    # ------------------------------------------------------------------ producing

    def params(self) -> dict[str, Any]:
        with self.seq_lock:
            self.seq += 1
            seq = self.seq
        out: dict[str, Any] = {"sleep_s": self.work_s, "tag": f"harness-{self.run_tag}-{instance_id()}-{seq}"}
        if self.markers:
            out["marker_dir"] = str(self.data_dir / "markers")
        return out

    def submitter(self, rt: Any) -> None:
        from geomill.service.submit import submit

        while not self.stop.is_set():
            try:
                n = self.tokens.get(timeout=0.1)
            except queue.Empty:
                continue
            for _ in range(n):
                if self.stop.is_set():
                    return
                try:
                    submit(rt, JOB_TYPE, self.params(), restricted=False)
                except Exception as exc:  # a failed insert is logged, the run goes on
                    log(f"submit failed: {exc}")
                    continue
                with self.counters.lock:
                    self.counters.enqueued += 1

    def read_stdin_tokens(self) -> None:
        """`ENQUEUE <n>` lines from the harness pacer; anything else is ignored."""
        for line in sys.stdin:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "ENQUEUE" and parts[1].isdigit() and not self.stop.is_set():
                self.tokens.put(int(parts[1]))

    def local_pacer(self) -> None:
        """PRODUCER_PACING=adapter: credit offered load on real elapsed time (the contract's normative loop); in
        depth-target mode top the queue up to TARGET_DEPTH."""
        last = time.monotonic()
        credit = 0.0
        while not self.stop.wait(self.batch_ms / 1000.0):
            if self.producer_mode == "depth-target":
                missing = self.target_depth - self.counters.queue_depth - self.tokens.qsize() * self.batch_max
                if missing > 0:
                    self.tokens.put(min(missing, self.batch_max))
                continue
            now = time.monotonic()
            credit += self.producer_rate * (now - last)
            last = now
            while credit >= 1:
                n = min(int(credit), self.batch_max)
                self.tokens.put(n)
                credit -= n

    # ------------------------------------------------------------------ observing

    def observer(self) -> None:
        import psycopg

        seen: dict[str, float] = {}  # job ids counted, with their finish time, pruned past the overlap
        with psycopg.connect(self.database_url, autocommit=True) as con:
            watermark = con.execute("SELECT now() - interval '1 hour'").fetchone()[0]  # type: ignore[index]
            while not self.stop.wait(0.25):
                rows = con.execute(
                    "SELECT j.job_id, j.status, extract(epoch FROM j.finished_at),"
                    " extract(epoch FROM t.execution_started_at - j.created_at) * 1000,"
                    " extract(epoch FROM j.finished_at - j.created_at) * 1000"
                    " FROM jobs j LEFT JOIN tasks t ON t.job_id = j.job_id"
                    " WHERE j.finished_at > %s - interval '5 seconds' AND j.job_type = %s"
                    " ORDER BY j.finished_at", (watermark, JOB_TYPE)).fetchall()
                depth = con.execute(
                    "SELECT (SELECT count(*) FROM tasks WHERE status = 'queued')"
                    " + (SELECT count(*) FROM jobs WHERE status = 'queued')").fetchone()[0]  # type: ignore[index]
                self.record(rows, seen, depth)
                if rows:
                    watermark = dt.datetime.fromtimestamp(float(rows[-1][2]), dt.UTC)
                horizon = (watermark.timestamp() if rows else time.time()) - 2 * OVERLAP_S
                for job_id in [k for k, t in seen.items() if t < horizon]:
                    del seen[job_id]

    def record(self, rows: list[tuple[Any, ...]], seen: dict[str, float], depth: int) -> None:
        now = time.monotonic()
        c = self.counters
        with c.lock:
            c.queue_depth = int(depth)
            for job_id, status, finished, claim_ms, e2e_ms in rows:
                if job_id in seen:
                    continue
                seen[job_id] = float(finished)
                if status != "completed":
                    c.failed += 1
                    continue
                c.completed += 1
                if claim_ms is not None:
                    c.claim_ms.append((now, float(claim_ms)))
                c.e2e_ms.append((now, float(e2e_ms)))

    # ------------------------------------------------------------------ sampling

    def sample(self, last: dict[str, float]) -> None:
        now = time.monotonic()
        c = self.counters
        with c.lock:
            enqueued, completed, depth = c.enqueued, c.completed, c.queue_depth
            claim = percentiles(c.claim_ms, now)
            e2e = percentiles(c.e2e_ms, now)
        elapsed = max(0.001, now - last["t"])
        rates = ((enqueued - last["enqueued"]) / elapsed, (completed - last["completed"]) / elapsed)
        last.update(t=now, enqueued=enqueued, completed=completed)
        target = 0.0 if self.producer_mode == "depth-target" else float(self.producer_rate)
        ts = now_iso()
        metrics = [("claim_p50_ms", claim[0], 30.0), ("claim_p95_ms", claim[1], 30.0),
                   ("claim_p99_ms", claim[2], 30.0), ("end_to_end_p50_ms", e2e[0], 30.0),
                   ("end_to_end_p95_ms", e2e[1], 30.0), ("end_to_end_p99_ms", e2e[2], 30.0),
                   ("enqueue_rate", rates[0], float(self.sample_every_s)),
                   ("completion_rate", rates[1], float(self.sample_every_s)),
                   ("queue_depth", float(depth), 0.0), ("producer_target_rate", target, 0.0)]
        for metric, value, window in metrics:
            if metric in OBSERVER_METRICS and instance_id() != 0:
                continue
            emit({"t": ts, "system": SYSTEM, "kind": "adapter", "subject_kind": "adapter", "subject": "",
                  "metric": metric, "value": value, "window_s": window})

    def sampler(self) -> None:
        # clock-aligned: every tick on a wall-clock multiple of SAMPLE_EVERY_S
        last = {"t": time.monotonic(), "enqueued": 0.0, "completed": 0.0}
        while not self.stop.wait(self.sample_every_s - time.time() % self.sample_every_s):
            self.sample(last)

    # ------------------------------------------------------------------ main

    def run(self) -> int:
        shutdown = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: shutdown.set())
        signal.signal(signal.SIGINT, lambda *_: shutdown.set())
        rt = self.open_runtime()
        if self.markers:
            (self.data_dir / "markers").mkdir(parents=True, exist_ok=True)
        self.start_workers()
        emit({"kind": "descriptor", "system": SYSTEM, "event_tables": EVENT_TABLES, "extensions": [],
              "version": geomill_version(), "schema_version": "geomill migrations",
              "db_name": (urlparse(self.database_url).path or "/").lstrip("/"), "started_at": now_iso()})
        threads = [threading.Thread(target=self.observer, name="observer", daemon=True),
                   threading.Thread(target=self.sampler, name="sampler", daemon=True)]
        threads += [threading.Thread(target=self.submitter, args=(rt,), name=f"submit-{i}", daemon=True)
                    for i in range(self.submitters)]
        harness_paced = self.pacing == "harness" and self.producer_mode == "fixed"
        pacer = self.read_stdin_tokens if harness_paced else self.local_pacer
        threads.append(threading.Thread(target=pacer, name="pacer", daemon=True))
        for t in threads:
            t.start()
        try:
            while not shutdown.wait(0.5):
                if (code := self.workers_exited()) is not None:
                    log(f"geomill serve exited {code}")
                    return 1
        finally:  # every way out stops the geomill processes (their own sessions: nobody else would)
            self.stop.set()
            self.stop_workers()
        for t in threads[:3]:
            t.join(timeout=1.0)
        with self.counters.lock:
            log(f"stopped: enqueued {self.counters.enqueued}, completed {self.counters.completed}, "
                f"failed {self.counters.failed}")
        rt.store.close()
        return 0


def geomill_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("geomill")
    except importlib.metadata.PackageNotFoundError:
        return "source"


def main() -> int:
    scenario = os.environ.get("SCENARIO", "long_horizon")
    if scenario != "long_horizon":
        log(f"SCENARIO={scenario!r}: only long_horizon is implemented")
        return 2
    return Adapter().run()


if __name__ == "__main__":
    raise SystemExit(main())
