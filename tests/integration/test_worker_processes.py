"""Real worker processes (`geomill worker` subprocesses) against one SQLite file: concurrency and crashes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

GEOMILL = [sys.executable, "-m", "geomill.cli"]


def _env(data_dir: Path, **settings: object) -> dict[str, str]:
    env = dict(os.environ, GEOMILL_DATA_DIR=str(data_dir))
    env.update({f"GEOMILL_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GEOMILL, *args], env=env, capture_output=True, text=True, timeout=120)


def _start_worker(env: dict[str, str], processes: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*GEOMILL, "worker", "--processes", str(processes)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _status(env: dict[str, str], job_id: str) -> dict:
    proc = _cli(env, "status", job_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _wait_terminal(env: dict[str, str], job_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = _status(env, job_id)
        if doc["status"] not in ("queued", "processing"):
            return doc
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {doc}")


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _tasks(data_dir: Path, job_id: str) -> list[sqlite3.Row]:
    con = sqlite3.connect(data_dir / "geomill.db")
    con.row_factory = sqlite3.Row
    try:
        return con.execute("SELECT * FROM tasks WHERE job_id = ? ORDER BY stage, task_key", (job_id,)).fetchall()
    finally:
        con.close()


def _submit(env: dict[str, str], **params: object) -> str:
    args = [a for k, v in params.items() for a in ("-p", f"{k}={json.dumps(v)}")]
    proc = _cli(env, "submit", "fanout", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_thousand_task_stage_four_processes_advances_exactly_once(tmp_path: Path) -> None:
    """2 `geomill worker` processes x 2 worker processes = 4 workers (and 2 janitors) on 2 x 1,000 tasks."""
    markers = tmp_path / "markers"
    markers.mkdir()
    env = _env(tmp_path / "data", janitor_interval_seconds=0.5, stall_grace_seconds=1)
    job_id = _submit(env, n=1000, stages=2, marker_dir=str(markers))
    workers = [_start_worker(env, 2), _start_worker(env, 2)]
    try:
        doc = _wait_terminal(env, job_id, timeout=300)
    finally:
        _stop(*workers)
    assert doc["status"] == "completed", doc
    assert doc["advances"] == doc["stage_count"] + 1  # each compare-and-set happened once
    assert [s["total"] for s in doc["stages"]] == [1000, 1000, 0]
    assert all(s["completed"] == s["total"] for s in doc["stages"])
    tasks = _tasks(tmp_path / "data", job_id)
    assert len(tasks) == 2000
    assert {t["attempt"] for t in tasks} == {1}
    runs = {p.name: p.read_text().splitlines() for p in markers.iterdir()}
    assert len(runs) == 2000 and all(len(lines) == 1 for lines in runs.values())
    assert len({t["executed_by_app"] for t in tasks}) >= 2  # the work was really shared


def _wait_processing(data_dir: Path, job_id: str, timeout: float = 60) -> sqlite3.Row:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [t for t in _tasks(data_dir, job_id) if t["status"] == "processing"]
        if running:
            return running[0]
        time.sleep(0.1)
    raise AssertionError("no task started")


@pytest.mark.slow
def test_sigkill_worker_process_mid_task_is_reclaimed_after_lease(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    data = tmp_path / "data"
    env = _env(data, lease_seconds=2, janitor_interval_seconds=0.3)
    job_id = _submit(env, n=4, sleep_s=3, marker_dir=str(markers))
    worker = _start_worker(env, 2)
    try:
        victim = _wait_processing(data, job_id)
        pid = int(victim["executed_by_app"].rsplit("#", 1)[1])
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        doc = _wait_terminal(env, job_id, timeout=120)
    finally:
        _stop(worker)
    assert doc["status"] == "completed", doc
    tasks = {t["task_id"]: t for t in _tasks(data, job_id)}
    redone = tasks[victim["task_id"]]
    assert redone["attempt"] == 2 and redone["status"] == "completed"
    assert time.monotonic() - killed_at >= 2  # not before its lease ran out
    assert sum(t["attempt"] for t in tasks.values()) == 5  # nothing else was redone
    assert all(len((markers / t["task_key"]).read_text().splitlines()) == 1 for t in tasks.values())


@pytest.mark.slow
def test_whole_worker_killed_then_new_worker_finishes_the_job(tmp_path: Path) -> None:
    """The supervisor and its children all die (SIGKILL to the process group): a fresh worker heals the job."""
    data = tmp_path / "data"
    env = _env(data, lease_seconds=2, janitor_interval_seconds=0.3)
    job_id = _submit(env, n=3, sleep_s=2, tag="whole-worker")
    first = _start_worker(env, 2)
    _wait_processing(data, job_id)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    second = _start_worker(env, 2)
    try:
        doc = _wait_terminal(env, job_id, timeout=120)
    finally:
        _stop(second)
    assert doc["status"] == "completed", doc
    attempts = sorted(t["attempt"] for t in _tasks(data, job_id))
    assert attempts[-1] == 2 and attempts[0] == 1


def test_sigterm_drains_running_task(tmp_path: Path) -> None:
    """SIGTERM: the worker stops claiming but finishes the task it runs (no lost or repeated attempt)."""
    data = tmp_path / "data"
    env = _env(data, lease_seconds=30, shutdown_grace_seconds=20)
    job_id = _submit(env, n=1, sleep_s=2, tag="drain")
    worker = _start_worker(env, 1)
    victim = _wait_processing(data, job_id)
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(30) == 0
    task = next(t for t in _tasks(data, job_id) if t["task_id"] == victim["task_id"])
    assert task["status"] == "completed" and task["attempt"] == 1
