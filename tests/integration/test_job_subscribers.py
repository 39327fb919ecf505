"""The `SubscriberStore` port (job callback subscribers, migration 010) on SQLite and PostgreSQL: a new subscriber
is due at once, a delivery record is guarded by what was delivered before, a later look waits its delay, a closed
subscriber is never due again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from geomill.domain import NewJob, make_job_id
from geomill.engine.ports import Store
from geomill.store import open_store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'geomill.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = open_store(url)
    opened.migrate()
    yield opened
    opened.close()


def test_subscribers_are_due_guarded_delayed_and_closed(store: Store) -> None:
    job_id = make_job_id("hello_world", {"n": 1})
    store.create_job(NewJob(job_id, "hello_world", {"n": 1}, 2))
    store.add_subscriber(job_id, "http://127.0.0.1:9/ok", None, "http://127.0.0.1:9/progress")
    (sub,) = store.due_subscribers(10)
    assert (sub.job_id, sub.success_uri, sub.failed_uri, sub.in_progress_uri, sub.notified, sub.attempts) == (
        job_id, "http://127.0.0.1:9/ok", None, "http://127.0.0.1:9/progress", "", 0)
    assert not store.update_subscriber(sub.subscriber_id, "running:10", "running:20", 0, 0.0, close=False)
    assert store.update_subscriber(sub.subscriber_id, "", "running:50", 2, 0.3, close=False)
    assert store.due_subscribers(10) == []  # its next look is 0.3 s away
    time.sleep(0.4)
    (later,) = store.due_subscribers(10)
    assert (later.notified, later.attempts) == ("running:50", 2)
    assert store.update_subscriber(later.subscriber_id, "running:50", "successful", 0, 0.0, close=True)
    time.sleep(0.05)
    assert store.due_subscribers(10) == []
    assert not store.update_subscriber(later.subscriber_id, "successful", "successful", 0, 0.0, close=True)
