"""Chaos fixtures: a fresh PostgreSQL database (and RabbitMQ vhost) per drill, as the integration tests have."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services import ensure_postgres, fresh_database, fresh_vhost


@pytest.fixture
def pg_url() -> Iterator[str]:
    ensure_postgres()
    with fresh_database("geomill_chaos") as url:
        yield url


@pytest.fixture
def amqp_url() -> Iterator[str]:
    with fresh_vhost("geomill_chaos") as url:
        yield url
