"""Lease renewal for a running task, in a thread, fenced by the attempt it belongs to; a task whose lease could
not be renewed in time stops itself (self-fencing) before anyone else may be given it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from geomill.domain import Task
from geomill.engine.ports import TaskQueue
from geomill.worker.timeouts import interrupt

log = logging.getLogger(__name__)

class Heartbeat:
    """Renews the task's lease every `interval`; notices when it was fenced or its job cancelled. A watchdog stops
    the task (`cancelled` for the handler, an interrupt for code that does not look) when no renewal succeeded
    by `margin` before the lease it last renewed runs out: a partitioned worker must not run on beside the
    worker the task is given to next. `fenced` then drops its outcome."""

    def __init__(self, store: TaskQueue, task: Task, lease_seconds: float, interval: float,
                 on_expired: Callable[[], None] | None = None) -> None:
        self.store, self.task = store, task
        # in a pool process: tells the supervisor, which kills the process when the task has not stopped after the
        # cancel grace (code inside GDAL sees neither ctx.cancelled nor the interrupt)
        self.on_expired = on_expired
        self.lease_seconds, self.interval = lease_seconds, interval
        self.margin = min(interval, lease_seconds / 4)
        self.lease_until = time.monotonic() + lease_seconds  # claimed just now (conservative: measured after)
        self.fenced = False
        self.cancelled = False
        self.expired = False  # fenced by ourselves: the lease ran out without a renewal
        self._stop = threading.Event()
        name = task.task_id[:8]
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name=f"lease-watchdog-{name}", daemon=True)
        self._progress: tuple[float, str] | None = None
        self._progress_sent = 0.0

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        self._watchdog.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._watchdog.join(timeout=1.0)
        # a beat stuck on a silent connection is not waited for: its connection gives up by itself
        self._thread.join(timeout=max(self.interval, 5.0) if not self.expired else 0.1)

    def report_progress(self, fraction: float, message: str) -> None:
        """Keep the latest progress; it is written with the next beat, at most once a second."""
        self._progress = (fraction, message)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._beat()
            except Exception:  # a failed beat is retried at the next interval; the lease has slack
                log.exception("heartbeat failed", extra={"task_id": self.task.task_id})
            if self.fenced:
                return

    def _beat(self) -> None:
        t = self.task
        sent = time.monotonic()
        if not self.store.heartbeat(t.task_id, t.attempt, self.lease_seconds):
            self.fenced = True
            log.warning("lease lost: attempt %d was fenced", t.attempt, extra={"task_id": t.task_id})
            return
        if self.expired:  # renewed too late: the task was already stopped, its outcome is dropped
            return
        self.lease_until = sent + self.lease_seconds
        self.cancelled = self.store.is_job_cancelled(t.job_id)
        now = time.monotonic()
        if self._progress is not None and now - self._progress_sent >= 1.0:
            self.store.report_progress(t.task_id, t.attempt, *self._progress)
            self._progress_sent = now

    def _watch(self) -> None:
        while not self.fenced:
            left = self.lease_until - self.margin - time.monotonic()
            if left <= 0:
                self._expire()
                return
            if self._stop.wait(left):
                return

    def _expire(self) -> None:
        t = self.task
        self.expired = self.fenced = self.cancelled = True
        log.warning("lease of task %s (attempt %d) not renewed for %.0f s: stopping it, its outcome is dropped",
                    t.task_id, t.attempt, self.lease_seconds - self.margin, extra={"task_id": t.task_id})
        interrupt(f"stopped: the lease of attempt {t.attempt} could not be renewed")
        if self.on_expired is not None:
            self.on_expired()
