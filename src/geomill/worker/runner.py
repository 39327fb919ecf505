"""Running a worker pool in the foreground: until jobs finish (`geomill run`) or until stopped (`geomill serve`)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence

from geomill.runtime import Runtime
from geomill.worker.pool import WorkerPool

log = logging.getLogger(__name__)


def _jobs_done(runtime: Runtime, job_ids: Sequence[str]) -> bool:
    return all(runtime.store.get_job(j).status.is_terminal for j in job_ids)


def run_pool(runtime: Runtime, layout: Sequence[Sequence[str]], *, job_ids: Sequence[str] = (),
             on_tick: Callable[[], None] | None = None) -> WorkerPool:
    """Start one worker process per `layout` entry; return when all `job_ids` finished (with none: when signalled)."""
    pool = WorkerPool(runtime, layout)
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
