"""The small, bounded connection pool of a worker process's resources (PostGIS sink and pgSTAC catalog share it)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool

from geomill.pgconn import connect_kwargs

DEFAULT_SIZE = 2  # one load statement and one catalog write at a time per process; more would only queue on locks


def _reset(conn: psycopg.Connection) -> None:
    """pgSTAC's client sets search_path and application_name on its connection; the next user gets the defaults."""
    conn.execute("RESET ALL")


class ResourcePool:
    """At most `size` autocommit connections, opened on first use (a raster worker never opens any)."""

    def __init__(self, url: str, size: int = DEFAULT_SIZE, app_name: str = "geomill") -> None:
        self.url = url
        self.size = max(1, size)
        self._app_name = app_name
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()

    def _opened(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url, min_size=0, max_size=self.size, open=True, name="geomill-resources",
                    # keepalives bound a dead peer's silence; no per-round-trip limit: an index build is long
                    kwargs={"autocommit": True, **connect_kwargs(connect_timeout=30),
                            "application_name": f"{self._app_name}#{os.getpid()}:resources"[:63]},
                    reset=_reset, timeout=300.0, max_idle=60.0,
                )
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection for the block (waits while all `size` are in use)."""
        with self._opened().connection() as conn:
            yield conn

    @property
    def opened(self) -> bool:
        return self._pool is not None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
