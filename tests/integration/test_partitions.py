"""Network faults between a worker and PostgreSQL (issue 25), through a loopback TCP proxy that is black-holed
(bytes held, nothing closed: a partition as the worker sees it) or cut: calls are bounded, a worker that cannot
renew its lease stops its task, and the janitor gives retried completions a grace after an outage."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geomill.config import Settings
from geomill.dispatch import PollingDispatch
from geomill.dispatch.postgres import ListenNotifyDispatch
from geomill.domain import StoreError, TaskStatus
from geomill.engine.registry import Registry
from geomill.jobs import demo as demo_jobs
from geomill.runtime import Runtime
from geomill.storage import LocalStorage
from geomill.store.async_access import PostgresAsyncStore
from geomill.store.postgres import PostgresStore
from geomill.tasks import demo as demo_tasks
from geomill.worker.janitor import outage_grace, reconcile
from geomill.worker.loop import WorkerLoop
from procs import GEOMILL, geomill_env, stop, submit, tasks, wait_for, wait_processing, wait_terminal
from tcp_proxy import TcpProxy


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", 5432)
    yield p
    p.close()


def _runtime(tmp_path: Path, store: PostgresStore, **overrides: object) -> Runtime:
    values: dict[str, object] = {
        "data_dir": tmp_path, "database_url": store.url, "app_name": "partition", "workers": 1,
        "queues": ["jobs", "default-tasks"], "lease_seconds": 30.0, "poll_interval_seconds": 0.05,
        "stall_grace_seconds": 0.0, "event_visibility_seconds": 30.0, "plugins": [], **overrides}
    registry = Registry()
    demo_tasks.register(registry)
    demo_jobs.register(registry)
    storage = LocalStorage(tmp_path)
    storage.ensure_zones()
    return Runtime(Settings(**values), registry, store, storage, PollingDispatch(max_interval=0.05))


def test_a_call_on_a_black_holed_connection_fails_within_the_socket_timeout(pg_url: str, proxy: TcpProxy) -> None:
    store = PostgresStore(proxy.url(pg_url), retry_seconds=0.5, socket_timeout=1.0)
    store.migrate()
    proxy.blackhole()
    errors: list[BaseException] = []
    started = time.monotonic()
    call = threading.Thread(target=lambda: _capture(errors, lambda: store.counters()), daemon=True)
    call.start()
    call.join(15)
    assert not call.is_alive(), "the call hung on a silent connection"
    assert errors and isinstance(errors[0], StoreError)
    assert time.monotonic() - started < 10
    proxy.restore()
    store.close()


def _capture(errors: list[BaseException], fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except BaseException as exc:  # noqa: BLE001 - handed to the test
        errors.append(exc)


def test_a_partitioned_worker_stops_its_task_when_its_lease_runs_out(
    pg_url: str, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    direct = PostgresStore(pg_url)
    direct.migrate()
    lease = 3.0
    worker_store = PostgresStore(proxy.url(pg_url), retry_seconds=30, socket_timeout=1.0)
    rt = _runtime(tmp_path, worker_store, lease_seconds=lease)
    job_id = rt.orchestrator.submit("fanout", {"n": 1, "sleep_s": 60}).job.job_id
    loop = WorkerLoop(rt, ["jobs", "default-tasks"])
    assert loop.handle_one_event()
    task = worker_store.claim_task(["default-tasks"], loop.app, lease)
    assert task is not None

    threading.Timer(0.5, proxy.blackhole).start()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="geomill.worker"):
        loop.execute(task)  # would sleep 60 s: the lease watchdog stops it
    took = time.monotonic() - started
    assert took < lease + 2, f"the task ran on for {took:.1f} s without a lease"
    assert any(task.task_id in r.getMessage() and "not renewed" in r.getMessage() for r in caplog.records)
    proxy.restore()
    row = direct.get_task(task.task_id)
    assert row.status is TaskStatus.PROCESSING and row.attempt == 1  # no outcome recorded: the janitor's to repair
    assert direct.get_job(job_id).status.is_terminal is False
    worker_store.close()
    direct.close()


def test_after_an_outage_the_janitor_lets_retried_completions_through_before_reclaiming(
    pg_url: str, proxy: TcpProxy, tmp_path: Path
) -> None:
    direct = PostgresStore(pg_url)  # the workers' side: their completions are retried through the outage
    direct.migrate()
    janitor_store = PostgresStore(proxy.url(pg_url), retry_seconds=30, socket_timeout=1.0)
    rt = _runtime(tmp_path, janitor_store, lease_seconds=1.0)
    rt.orchestrator.submit("fanout", {"n": 2})
    assert WorkerLoop(rt, ["jobs"]).handle_one_event()
    finished, lost = direct.claim_tasks(["default-tasks"], "worker", 1.0, 2)

    proxy.cut()
    threading.Timer(2.0, proxy.restore).start()  # down for longer than the lease
    report = reconcile(janitor_store, rt.settings, rt.registry)  # blocks until the database is back
    assert report.reclaimed_leases == 0
    assert direct.complete_task(finished.task_id, finished.attempt, {"key": "x", "attempt": 1, "pid": 1}).applied

    time.sleep(outage_grace(rt.settings) + 0.2)
    assert reconcile(janitor_store, rt.settings, rt.registry).reclaimed_leases == 1  # only the really lost one
    assert direct.get_task(lost.task_id).attempt == 1 and direct.get_task(finished.task_id).status is TaskStatus.COMPLETED
    janitor_store.close()
    direct.close()


def test_the_api_async_pool_fails_a_read_on_a_black_holed_connection_instead_of_hanging(
    pg_url: str, proxy: TcpProxy
) -> None:
    direct = PostgresStore(pg_url)
    direct.migrate()

    async def read_while_black_holed() -> BaseException | None:
        reader = PostgresAsyncStore(proxy.url(pg_url), pool_size=1, retry_seconds=1.0, socket_timeout=1.0)
        await reader.open()
        proxy.blackhole()
        try:
            await asyncio.wait_for(reader.job_view("no-such-job"), 15)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            return exc
        finally:
            proxy.restore()
            await reader.close()
        return None

    started = time.monotonic()
    error = asyncio.run(read_while_black_holed())
    assert isinstance(error, StoreError), repr(error)
    assert time.monotonic() - started < 10
    direct.close()


def test_a_partitioned_worker_process_stops_its_task_logs_it_and_recovers(tmp_path: Path, pg_url: str,
                                                                          proxy: TcpProxy) -> None:
    settings = {"lease_seconds": 3, "janitor_interval_seconds": 0.5, "db_socket_timeout_seconds": 1}
    env = geomill_env(tmp_path / "d", pg_url, **settings)
    job_id = submit(env, n=1, sleep_s=8)
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log_file:
        worker = subprocess.Popen([*GEOMILL, "worker", "--processes", "1"], start_new_session=True,
                                  env=geomill_env(tmp_path / "d", proxy.url(pg_url), **settings),
                                  stdout=log_file, stderr=subprocess.STDOUT)
    try:
        task = wait_processing(env, job_id)
        proxy.blackhole()
        started = time.monotonic()
        wait_for(lambda: "not renewed" in log_path.read_text(), 10, "the worker to stop its task")
        assert time.monotonic() - started < 3 + 2
        assert task["task_id"] in next(line for line in log_path.read_text().splitlines() if "not renewed" in line)
        time.sleep(2)
        proxy.restore()
        doc = wait_terminal(env, job_id, timeout=90)  # the janitor reclaims the lease, attempt 2 completes
    finally:
        proxy.restore()
        stop(worker)
    assert doc["status"] == "completed", doc
    assert tasks(env, job_id)[0]["attempt"] == 2


def test_a_cut_postgresql_logs_one_line_when_lost_and_one_when_back(
    pg_url: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """psycopg_pool logs every failed reconnection (and our retries each logged one): an outage of a few seconds
    was dozens of lines. Now: one WARNING when PostgreSQL is lost, one INFO when it is back (issue 25)."""
    store = PostgresStore(proxy.url(pg_url), pool_size=2, retry_seconds=30.0)
    store.migrate()
    try:
        with caplog.at_level(logging.DEBUG):
            caplog.clear()
            proxy.cut()
            threading.Timer(3.0, proxy.restore).start()
            for _ in range(3):
                store.counters()  # the first waits through the outage; the others run on the restored link
            time.sleep(0.5)  # the pool's background reconnections have finished
        lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records
                 if r.levelno >= logging.INFO and r.name.startswith(("psycopg", "geomill"))]
        assert [(name, level) for name, level, _ in lines] == [
            ("geomill.store.postgres", "WARNING"), ("geomill.store.postgres", "INFO")], lines
        assert "PostgreSQL unavailable" in lines[0][2] and "back" in lines[1][2]
    finally:
        store.close()


def test_a_cut_listen_connection_logs_one_line_when_lost_and_one_when_back(
    pg_url: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The LISTEN connection reconnects with backoff through an outage: one WARNING, one INFO, not one per try."""
    dispatch = ListenNotifyDispatch(proxy.url(pg_url), poll_interval=0.05, max_backoff=0.2, connect_timeout=1.0)
    try:
        dispatch.wait(["default-tasks"], 0.05)  # connected and listening
        with caplog.at_level(logging.INFO):
            caplog.clear()
            proxy.cut()
            until = time.monotonic() + 3.0  # about 15 reconnection attempts
            while time.monotonic() < until:
                dispatch.wait(["default-tasks"], 0.05)
            proxy.restore()
            until = time.monotonic() + 1.0
            while time.monotonic() < until:
                dispatch.wait(["default-tasks"], 0.05)
        lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records
                 if r.name.startswith(("psycopg", "geomill"))]
        assert [(name, level) for name, level, _ in lines] == [
            ("geomill.dispatch.postgres", "WARNING"), ("geomill.dispatch.postgres", "INFO")], lines
        assert "back" in lines[1][2]
    finally:
        dispatch.close()


