"""Shared fixtures: a Runtime wired by hand (demo types only, SQLite on tmp_path, in-process worker loop)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import hypothesis_profiles  # noqa: F401  (registers and loads the hypothesis profile)
from geomill.config import Settings
from geomill.dispatch import PollingDispatch
from geomill.domain import Job
from geomill.engine.registry import Registry
from geomill.jobs import demo as demo_jobs
from geomill.runtime import Runtime
from geomill.storage import LocalStorage
from geomill.store.sqlite import SQLiteStore
from geomill.tasks import demo as demo_tasks
from geomill.worker.loop import WorkerLoop
from jobrun import run_until_finished


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for in-process tests: explicit values, so GEOMILL_* variables of the shell do not leak in."""
    values: dict[str, Any] = {
        "data_dir": data_dir, "database_url": None, "app_name": "unit-test", "workers": 1,
        "queues": ["jobs", "raster-tasks", "vector-tasks", "long-tasks", "default-tasks"],
        "lease_seconds": 30.0, "poll_interval_seconds": 0.05, "stall_grace_seconds": 0.0,
        "event_visibility_seconds": 30.0, "plugins": [], "drill_jobs": True,
    }
    values.update(overrides)
    return Settings(**values)


def demo_registry() -> Registry:
    registry = Registry()
    demo_tasks.register(registry)
    demo_jobs.register(registry)
    return registry


@pytest.fixture
def registry() -> Registry:
    return demo_registry()


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """A factory: ``make_runtime(lease_seconds=0.2)`` gives a migrated Runtime on a fresh SQLite file."""
    opened: list[Runtime] = []

    def factory(**overrides: Any) -> Runtime:
        data_dir = tmp_path / f"rt{len(opened)}"
        settings = make_settings(data_dir, **overrides)
        storage = LocalStorage(data_dir)
        storage.ensure_zones()
        store = SQLiteStore(data_dir / "geomill.db")
        store.migrate()
        rt = Runtime(settings, demo_registry(), store, storage, PollingDispatch(max_interval=0.05))
        opened.append(rt)
        return rt

    yield factory
    for rt in opened:
        rt.close()


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()


@pytest.fixture
def store(runtime: Runtime) -> SQLiteStore:
    return runtime.store  # type: ignore[return-value]


@pytest.fixture
def db(store: SQLiteStore) -> Iterator[sqlite3.Connection]:
    """A second, raw connection to the store's file, for counting rows and injecting faults by SQL."""
    conn = sqlite3.connect(str(store.path), isolation_level=None, timeout=30)
    yield conn
    conn.close()


def count_rows(conn: sqlite3.Connection, table: str, where: str = "1=1", args: tuple[Any, ...] = ()) -> int:
    return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", args).fetchone()[0]


def run_until_idle(loop: WorkerLoop, limit: int = 100_000) -> int:
    """Run the loop until it finds nothing to do (tasks waiting out a backoff are not waited for)."""
    steps = 0
    while loop.run_once():
        steps += 1
        assert steps < limit, "worker loop did not go idle"
    return steps


@pytest.fixture
def rows(db: sqlite3.Connection) -> Callable[..., int]:
    """``rows("tasks", "status = ?", ("failed",))``: a row count read by raw SQL."""
    return lambda table, where="1=1", args=(): count_rows(db, table, where, args)


@pytest.fixture
def finish() -> Callable[..., Job]:
    """``finish(rt, job_id)``: run the in-process worker loop until the job is terminal."""
    return run_until_finished


@pytest.fixture
def idle() -> Callable[[WorkerLoop], int]:
    """``idle(loop)``: run the loop until it finds nothing to do; returns the number of steps."""
    return run_until_idle
