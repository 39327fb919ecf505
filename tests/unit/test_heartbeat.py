"""Self-fencing (issue 25): a task whose lease could not be renewed in time is stopped by its own worker."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from geomill.domain import Task, TaskTimeout
from geomill.runtime import Runtime
from geomill.worker.heartbeat import Heartbeat
from geomill.worker.loop import WorkerLoop
from geomill.worker.timeouts import interrupt, soft_time_limit


class Unreachable:
    """A store whose lease renewals fail (PostgreSQL out of reach); everything else is the real store's."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def heartbeat(self, task_id: str, attempt: int, lease_seconds: float) -> bool:
        raise OSError("no route to host")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _claimed(rt: Runtime, **params: Any) -> Task:
    rt.orchestrator.submit("fanout", {"n": 1, **params})
    assert WorkerLoop(rt, ["jobs"]).handle_one_event()
    task = rt.store.claim_task(["default-tasks"], "w", rt.settings.lease_seconds)
    assert task is not None
    return task


def test_interrupt_raises_in_the_task_and_is_a_no_op_outside_one() -> None:
    assert interrupt("nothing runs") is False
    started = time.monotonic()
    with pytest.raises(TaskTimeout, match="lease"), soft_time_limit(30):
        assert interrupt("lease gone")
        time.sleep(5)
    assert time.monotonic() - started < 1


def test_a_heartbeat_that_cannot_renew_stops_the_task_before_its_lease_expires(
    make_runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rt = make_runtime(lease_seconds=0.8)
    task = _claimed(rt)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), Heartbeat(Unreachable(rt.store), task, 0.8, 0.2) as hb:
        while not hb.cancelled and time.monotonic() - started < 5:
            time.sleep(0.01)
    assert hb.expired and hb.fenced and hb.cancelled
    assert time.monotonic() - started < 0.8  # stopped before the lease could be given to anyone else
    assert any(task.task_id in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_a_worker_cut_off_from_its_store_drops_the_task_it_had_to_stop(make_runtime: Any) -> None:
    rt = make_runtime(lease_seconds=0.6)
    task = _claimed(rt, sleep_s=30)
    rt.store = Unreachable(rt.store)
    started = time.monotonic()
    WorkerLoop(rt, ["default-tasks"]).execute(task)
    assert time.monotonic() - started < 2
    assert rt.store.get_task(task.task_id).status.value == "processing"  # no outcome: the janitor reclaims it


class FakeProcess:
    pid = 4242

    def __init__(self) -> None:
        self.killed = False

    def kill(self) -> None:
        self.killed = True

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return not self.killed


def test_the_supervisor_kills_a_self_fenced_task_that_does_not_stop(make_runtime: Any) -> None:
    import multiprocessing as mp

    from geomill.worker.pool import WorkerPool
    from geomill.worker.slots import Slot

    rt = make_runtime(lease_seconds=0.6, cancel_grace_seconds=0.3)
    task = _claimed(rt, sleep_s=30)
    slot = Slot.new(mp.get_context("spawn"))
    slot.set(task)
    pool, proc = WorkerPool(rt, [["default-tasks"]]), FakeProcess()
    with Heartbeat(Unreachable(rt.store), task, 0.6, 0.2, on_expired=slot.fence):  # "runs in C": nothing stops it
        time.sleep(0.7)
    assert slot.fenced_at.value > 0
    pool._enforce_fencing(proc, slot)
    assert not proc.killed  # within the cancel grace
    time.sleep(0.35)
    pool._enforce_fencing(proc, slot)
    assert proc.killed and slot.deadline.value == 0.0
