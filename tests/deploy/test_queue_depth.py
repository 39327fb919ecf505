"""Migration 008: the view `geomill_queue_depth` (queued, ready, running, active tasks per physical queue) on SQLite
and PostgreSQL, and the KEDA ScaledObjects' PostgreSQL queries run against a real database: each returns the number
its role must scale on."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from deploy_manifests import by_kind, render
from geomill.store.postgres import PostgresStore
from geomill.store.sqlite import SQLiteStore
from services import fresh_database

# (queue, status, available in seconds from now): raster 2 ready + 1 in a retry's backoff + 1 running,
# vector 1 running, long none at all, and finished work that never counts
TASKS = [("raster-tasks", "queued", -5), ("raster-tasks", "queued", -1), ("raster-tasks", "queued", 600),
         ("raster-tasks", "processing", -5), ("vector-tasks", "processing", -5),
         ("raster-tasks", "completed", -5), ("vector-tasks", "failed", -5), ("long-tasks", "cancelled", -5)]
EXPECTED = {"raster-tasks": {"queued": 3, "ready": 2, "running": 1, "active": 4},
            "vector-tasks": {"queued": 0, "ready": 0, "running": 1, "active": 1}}
JOB = ("INSERT INTO jobs (job_id, job_type, params, status, stage_count, created_at, updated_at) "
       "VALUES ('j', 'fanout', '{{}}', 'processing', 1, {now}, {now})")
TASK = ("INSERT INTO tasks (task_id, job_id, stage, task_key, task_type, params, status, max_attempts, "
        "target_queue, timeout_seconds, created_at, available_at) "
        "VALUES ({i}, 'j', 1, {i}, 'demo.work', '{{}}', {status}, 3, {queue}, 60, {now}, {available})")


def _rows(rows: list[Any]) -> dict[str, dict[str, int]]:
    return {r[0]: {"queued": int(r[1]), "ready": int(r[2]), "running": int(r[3]), "active": int(r[4])} for r in rows}


def test_queue_depth_on_sqlite_counts_queued_ready_and_running_tasks_per_queue(tmp_path: Path) -> None:
    """Class: tasks in every status, some queued ones in backoff (not ready yet)."""
    store = SQLiteStore(tmp_path / "q.db")
    store.migrate()
    store.close()
    db = sqlite3.connect(tmp_path / "q.db")
    now = time.time()
    db.execute(JOB.format(now=now))
    for i, (queue, status, delay) in enumerate(TASKS):
        db.execute(TASK.format(i=f"'t{i}'", status=f"'{status}'", queue=f"'{queue}'", now=now, available=now + delay))
    db.commit()
    rows = db.execute("SELECT queue, queued, ready, running, active FROM geomill_queue_depth").fetchall()
    assert _rows(rows) == EXPECTED


def test_keda_queries_on_postgres_return_each_worker_roles_load(tmp_path: Path) -> None:
    """Class: the ScaledObjects' own query text (both overlays) against PostgreSQL with tasks in every status: a
    queue with nothing queued or running gives 0 (worker_long scales to zero), a busy queue its count."""
    with fresh_database("h24_queue_depth") as url:
        store = PostgresStore(url, pool_size=1)
        store.migrate()
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(JOB.format(now="now()"))
            for i, (queue, status, delay) in enumerate(TASKS):
                conn.execute(TASK.format(i=f"'t{i}'", status=f"'{status}'", queue=f"'{queue}'", now="now()",
                                         available=f"now() + interval '{delay} seconds'"))
            rows = conn.execute("SELECT queue, queued, ready, running, active FROM geomill_queue_depth").fetchall()
            assert _rows(rows) == EXPECTED
            answers = {}
            for overlay in ("overlays/rabbitmq", "overlays/postgres"):
                for so in by_kind(render(overlay), "ScaledObject"):
                    for trigger in so["spec"]["triggers"]:
                        if trigger["type"] == "postgresql":
                            (value,) = conn.execute(trigger["metadata"]["query"]).fetchone() or (None,)
                            answers[(overlay, so["metadata"]["name"])] = int(value)
    assert answers == {
        ("overlays/rabbitmq", "geomill-worker-raster"): 1, ("overlays/rabbitmq", "geomill-worker-vector"): 1,
        ("overlays/rabbitmq", "geomill-worker-long"): 0,  # running only: the queue length comes from RabbitMQ
        ("overlays/postgres", "geomill-worker-raster"): 4, ("overlays/postgres", "geomill-worker-vector"): 1,
        ("overlays/postgres", "geomill-worker-long"): 0,
    }


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_the_view_is_migration_008(dialect: str) -> None:
    from geomill.store.sql import migrations

    (sql,) = [sql for version, sql in migrations(dialect) if version == 8]
    assert "CREATE VIEW geomill_queue_depth" in sql
