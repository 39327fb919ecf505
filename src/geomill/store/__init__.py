"""Store implementations. `open_store` picks one from a database URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from geomill.domain import InvalidInput

if TYPE_CHECKING:
    from geomill.config import Settings
    from geomill.engine.ports import Store


def open_store(database_url: str, settings: Settings | None = None) -> Store:
    """``sqlite:///path/to/file.db`` (the embedded default). PostgreSQL arrives with its own issue."""
    if database_url.startswith("sqlite:///"):
        from geomill.store.sqlite import SQLiteStore

        sync = settings.sqlite_synchronous if settings else "NORMAL"
        return SQLiteStore(Path(database_url.removeprefix("sqlite:///")), synchronous=sync)
    raise InvalidInput(f"unsupported database URL {database_url!r}; expected sqlite:///PATH", field="database_url")
