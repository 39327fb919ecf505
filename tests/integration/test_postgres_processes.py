"""geomill processes on one PostgreSQL: a 10,000-task stage on 4 processes, SIGKILL mid-task, a server restart
mid-job, and the bound on connections. The restart test stops the shared server: it runs last (slow)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest

from procs import geomill_env, start_worker, stop, submit, tasks, wait_processing, wait_terminal
from services import ADMIN_URL, pg_ctl, postgres_up

pytestmark = pytest.mark.usefixtures("postgres_server")


def _db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _markers(tmp_path: Path) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    return folder


def _assert_each_ran_once(markers: Path, expected: int) -> None:
    runs = {p.name: p.read_text().splitlines() for p in markers.iterdir()}
    assert len(runs) == expected
    assert all(len(lines) == 1 for lines in runs.values()), [k for k, v in runs.items() if len(v) != 1][:5]


@pytest.mark.slow
def test_ten_thousand_task_stage_on_four_processes(tmp_path: Path, pg_url: str) -> None:
    markers = _markers(tmp_path)
    env = geomill_env(tmp_path / "d", pg_url, janitor_interval_seconds=1)
    job_id = submit(env, n=10_000, stages=1, marker_dir=str(markers))
    workers = [start_worker(env, 2), start_worker(env, 2)]
    try:
        doc = wait_terminal(env, job_id, timeout=600)
    finally:
        stop(*workers)
    assert doc["status"] == "completed", doc
    assert doc["advances"] == doc["stage_count"] + 1
    assert doc["stages"][0]["total"] == doc["stages"][0]["completed"] == 10_000
    assert {t["attempt"] for t in tasks(env, job_id)} == {1}
    _assert_each_ran_once(markers, 10_000)


@pytest.mark.slow
def test_sigkill_mid_task_on_postgres_is_reclaimed_after_lease(tmp_path: Path, pg_url: str) -> None:
    markers = _markers(tmp_path)
    env = geomill_env(tmp_path / "d", pg_url, lease_seconds=2, janitor_interval_seconds=0.3)
    job_id = submit(env, n=4, sleep_s=3, marker_dir=str(markers))
    worker = start_worker(env, 2)
    try:
        victim = wait_processing(env, job_id)
        os.kill(int(victim["executed_by_app"].rsplit("#", 1)[1]), signal.SIGKILL)
        doc = wait_terminal(env, job_id, timeout=120)
    finally:
        stop(worker)
    assert doc["status"] == "completed", doc
    by_id = {t["task_id"]: t for t in tasks(env, job_id)}
    assert by_id[victim["task_id"]]["attempt"] == 2
    assert sum(t["attempt"] for t in by_id.values()) == 5
    _assert_each_ran_once(markers, 4)


def _connections(db: str) -> int:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db,)).fetchone()[0]


@pytest.mark.slow
def test_eight_worker_processes_stay_within_the_connection_budget(tmp_path: Path, pg_url: str) -> None:
    """Per process: pool (GEOMILL_DB_POOL_SIZE) + 1 LISTEN connection; the supervisor has a pool and no LISTEN."""
    pool = 2
    env = geomill_env(tmp_path / "d", pg_url, db_pool_size=pool)
    job_id = submit(env, n=3000, stages=2, sleep_s=0.002)
    worker = start_worker(env, 8)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _connections(_db_name(pg_url)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        doc = wait_terminal(env, job_id, timeout=300)
    finally:
        done.set()
        sampler.join()
        stop(worker)
    assert doc["status"] == "completed", doc
    budget = 8 * (pool + 1) + pool  # workers + supervisor
    assert 8 < peak <= budget, f"peak {peak} connections, budget {budget}"


@pytest.mark.slow
def test_postgres_restart_mid_job_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    if not Path("/etc/postgresql").exists():
        pytest.skip("no local PostgreSQL cluster to restart")
    markers = _markers(tmp_path)
    env = geomill_env(tmp_path / "d", pg_url, lease_seconds=30, janitor_interval_seconds=1)
    job_id = submit(env, n=300, stages=3, sleep_s=0.05, marker_dir=str(markers))
    worker = start_worker(env, 2)
    try:
        wait_processing(env, job_id)
        time.sleep(1)
        pg_ctl("stop")
        time.sleep(10)
        pg_ctl("start")
        deadline = time.monotonic() + 30
        while not postgres_up() and time.monotonic() < deadline:
            time.sleep(0.5)
        doc = wait_terminal(env, job_id, timeout=300)
        assert worker.poll() is None  # the worker survived the outage
    finally:
        if not postgres_up():
            pg_ctl("start")
        stop(worker)
    assert doc["status"] == "completed", doc
    assert doc["advances"] == doc["stage_count"] + 1
    _assert_each_ran_once(markers, 900)
