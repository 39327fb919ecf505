"""Integration fixtures: a fresh PostgreSQL database per test (the server is started, PostGIS installed if needed);
local storage zones and a task context for handler tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from geomill.catalog.base import open_catalog
from geomill.engine.context import TaskContext
from geomill.storage.local import LocalStorage
from services import ensure_postgres, fresh_database


@pytest.fixture(scope="session")
def postgres_server() -> None:
    """PostgreSQL 15 + PostGIS on 127.0.0.1:5432, or skip (fail when CI is set)."""
    ensure_postgres()


@pytest.fixture
def pg_url(postgres_server: None) -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:5432/geomill_test_<random>``: created empty, dropped after the test."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """Each backend in turn, for tests that drive geomill processes: None = the default SQLite file."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    """Local storage zones under tmp_path/store (a module may define its own)."""
    store = LocalStorage(tmp_path / "store")
    store.ensure_zones()
    return store


@pytest.fixture
def ctx(storage: LocalStorage) -> TaskContext:
    """A handler's context on `storage` with its static catalog."""
    return TaskContext(task_id="t", job_id="j", stage=1, attempt=1, storage=storage, catalog=open_catalog(storage))
