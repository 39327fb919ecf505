"""How workers learn of work: SQLite polling, PostgreSQL LISTEN/NOTIFY; brokers plug in here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomill.dispatch.polling import PollingDispatch

if TYPE_CHECKING:
    from geomill.config import Settings
    from geomill.engine.ports import Dispatch


def open_dispatch(settings: Settings) -> Dispatch:
    """LISTEN/NOTIFY when the database is PostgreSQL, adaptive polling otherwise."""
    from geomill.store import is_postgres_url

    url = settings.resolved_database_url
    if is_postgres_url(url):
        from geomill.dispatch.postgres import ListenNotifyDispatch

        return ListenNotifyDispatch(url, poll_interval=settings.poll_interval_seconds)
    return PollingDispatch(max_interval=settings.poll_interval_seconds)


__all__ = ["PollingDispatch", "open_dispatch"]