@pytest.mark.slow
def test_a_worker_process_group_logs_a_few_lines_per_postgresql_outage_not_one_per_retry(
    pg_url: str, proxy: TcpProxy, tmp_path: Path
) -> None:
    """`geomill worker --processes 2` (a supervisor and two workers: three stores, two LISTEN connections) through
    a cut of 4 s: one WARNING per store or LISTEN connection when lost, and no library lines or tracebacks."""
    env = geomill_env(tmp_path / "d", proxy.url(pg_url), log_json="true", log_level="WARNING",
                      janitor_interval_seconds=1)
    migrated = PostgresStore(pg_url)
    migrated.migrate()
    migrated.close()
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as err:
        worker = subprocess.Popen([*GEOMILL, "worker", "--processes", "2"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=err, start_new_session=True)
    try:
        time.sleep(5)  # started, listening, idle
        before = log_path.stat().st_size
        proxy.cut()
        time.sleep(4)
        proxy.restore()
        time.sleep(5)  # every process has made a call since
    finally:
        stop(worker)
    lines = log_path.read_bytes()[before:].decode().splitlines()
    docs = [json.loads(line) for line in lines if line.startswith("{")]
    during = [d for d in docs if "draining" not in d["msg"]]
    assert not [d for d in during if not d["logger"].startswith("geomill")], during  # psycopg_pool kept quiet
    assert not [d for d in during if "exc" in d], during  # no tracebacks
    assert 1 <= len(during) <= 5, during  # was: a line per retry and per reconnection attempt of each process
