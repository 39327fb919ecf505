"""bench/queue_harness/geomill_adapter.py speaks the protocol of hardbyte/postgresql-job-queue-benchmarking's harness:
started the way the harness starts an adapter (its environment variables, a postgres:// URL, stdin a pipe), it prints
a descriptor and JSON samples with the required metrics, enqueues exactly what `ENQUEUE <n>` lines ask for, ignores
other stdin lines, and exits 0 on SIGTERM; the jobs really ran, each once, in PostgreSQL."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from services import fresh_database

REPO = Path(__file__).resolve().parents[2]
ADAPTER_DIR = REPO / "bench" / "queue_harness"
REQUIRED = {"claim_p50_ms", "claim_p95_ms", "claim_p99_ms", "enqueue_rate", "completion_rate", "queue_depth"}
SAMPLE_KEYS = {"t", "system", "kind", "subject_kind", "subject", "metric", "value", "window_s"}
ENQUEUED = 5


def _launch(db_url: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_")}
    env.update(DATABASE_URL=db_url.replace("postgresql://", "postgres://"), SCENARIO="long_horizon",
               PRODUCER_MODE="fixed", PRODUCER_RATE="5", PRODUCER_PACING="harness", PRODUCER_BATCH_MAX="128",
               TARGET_DEPTH="1000", WORKER_COUNT="8", JOB_PAYLOAD_BYTES="256", JOB_WORK_MS="1",
               SAMPLE_EVERY_S="1", BENCH_INSTANCE_ID="0", PYTHONPATH=str(REPO / "src"),
               GEOMILL_DATA_DIR=str(data_dir), GEOMILL_ADAPTER_MARKERS="1")
    return subprocess.Popen([sys.executable, str(ADAPTER_DIR / "geomill_adapter.py")], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=1)


def _reader(proc: subprocess.Popen[str], out: queue.Queue[str]) -> threading.Thread:
    assert proc.stdout is not None
    thread = threading.Thread(target=lambda: [out.put(line) for line in proc.stdout], daemon=True)  # type: ignore[union-attr]
    thread.start()
    return thread


def _job_states(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as con:
        return con.execute("SELECT j.status, t.status, t.attempt, t.task_id FROM jobs j JOIN tasks t USING (job_id) "
                           "WHERE j.job_type = 'harness_job'").fetchall()


def _wait_until_done(db_url: str, proc: subprocess.Popen[str], limit_s: float = 60) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            rows = _job_states(db_url)
        except psycopg.errors.UndefinedTable:  # the adapter is still migrating
            rows = []
        if len(rows) >= ENQUEUED and all(r[0] == "completed" for r in rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"the jobs did not complete: {rows if proc.poll() is None else proc.returncode}")


def _samples_until_reported(lines: queue.Queue[str], proc: subprocess.Popen[str],
                            limit_s: float = 30) -> list[dict[str, Any]]:
    """The sample records printed until one reports completions and one a pickup latency (ticks are 1 s apart)."""
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            samples.append(json.loads(lines.get(timeout=0.5)))
        except queue.Empty:
            continue
        seen = {s["metric"] for s in samples if s["value"] > 0}
        if {"completion_rate", "claim_p50_ms"} <= seen:
            break
    return samples


def test_adapter_speaks_the_harness_protocol(tmp_path: Path) -> None:
    with fresh_database("geomill_qharness") as db_url:
        proc = _launch(db_url, tmp_path / "data")
        lines: queue.Queue[str] = queue.Queue()
        reader = _reader(proc, lines)
        try:
            descriptor = json.loads(lines.get(timeout=60))
            assert proc.stdin is not None
            proc.stdin.write("ENQUEUE 3\nnot a token\nENQUEUE 2\n")  # what the harness pacer writes, plus noise
            proc.stdin.flush()
            _wait_until_done(db_url, proc)
            samples = _samples_until_reported(lines, proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            reader.join(timeout=5)
        assert code == 0
        samples += [json.loads(line) for line in list(lines.queue) if line.strip()]  # the rest of the last ticks

        manifest = json.loads((ADAPTER_DIR / "adapter.json").read_text())
        assert descriptor["kind"] == "descriptor" and descriptor["system"] == manifest["system"] == "geomill"
        assert set(manifest["event_tables"]) <= set(descriptor["event_tables"])
        assert set(manifest["extensions"]) <= set(descriptor["extensions"])
        assert descriptor["db_name"] == db_url.rsplit("/", 1)[1]

        assert samples and all(SAMPLE_KEYS <= set(s) and s["kind"] == s["subject_kind"] == "adapter"
                               and s["system"] == "geomill" and isinstance(s["value"], float) for s in samples)
        assert REQUIRED <= {s["metric"] for s in samples}
        assert max(s["value"] for s in samples if s["metric"] == "completion_rate") > 0
        assert max(s["value"] for s in samples if s["metric"] == "claim_p50_ms") > 0
        assert max(s["value"] for s in samples if s["metric"] == "enqueue_rate") > 0

        # exactly the 5 jobs asked for, each one task that ran once (one marker line per execution)
        rows = _job_states(db_url)  # after the exit: nothing more was submitted
        assert len(rows) == ENQUEUED and {(r[0], r[1], r[2]) for r in rows} == {("completed", "completed", 1)}
        executions = [line.split()[0] for f in (tmp_path / "data" / "markers").iterdir()
                      for line in f.read_text().splitlines()]
        assert sorted(executions) == sorted(r[3] for r in rows)
