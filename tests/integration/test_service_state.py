"""Service state on every store: API keys, idempotency keys, live workers, counters, metrics, stuck jobs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from geomill.config import Settings
from geomill.domain import NewJob
from geomill.store import open_store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'g.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(url, Settings(data_dir=tmp_path, database_url=url))
    s.migrate()
    yield s
    s.close()


def test_api_keys_are_found_by_hash_and_revoked(store) -> None:
    store.create_api_key("k1", "ci", "hash-1", ["read", "submit"])
    assert store.api_key_by_hash("hash-1") == {"key_id": "k1", "name": "ci", "scopes": ["read", "submit"],
                                               "revoked": False}
    assert store.api_key_by_hash("nope") is None
    assert store.revoke_api_key("k1") and not store.revoke_api_key("k1")
    assert store.api_key_by_hash("hash-1")["revoked"] is True
    (listed,) = store.list_api_keys()
    assert listed["key_id"] == "k1" and listed["revoked_at"] is not None and "key_hash" not in listed


def test_idempotency_key_keeps_the_first_job(store) -> None:
    assert store.job_for_idempotency_key("abc") is None
    assert store.remember_idempotency_key("abc", "job-1") == "job-1"
    assert store.remember_idempotency_key("abc", "job-2") == "job-1"
    assert store.job_for_idempotency_key("abc") == "job-1"


def test_workers_seen_recently_and_counters(store) -> None:
    store.record_worker("w1", {"mode": "standalone", "queues": ["jobs"]})
    store.record_worker("w1", {"mode": "standalone", "queues": ["jobs", "raster-tasks"]})
    (worker,) = store.list_workers(60)
    assert worker["worker_id"] == "w1" and worker["queues"] == ["jobs", "raster-tasks"]
    time.sleep(0.3)
    assert store.list_workers(0.1) == []
    store.bump_counter("reclaimed_leases", 2)
    store.bump_counter("reclaimed_leases")
    store.bump_counter("nothing", 0)
    assert store.counters() == {"reclaimed_leases": 3}


def test_metrics_snapshot_and_stuck_jobs(store) -> None:
    store.create_job(NewJob("j1", "hello_world", {"n": 1}, 2))
    snap = store.metrics_snapshot()
    assert snap["jobs"] == [{"job_type": "hello_world", "status": "queued", "n": 1}]
    assert snap["dead_letters"] == 0 and snap["queues"] == [] and snap["durations"] == []
    time.sleep(0.3)
    assert [j["job_id"] for j in store.stuck_jobs(0.1)] == ["j1"]
    assert store.stuck_jobs(60) == []
