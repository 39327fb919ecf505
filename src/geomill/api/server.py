"""Serving the API from several processes that share one listening socket (`GEOMILL_HTTP_PROCESSES`).

One Python process runs one event loop: on a machine with more than one CPU, a burst of requests waits for that one
loop while the other CPUs idle. `geomill serve` binds the socket once; the process that supervises the worker pool
serves HTTP on it, and each extra HTTP process (spawned, as worker processes are) accepts on the same socket: the
kernel hands each new connection to whichever process is waiting in accept. Every process reads and writes the same
database, so any of them can answer any request (metrics are read from the database too). Extra HTTP processes are
restarted when they die, and exit when the parent that started them dies, even by SIGKILL.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from typing import Any

from geomill.config import Settings
from geomill.roles import Role
from geomill.spawning import start_without_main

log = logging.getLogger(__name__)
_ctx = mp.get_context("spawn")  # like the worker processes: no fork (GDAL, threads)


def uvicorn_config(app: Any, settings: Settings) -> Any:
    """The uvicorn settings every HTTP process uses: uvloop and httptools when installed (they are: see the
    `serve` extra), no access log (a JSON log line per request would cost more than the request), idle keep-alive
    connections kept `GEOMILL_HTTP_KEEPALIVE_SECONDS`."""
    import uvicorn

    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                          access_log=False, timeout_keep_alive=math.ceil(settings.http_keepalive_seconds))


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's handler: finish open requests, then exit


def http_child_main(settings: Settings, role: Role, sock: socket.socket, parent_pid: int) -> None:
    """An extra HTTP process: the same app over its own runtime, accepting on the shared socket."""
    import uvicorn

    from geomill.api.app import create_app
    from geomill.logs import setup_logging
    from geomill.runtime import Runtime

    setup_logging(settings.log_level, settings.log_json)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    runtime = Runtime.open(settings, migrate=False)  # the parent migrated before it started serving
    try:
        uvicorn.Server(uvicorn_config(create_app(settings, runtime, role), settings)).run(sockets=[sock])
    finally:
        runtime.close()


class HttpProcesses:
    """`count` extra HTTP processes on `sock`, restarted when they die, stopped (SIGTERM, then SIGKILL after
    `grace` seconds) with the server."""

    def __init__(self, settings: Settings, role: Role, sock: socket.socket, count: int, grace: float = 10.0) -> None:
        self.settings, self.role, self.sock, self.count, self.grace = settings, role, sock, count, grace
        self.procs: list[Any] = []
        self._stopping = threading.Event()
        self._watch = threading.Thread(target=self._supervise, name="http-supervisor", daemon=True)

    def _spawn(self) -> Any:
        proc = _ctx.Process(target=http_child_main, args=(self.settings, self.role, self.sock, os.getpid()),
                            name="geomill-http", daemon=False)
        start_without_main(proc)
        return proc

    def start(self) -> None:
        if self.count > 0:
            self.procs = [self._spawn() for _ in range(self.count)]
            self._watch.start()

    def _supervise(self) -> None:
        while not self._stopping.wait(1.0):
            for i, proc in enumerate(self.procs):
                if not proc.is_alive() and not self._stopping.is_set():
                    log.warning("HTTP process %s exited (code %s); starting a new one", proc.pid, proc.exitcode)
                    self.procs[i] = self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        if self._watch.is_alive():
            self._watch.join(5)  # no restart can race the stop
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + self.grace
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("HTTP process %s did not stop within %.0f s; killing it", proc.pid, self.grace)
                proc.kill()
                proc.join(5)
