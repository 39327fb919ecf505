"""Running a worker pool in the foreground: until jobs finish (`geomill run`) or until stopped (`geomill serve`)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from geomill.runtime import Runtime
from geomill.worker.pool import WorkerPool

log = logging.getLogger(__name__)


def _jobs_done(runtime: Runtime, job_ids: Sequence[str]) -> bool:
    return all(runtime.store.get_job(j).status.is_terminal for j in job_ids)


def run_pool(runtime: Runtime, layout: Sequence[Sequence[str]], *, job_ids: Sequence[str] = (),
             on_tick: Callable[[], None] | None = None, info: dict[str, Any] | None = None) -> WorkerPool:
    """Start one worker process per `layout` entry; return when all `job_ids` finished (with none: when signalled)."""
    pool = WorkerPool(runtime, layout, info)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _drain(signum: int, frame: object) -> None:
        log.warning("signal %s: draining (running tasks get %.0f s)", signum,
                    runtime.settings.shutdown_grace_seconds)
        pool.drain()

    for sig in previous:
        signal.signal(sig, _drain)
    pool.start()

    def until() -> bool:
        if on_tick is not None:
            on_tick()
        return bool(job_ids) and _jobs_done(runtime, job_ids)

    try:
        pool.supervise(until=until)
    finally:
        pool.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return pool


class BackgroundPool:
    """A worker pool supervised from a thread, for processes whose main thread serves HTTP (uvicorn handles the
    signals; its shutdown drains the pool)."""

    def __init__(self, runtime: Runtime, layout: Sequence[Sequence[str]], info: dict[str, Any] | None = None) -> None:
        # the HTTP server shares the machine with these processes: its requests come first under contention
        self.pool = WorkerPool(runtime, layout, info, nice=runtime.settings.http_worker_nice)
        self._thread = threading.Thread(target=self.pool.supervise, name="pool-supervisor", daemon=True)

    def start(self) -> None:
        self.pool.start()
        self._thread.start()

    def stop(self) -> None:
        self.pool.drain()
        self._thread.join(timeout=5)
        self.pool.stop()
