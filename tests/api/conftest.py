"""API fixtures: the app over a real Runtime (every job type, SQLite in a tmp folder) driven by TestClient, with one
key per scope; a fresh PostgreSQL database for the subprocess tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_helpers import Api, api_settings
from geomill.api import create_app
from geomill.runtime import Runtime
from geomill.service.keys import create_key
from services import ensure_postgres, fresh_database


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """``make_api(auth_disabled=True)``: a started app (lifespan run) on a fresh data folder."""
    opened: list[tuple[TestClient, Runtime]] = []

    def factory(**overrides: Any) -> Api:
        data_dir = tmp_path / f"data{len(opened)}"
        settings = api_settings(data_dir, **overrides)
        rt = Runtime.open(settings)
        client = TestClient(create_app(settings, rt), raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, rt))
        keys = {} if settings.auth_disabled else {
            scope: create_key(rt.store, f"{scope}-key", [scope])[1] for scope in ("read", "submit", "admin")}
        return Api(client, rt, data_dir, keys)

    yield factory
    for client, rt in opened:
        client.__exit__(None, None, None)
        rt.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


@pytest.fixture(scope="session")
def postgres_server() -> None:
    """PostgreSQL on 127.0.0.1:5432, or skip (fail when CI is set)."""
    ensure_postgres()


@pytest.fixture
def pg_url(postgres_server: None) -> Iterator[str]:
    """A fresh, empty database, dropped after the test."""
    with fresh_database() as url:
        yield url
