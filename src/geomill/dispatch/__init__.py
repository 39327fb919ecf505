"""How workers learn of work: SQLite polling or PostgreSQL LISTEN/NOTIFY wake-ups, or a broker (RabbitMQ) whose
messages name the work; the choice is made once, when the runtime is built (`open_dispatch`, `open_broker`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from geomill.dispatch.polling import PollingDispatch

POSTGRES_SCHEMES = ("postgresql://", "postgres://")  # as the store's (dispatch imports nothing from store/)

if TYPE_CHECKING:
    from geomill.config import Settings
    from geomill.engine.dispatch_ports import Broker, WorkSource
    from geomill.engine.ports import Dispatch


def open_dispatch(settings: Settings) -> Dispatch:
    """Database wake-ups: LISTEN/NOTIFY when the database is PostgreSQL, adaptive polling otherwise."""
    url = settings.resolved_database_url
    if url.startswith(POSTGRES_SCHEMES):
        from geomill.dispatch.postgres import ListenNotifyDispatch

        return ListenNotifyDispatch(url, poll_interval=settings.poll_interval_seconds,
                                    socket_timeout=settings.db_socket_timeout_seconds)
    return PollingDispatch(max_interval=settings.poll_interval_seconds)


def open_broker(settings: Settings) -> Broker | None:
    """The broker workers consume from, or None: the database is the queue (no connection is opened here)."""
    if not settings.broker_url:
        return None
    from geomill.dispatch.rabbitmq import RabbitBroker

    return RabbitBroker(settings.broker_url, settings.queue_names)


def dispatch_health(source: WorkSource, queues: Sequence[str], queue_names: Mapping[str, str]) -> dict[str, Any]:
    """What /api/health and `geomill health` show of dispatch (`source`: the Runtime): the wake-up backend, or
    the broker's backend with each queue's ready messages and consumers (DispatchError when it is unreachable)."""
    if source.broker is None:
        return {"backend": type(source.dispatch).__name__}
    return {"backend": source.broker.backend,
            "queues": source.broker.queue_stats([queue_names.get(q, q) for q in queues])}


__all__ = ["PollingDispatch", "dispatch_health", "open_broker", "open_dispatch"]
