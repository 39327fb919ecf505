"""Real worker processes (`geomill worker` subprocesses) against one SQLite file: concurrency and crashes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from procs import geomill_env, sqlite_rows, start_worker, stop, submit, wait_processing, wait_terminal


def _tasks(data_dir: Path, job_id: str) -> list:
    return sqlite_rows(data_dir, "SELECT * FROM tasks WHERE job_id = ? ORDER BY stage, task_key", job_id)


def test_thousand_task_stage_four_processes_advances_exactly_once(tmp_path: Path) -> None:
    """2 `geomill worker` processes x 2 worker processes = 4 workers (and 2 janitors) on 2 x 1,000 tasks."""
    markers = tmp_path / "markers"
    markers.mkdir()
    env = geomill_env(tmp_path / "data", janitor_interval_seconds=0.5, stall_grace_seconds=1)
    job_id = submit(env, n=1000, stages=2, marker_dir=str(markers))
    workers = [start_worker(env, 2), start_worker(env, 2)]
    try:
        doc = wait_terminal(env, job_id, timeout=300)
    finally:
        stop(*workers)
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


@pytest.mark.slow
def test_sigkill_worker_process_mid_task_is_reclaimed_after_lease(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    data = tmp_path / "data"
    env = geomill_env(data, lease_seconds=2, janitor_interval_seconds=0.3)
    job_id = submit(env, n=4, sleep_s=3, marker_dir=str(markers))
    worker = start_worker(env, 2)
    try:
        victim = wait_processing(env, job_id)
        os.kill(int(victim["executed_by_app"].rsplit("#", 1)[1]), signal.SIGKILL)
        killed_at = time.monotonic()
        doc = wait_terminal(env, job_id, timeout=120)
    finally:
        stop(worker)
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
    env = geomill_env(data, lease_seconds=2, janitor_interval_seconds=0.3)
    job_id = submit(env, n=3, sleep_s=2, tag="whole-worker")
    first = start_worker(env, 2)
    wait_processing(env, job_id)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    second = start_worker(env, 2)
    try:
        doc = wait_terminal(env, job_id, timeout=120)
    finally:
        stop(second)
    assert doc["status"] == "completed", doc
    attempts = sorted(t["attempt"] for t in _tasks(data, job_id))
    assert attempts[-1] == 2 and attempts[0] == 1


def test_sigterm_drains_running_task(tmp_path: Path) -> None:
    """SIGTERM: the worker stops claiming but finishes the task it runs (no lost or repeated attempt)."""
    data = tmp_path / "data"
    env = geomill_env(data, lease_seconds=30, shutdown_grace_seconds=20)
    job_id = submit(env, n=1, sleep_s=2, tag="drain")
    worker = start_worker(env, 1)
    victim = wait_processing(env, job_id)
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(30) == 0
    task = next(t for t in _tasks(data, job_id) if t["task_id"] == victim["task_id"])
    assert task["status"] == "completed" and task["attempt"] == 1
