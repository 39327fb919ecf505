"""How every PostgreSQL connection of geomill is opened so that its silence is bounded (issue 25).

A network partition does not close a socket: without these options a connection waits for its answer for as long
as the link is down (the kernel's defaults give up after ~2 h idle, or ~15 min of retransmissions). Two bounds:
- libpq options (``connect_kwargs``): TCP keepalives probe an idle connection, ``tcp_user_timeout`` ends one
  whose sent data stays unacknowledged, ``connect_timeout`` bounds the handshake. They catch a vanished peer.
- ``BoundedConnection`` (and its async twin): no single round trip waits longer than ``io_timeout`` seconds for the server. It also
  catches a peer that still acknowledges packets but never answers (a stalled proxy or load balancer); the
  connection is then closed and the call fails with OperationalError, which the stores retry on a new connection.
Used by the store pool, the async pool, the LISTEN connection (dispatch) and, later, the PostGIS sink pool.

An outage is logged once per change (``Reachability``: lost at WARNING, back at INFO); psycopg_pool's own logger,
which logs every failed reconnection and every discarded connection, is kept to CRITICAL.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
from psycopg import errors

DEFAULT_SOCKET_TIMEOUT = 30.0  # seconds, GEOMILL_DB_SOCKET_TIMEOUT_SECONDS
POOL_LOGGER = "psycopg.pool"


def quiet_pool_logger() -> None:
    """psycopg_pool logs a WARNING per failed reconnection and per discarded connection (a few seconds' outage: a
    dozen lines); the stores log one line per change of reachability instead."""
    logging.getLogger(POOL_LOGGER).setLevel(logging.CRITICAL)


class Reachability:
    """Whether PostgreSQL answered the last call, logged only when that changes: `lost` logs one WARNING for an
    outage however many calls fail and retry in it, `answered` one INFO when a call succeeds again."""

    def __init__(self, logger: logging.Logger, back: str = "PostgreSQL is back after %.1f s") -> None:
        self.log = logger
        self.back = back  # the INFO line, given the outage's seconds
        self._lost_at: float | None = None
        self._lock = threading.Lock()

    def lost(self, message: str, *args: Any) -> None:
        """Log `message` (a WARNING) unless this outage was logged already."""
        with self._lock:
            if self._lost_at is not None:
                return
            self._lost_at = time.monotonic()
        self.log.warning(message, *args)

    def answered(self) -> None:
        if self._lost_at is None:  # the usual case: no lock
            return
        with self._lock:
            lost_at, self._lost_at = self._lost_at, None
        if lost_at is not None:
            self.log.info(self.back, time.monotonic() - lost_at)


def connect_kwargs(socket_timeout: float = DEFAULT_SOCKET_TIMEOUT, connect_timeout: float = 5.0) -> dict[str, Any]:
    """libpq options bounding a connection's silence to about `socket_timeout` seconds."""
    idle = max(1, int(socket_timeout / 3))
    interval = max(1, int(socket_timeout / 9))
    return {
        "connect_timeout": max(1, int(connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": idle,  # idle + count * interval ~ socket_timeout
        "keepalives_interval": interval,
        "keepalives_count": 3,
        "tcp_user_timeout": max(1000, int(socket_timeout * 1000)),  # milliseconds
    }


class BoundedConnection(psycopg.Connection[Any]):
    """A connection whose round trips wait at most `io_timeout` seconds (None: no bound; a caller's own timeout,
    like ``notifies(timeout=...)``, wins)."""

    io_timeout: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        bound = timeout if timeout is not None else self.io_timeout
        try:
            return super().wait(gen, interval=interval, timeout=bound)
        except errors._WaitTimeout as exc:
            if timeout is not None:  # the caller asked for this timeout: not a silent server
                raise
            self.pgconn.finish()  # its state is unknown: never reuse it
            raise psycopg.OperationalError(f"no answer from PostgreSQL within {bound:g} s; connection closed") from exc


class AsyncBoundedConnection(psycopg.AsyncConnection[Any]):
    """BoundedConnection on an event loop (the API's async pool)."""

    io_timeout: float | None = None

    async def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        bound = timeout if timeout is not None else self.io_timeout
        try:
            return await super().wait(gen, interval=interval, timeout=bound)
        except errors._WaitTimeout as exc:
            if timeout is not None:
                raise
            self.pgconn.finish()
            raise psycopg.OperationalError(f"no answer from PostgreSQL within {bound:g} s; connection closed") from exc


def bounded(io_timeout: float) -> type[BoundedConnection]:
    """A BoundedConnection class for psycopg_pool's `connection_class` (the pool takes a class, not an instance)."""
    return type("BoundedConnection", (BoundedConnection,), {"io_timeout": io_timeout})


def async_bounded(io_timeout: float) -> type[AsyncBoundedConnection]:
    """`bounded` for psycopg_pool's AsyncConnectionPool."""
    return type("AsyncBoundedConnection", (AsyncBoundedConnection,), {"io_timeout": io_timeout})
