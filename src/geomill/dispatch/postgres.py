"""LISTEN/NOTIFY: an idle worker wakes as soon as a transaction that made work available commits.

The store NOTIFYs ``geomill_<queue>`` in the same transaction that inserts or re-queues a task (or inserts an
event on the jobs queue), so a wake-up is never sent for work that was rolled back. Notifications are only hints:
the worker still claims through the store, and with no notification it polls at the poll interval anyway (a retry
waiting out its backoff, or a notification lost while this connection was down, is found that way).

Connection budget: one dedicated connection per dispatcher, outside the store's pool, opened lazily on the first
``wait`` (a process that never waits for work, like the supervisor, never opens it). A worker process therefore
holds at most ``db_pool_size + 1`` connections.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import psycopg
from psycopg import sql

from geomill.engine.dispatch_ports import wake_channel
from geomill.pgconn import DEFAULT_SOCKET_TIMEOUT, Reachability, bounded, connect_kwargs

log = logging.getLogger(__name__)


class ListenNotifyDispatch:
    """Waits on one LISTEN connection; reconnects with backoff when it drops, polling meanwhile."""

    def __init__(self, url: str, *, poll_interval: float = 0.5, connect_timeout: float = 5.0,
                 max_backoff: float = 5.0, socket_timeout: float = DEFAULT_SOCKET_TIMEOUT) -> None:
        self.url = url
        self.socket_timeout = socket_timeout
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self._conn: psycopg.Connection | None = None
        self._listening: set[str] = set()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one waiter at a time on the connection
        self._backoff = 0.0
        self._next_connect = 0.0
        self._reachability = Reachability(log, "LISTEN connection back after %.1f s")  # one line per change

    def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Return on a notification for one of `queues`, a local `notify`, or after min(timeout, poll interval)."""
        deadline = time.monotonic() + min(timeout, self.poll_interval)
        if self._wake.is_set():
            self._wake.clear()
            return
        with self._lock:
            conn = self._listen(queues)
            remaining = max(0.0, deadline - time.monotonic())
            if conn is None:  # disconnected: plain polling until the next reconnect attempt
                self._wake.wait(remaining)
            else:
                self._receive(conn, remaining)
        self._wake.clear()

    def notify(self, queue: str) -> None:
        """Wake a waiter of this process; other processes are woken by the store's transactional NOTIFY."""
        self._wake.set()

    def found_work(self) -> None:
        """Nothing to adapt: an idle wait ends at the first notification."""

    def close(self) -> None:
        with self._lock:
            self._drop()

    # plumbing
    def _receive(self, conn: psycopg.Connection, timeout: float) -> None:
        try:
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                break
            for _ in conn.notifies(timeout=0):  # drain what else arrived: one wake-up covers it all
                pass
        except psycopg.Error as exc:
            self._reachability.lost("LISTEN connection lost (%s); polling until it is back", str(exc).strip())
            self._drop()
            self._schedule_reconnect()

    def _listen(self, queues: Sequence[str]) -> psycopg.Connection | None:
        """The connection, LISTENing to every channel of `queues`; None while (re)connecting fails."""
        if self._conn is None or self._conn.closed:
            self._drop()
            if time.monotonic() < self._next_connect:
                return None
            try:
                # keepalives and tcp_user_timeout: a peer that vanished without closing the socket is noticed
                # within about socket_timeout (an idle LISTEN is otherwise silent for ever)
                self._conn = bounded(self.socket_timeout).connect(
                    self.url, autocommit=True, **connect_kwargs(self.socket_timeout, self.connect_timeout))
            except psycopg.Error as exc:
                self._reachability.lost("cannot open the LISTEN connection (%s); polling meanwhile", str(exc).strip())
                self._schedule_reconnect()
                return None
        channels = {wake_channel(x) for x in queues} - self._listening
        try:
            for channel in sorted(channels):
                self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self._listening.add(channel)
        except psycopg.Error as exc:
            self._reachability.lost("LISTEN failed (%s); polling meanwhile", str(exc).strip())
            self._drop()
            self._schedule_reconnect()
            return None
        self._backoff = 0.0
        self._reachability.answered()
        return self._conn

    def _schedule_reconnect(self) -> None:
        self._backoff = min(max(self._backoff * 2, 0.1), self.max_backoff)
        self._next_connect = time.monotonic() + self._backoff

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None
        self._listening.clear()
