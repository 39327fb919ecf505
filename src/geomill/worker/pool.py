"""The process pool: a supervisor that starts worker processes, restarts dead ones, enforces hard time limits and
cancellations, runs the janitor (when it holds the janitor lease), and drains on SIGTERM."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from geomill.dispatch.outbox import Outbox
from geomill.domain import TaskTimeout
from geomill.engine.execution import error_record
from geomill.runtime import Runtime
from geomill.spawning import start_without_main
from geomill.worker.janitor import reconcile
from geomill.worker.loop import release_events_of_silent_hosts
from geomill.worker.slots import Slot, child_main

log = logging.getLogger(__name__)
_ctx = mp.get_context("spawn")  # no fork: GDAL and threads do not survive fork safely


class WorkerPool:
    """One worker process per entry of `layout` (the queues it listens to), supervised from the calling process."""

    def __init__(self, runtime: Runtime, layout: Sequence[Sequence[str]], info: dict[str, Any] | None = None,
                 nice: int = 0) -> None:
        self.rt = runtime
        self.nice = nice  # added to each worker process's niceness (a lower CPU priority than the supervisor's)
        self.settings = runtime.settings
        self.layout = [list(q) for q in layout]
        self.stop_event = _ctx.Event()
        self.children: list[tuple[Any, Slot]] = []
        self.draining = threading.Event()
        self._next_janitor = 0.0
        self._next_cancel_check = 0.0
        self.holder = f"{self.settings.app_name}#{os.getpid()}"
        self.restarts = 0
        self.info = info or {}  # what this process reports of itself in the workers table (role, queues)
        self.outbox = Outbox.open(runtime)  # None unless a broker is configured

    def start(self) -> None:
        self.children = [self._spawn(queues) for queues in self.layout]

    def _spawn(self, queues: list[str]) -> tuple[Any, Slot]:
        slot = Slot.new(_ctx)
        proc = _ctx.Process(target=child_main, args=(self.settings, queues, self.stop_event, slot, self.nice),
                            name="geomill-worker", daemon=False)
        start_without_main(proc)  # the child imports the worker, not the CLI that started it
        return proc, slot

    def pids(self) -> list[int]:
        return [p.pid for p, _ in self.children if p.pid is not None]

    def supervise(self, until: Callable[[], bool] | None = None, tick: float = 0.2) -> None:
        """Run the supervision loop until `until()` is true or a drain was requested."""
        while not self.draining.is_set():
            self.tick()
            if until is not None and until():
                return
            time.sleep(tick)

    def tick(self) -> None:
        """One supervision step: time limits, cancellations, dead children, the janitor when due."""
        now = time.monotonic()
        check_cancel = now >= self._next_cancel_check
        if check_cancel:
            self._next_cancel_check = now + 1.0
        for i, (proc, slot) in enumerate(self.children):
            self._enforce_time_limit(proc, slot)
            self._enforce_fencing(proc, slot)
            if check_cancel:
                self._enforce_cancellation(proc, slot)
            if not proc.is_alive() and not self.draining.is_set():
                log.warning("worker process %s exited (code %s); starting a new one", proc.pid, proc.exitcode)
                self.restarts += 1
                self.children[i] = self._spawn(self.layout[i])
        if now >= self._next_janitor:
            self._next_janitor = now + self.settings.janitor_interval_seconds
            self._report_alive()
            self._janitor()
        elif self.outbox is not None:
            self.outbox.send_due()

    def _report_alive(self) -> None:
        queues = sorted({q for entry in self.layout for q in entry})
        info = {"app_name": self.settings.app_name, "queues": queues, "processes": len(self.children),
                "pids": self.pids(), "restarts": self.restarts, **self.info}
        try:
            self.rt.store.record_worker(self.holder, info)
        except Exception:  # reporting is best effort; the next interval tries again
            log.exception("could not record this worker as alive")

    def _janitor(self) -> None:
        lease = self.settings.janitor_interval_seconds * 3
        try:
            if self.rt.store.acquire_leadership("janitor", self.holder, lease):
                reconcile(self.rt.store, self.settings, self.rt.registry)
                # after an outage every host's reports are late: wait until they have had time to come in again
                if self.rt.store.seconds_since_unavailable() > self.settings.janitor_interval_seconds * 3:
                    release_events_of_silent_hosts(self.rt)
                if self.outbox is not None:  # the reconciler part: re-send what was sent but never claimed
                    self.outbox.send_due(republish_after_seconds=self.settings.broker_republish_seconds)
        except Exception:  # the janitor must never take the supervisor down; it runs again next interval
            log.exception("janitor pass failed")

    def _enforce_time_limit(self, proc: Any, slot: Slot) -> None:
        deadline = slot.deadline.value
        if not deadline or time.time() < deadline + self.settings.timeout_grace_seconds:
            return
        task_id, attempt, task_type = slot.current()
        log.error("task past its hard time limit: killing worker %s", proc.pid, extra={"task_id": task_id})
        self._kill(proc, slot)
        tt = self.rt.registry.task_type(task_type)
        exc = TaskTimeout(f"killed after {tt.timeout_seconds:g} s (+{self.settings.timeout_grace_seconds:g} s grace)")
        retry_in = tt.retry.delay(attempt) if tt.retry.should_retry(attempt) else None
        self.rt.store.fail_task(task_id, attempt, error_record(exc, attempt, permanent=False), retry_in)

    def _enforce_fencing(self, proc: Any, slot: Slot) -> None:
        """A task that lost its lease (its heartbeat could not renew it) and does not stop by itself is killed after
        the cancel grace; nothing is written: the database may be out of reach, and the janitor reclaims the lease."""
        fenced_at = slot.fenced_at.value
        if not fenced_at or not slot.deadline.value or time.time() - fenced_at < self.settings.cancel_grace_seconds:
            return
        task_id, attempt, _ = slot.current()
        log.warning("killing worker %s: its task lost its lease and did not stop", proc.pid,
                    extra={"task_id": task_id, "attempt": attempt})
        self._kill(proc, slot)
        slot.fenced_at.value = 0.0

    def _enforce_cancellation(self, proc: Any, slot: Slot) -> None:
        """A task of a cancelled job that does not stop by itself (e.g. inside GDAL) is killed after a grace."""
        if not slot.deadline.value:
            return
        started = slot.started.value
        job_id = slot.job_id.value.decode()
        if time.time() - started < self.settings.cancel_grace_seconds or not self.rt.store.is_job_cancelled(job_id):
            return
        task_id, attempt, _ = slot.current()
        log.warning("killing worker %s: its task's job was cancelled", proc.pid, extra={"task_id": task_id})
        self._kill(proc, slot)
        self.rt.store.cancel_task(task_id, attempt)

    def _kill(self, proc: Any, slot: Slot) -> None:
        proc.kill()
        proc.join(5)
        slot.deadline.value = 0.0

    def drain(self) -> None:
        """Ask workers to stop claiming; used by the SIGTERM handler."""
        self.draining.set()
        self.stop_event.set()

    def stop(self) -> None:
        """Stop claiming, let running tasks finish within the grace period, then kill what is left."""
        self.drain()
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        for proc, _ in self.children:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc, slot in self.children:
            if proc.is_alive():
                log.warning("worker %s did not finish within the grace period; killing it", proc.pid)
                self._kill(proc, slot)
        if self.outbox is not None:
            self.outbox.close()
