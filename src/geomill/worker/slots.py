"""What runs inside a worker process, and the shared slot through which its supervisor sees its current task."""

from __future__ import annotations

import gc
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from geomill.config import Settings
from geomill.domain import Task
from geomill.logs import setup_logging
from geomill.runtime import Runtime


@dataclass
class Slot:
    """The task a worker process is running (shared memory), for hard time limits and cancellation."""

    task_id: Any  # Array('c')
    job_id: Any  # Array('c')
    task_type: Any  # Array('c')
    attempt: Any  # Value('i')
    started: Any  # Value('d'), epoch seconds
    deadline: Any  # Value('d'), epoch seconds; 0 when idle
    fenced_at: Any  # Value('d'), epoch seconds the task's lease ran out unrenewed (self-fenced); 0 when not

    @classmethod
    def new(cls, ctx: Any) -> Slot:
        return cls(ctx.Array("c", 64), ctx.Array("c", 80), ctx.Array("c", 128), ctx.Value("i", 0),
                   ctx.Value("d", 0.0), ctx.Value("d", 0.0), ctx.Value("d", 0.0))

    def fence(self) -> None:
        """The running task lost its lease: if it does not stop by itself, the supervisor kills the process."""
        if self.deadline.value:
            self.fenced_at.value = time.time()

    def set(self, task: Task | None) -> None:
        self.fenced_at.value = 0.0
        if task is None:
            self.deadline.value = 0.0
            return
        self.task_id.value = task.task_id.encode()
        self.job_id.value = task.job_id.encode()
        self.task_type.value = task.task_type.encode()
        self.attempt.value = task.attempt
        self.started.value = time.time()
        self.deadline.value = time.time() + task.timeout_seconds

    def current(self) -> tuple[str, int, str]:
        return self.task_id.value.decode(), self.attempt.value, self.task_type.value.decode()


class StopFlag:
    """A multiprocessing Event seen through threading.Event's small interface; also set when the supervisor died
    (the process was re-parented), so orphaned workers drain instead of running on."""

    def __init__(self, event: Any) -> None:
        self._e = event
        self._parent = os.getppid()

    def is_set(self) -> bool:
        return self._e.is_set() or os.getppid() != self._parent

    def set(self) -> None:
        self._e.set()


def child_main(settings: Settings, queues: list[str], stop: Any, slot: Slot, nice: int = 0) -> None:
    """Entry point of a worker process; `nice` lowers its CPU priority (beside an HTTP server)."""
    if nice:
        os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which drains us
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    setup_logging(settings.log_level, settings.log_json)
    from geomill.worker.gdal_messages import NativeStderr
    from geomill.worker.loop import WorkerLoop

    runtime = Runtime.open(settings, migrate=False)
    gc.freeze()  # the imported modules and the runtime live forever: keep them out of every later full collection
    native = NativeStderr().install()  # libtiff's raw stderr lines become log records with the task's id
    try:
        loop = WorkerLoop(runtime, queues, stop=StopFlag(stop), on_task=slot.set,  # type: ignore[arg-type]
                          on_lease_expired=slot.fence)  # a task ignoring the stop request is killed by the supervisor
        loop.native_stderr = native
        loop.run()
    finally:
        runtime.close()
        native.uninstall()
