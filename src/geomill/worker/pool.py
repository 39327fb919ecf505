"""The process pool: a supervisor that starts worker processes, restarts dead ones, enforces hard time limits,
runs the janitor, and drains on SIGTERM."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from geomill.config import Settings
from geomill.domain import Task, TaskTimeout
from geomill.engine.execution import error_record
from geomill.runtime import Runtime
from geomill.worker.janitor import reconcile
from geomill.worker.logs import setup_logging

log = logging.getLogger(__name__)
_ctx = mp.get_context("spawn")  # no fork: GDAL and threads do not survive fork safely


@dataclass
class Slot:
    """What one worker process is running, shared with the supervisor for the hard time limit."""

    task_id: Any  # mp.Array('c')
    attempt: Any  # mp.Value('i')
    task_type: Any  # mp.Array('c')
    deadline: Any  # mp.Value('d'), epoch seconds; 0 when idle

    @classmethod
    def new(cls) -> Slot:
        return cls(_ctx.Array("c", 64), _ctx.Value("i", 0), _ctx.Array("c", 128), _ctx.Value("d", 0.0))

    def set(self, task: Task | None) -> None:
        if task is None:
            self.deadline.value = 0.0
            return
        self.task_id.value = task.task_id.encode()
        self.task_type.value = task.task_type.encode()
        self.attempt.value = task.attempt
        self.deadline.value = time.time() + task.timeout_seconds


def _child_main(settings: Settings, queues: list[str], stop: Any, slot: Slot) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which drains us
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    setup_logging(settings.log_level, settings.log_json)
    from geomill.worker.loop import WorkerLoop

    runtime = Runtime.open(settings, migrate=False)
    stop_flag = _EventView(stop)
    try:
        WorkerLoop(runtime, queues, stop=stop_flag, on_task=slot.set).run()  # type: ignore[arg-type]
    finally:
        runtime.close()


class _EventView:
    """A multiprocessing Event seen through threading.Event's small interface; also set when the
    supervisor died (the process was re-parented), so orphaned workers drain instead of running on."""

    def __init__(self, event: Any) -> None:
        self._e = event
        self._parent = os.getppid()

    def is_set(self) -> bool:
        return self._e.is_set() or os.getppid() != self._parent

    def set(self) -> None:
        self._e.set()


class WorkerPool:
    """`processes` worker processes listening to `queues`, supervised from the calling process."""

    def __init__(self, runtime: Runtime, processes: int, queues: list[str]) -> None:
        self.rt = runtime
        self.settings = runtime.settings
        self.processes = processes
        self.queues = queues
        self.stop_event = _ctx.Event()
        self.children: list[tuple[Any, Slot]] = []
        self.draining = threading.Event()
        self._next_janitor = 0.0
        self.restarts = 0

    def start(self) -> None:
        self.children = [self._spawn() for _ in range(self.processes)]

    def _spawn(self) -> tuple[Any, Slot]:
        slot = Slot.new()
        proc = _ctx.Process(target=_child_main, args=(self.settings, self.queues, self.stop_event, slot),
                            name="geomill-worker", daemon=False)
        proc.start()
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
        """One supervision step: hard time limits, dead children, the janitor when due."""
        for i, (proc, slot) in enumerate(self.children):
            self._enforce_time_limit(proc, slot)
            if not proc.is_alive() and not self.draining.is_set():
                log.warning("worker process %s exited (code %s); starting a new one", proc.pid, proc.exitcode)
                self.restarts += 1
                self.children[i] = self._spawn()
        if time.monotonic() >= self._next_janitor:
            self._next_janitor = time.monotonic() + self.settings.janitor_interval_seconds
            reconcile(self.rt.store, self.settings)

    def _enforce_time_limit(self, proc: Any, slot: Slot) -> None:
        deadline = slot.deadline.value
        if not deadline or time.time() < deadline + self.settings.timeout_grace_seconds:
            return
        task_id, attempt = slot.task_id.value.decode(), slot.attempt.value
        log.error("task past its hard time limit: killing worker %s", proc.pid, extra={"task_id": task_id})
        proc.kill()
        proc.join(5)
        slot.deadline.value = 0.0
        task_type = self.rt.registry.task_type(slot.task_type.value.decode())
        exc = TaskTimeout(f"killed after {task_type.timeout_seconds:g} s (+{self.settings.timeout_grace_seconds:g} s grace)")
        retry_in = task_type.retry.delay(attempt) if task_type.retry.should_retry(attempt) else None
        self.rt.store.fail_task(task_id, attempt, error_record(exc, attempt, permanent=False), retry_in)

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
        for proc, _ in self.children:
            if proc.is_alive():
                log.warning("worker %s did not finish within the grace period; killing it", proc.pid)
                proc.kill()
                proc.join(5)
