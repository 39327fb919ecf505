"""Lease renewal for a running task, in a thread, fenced by the attempt it belongs to."""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from geomill.domain import Task
from geomill.engine.ports import TaskQueue

log = logging.getLogger(__name__)


class Heartbeat:
    """Renews the task's lease every `interval`; notices when it was fenced or its job cancelled."""

    def __init__(self, store: TaskQueue, task: Task, lease_seconds: float, interval: float) -> None:
        self.store, self.task = store, task
        self.lease_seconds, self.interval = lease_seconds, interval
        self.fenced = False
        self.cancelled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{task.task_id[:8]}", daemon=True)
        self._progress: tuple[float, str] | None = None
        self._progress_sent = 0.0

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=max(self.interval, 5.0))

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
        if not self.store.heartbeat(t.task_id, t.attempt, self.lease_seconds):
            self.fenced = True
            log.warning("lease lost: attempt %d was fenced", t.attempt, extra={"task_id": t.task_id})
            return
        self.cancelled = self.store.is_job_cancelled(t.job_id)
        now = time.monotonic()
        if self._progress is not None and now - self._progress_sent >= 1.0:
            self.store.report_progress(t.task_id, t.attempt, *self._progress)
            self._progress_sent = now
