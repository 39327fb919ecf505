"""Store implementations. `open_store` picks one from a database URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from geomill.domain import InvalidInput

if TYPE_CHECKING:
    from geomill.config import Settings
    from geomill.engine.ports import Store


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(database_url: str) -> bool:
    return database_url.startswith(POSTGRES_SCHEMES)


def open_store(database_url: str, settings: Settings | None = None) -> Store:
    """``sqlite:///path/to/file.db`` (the embedded default) or ``postgresql://user@host:port/db``."""
    if database_url.startswith("sqlite:///"):
        from geomill.store.sqlite import SQLiteStore

        sync = settings.sqlite_synchronous if settings else "NORMAL"
        return SQLiteStore(Path(database_url.removeprefix("sqlite:///")), synchronous=sync)
    if is_postgres_url(database_url):
        from geomill.store.postgres import PostgresStore

        if settings is None:
            return PostgresStore(database_url)
        return PostgresStore(database_url, pool_size=settings.db_pool_size,
                             socket_timeout=settings.db_socket_timeout_seconds)
    raise InvalidInput(
        f"unsupported database URL {database_url!r}; expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
        field="database_url",
    )
