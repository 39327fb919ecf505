"""A planner killed during a chunked stage insert (issue 25 item 4): the stage shows as still being planned, and a
planner that starts takes the dead one's event back at once instead of after its visibility timeout."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from geomill.api.models import StageProgress
from geomill.engine.orchestrator import CHUNK, FIRST_CHUNK
from geomill.runtime import Runtime
from geomill.service.status import job_status
from geomill.worker.loop import WorkerLoop
from geomill.worker.pool import WorkerPool

N = FIRST_CHUNK + 2 * CHUNK + 10  # four chunks: killed inserting the third


class Killed(BaseException):
    """The planner process dying (not an Exception: nothing in the orchestrator handles it)."""


def _kill_during_second_chunk(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    real = rt.store.add_stage_tasks
    calls = {"n": 0}

    def add_stage_tasks(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed()
        return real(*args, **kwargs)
    monkeypatch.setattr(rt.store, "add_stage_tasks", add_stage_tasks)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_interrupted_insert_shows_as_planning_and_a_starting_planner_resumes_it(
    make_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = make_runtime(event_visibility_seconds=60)
    job_id = rt.orchestrator.submit("fanout", {"n": N}).job.job_id
    dead = WorkerLoop(rt, ["jobs"])
    dead.app = f"{rt.settings.app_name}#{_dead_pid()}"
    _kill_during_second_chunk(rt, monkeypatch)
    with pytest.raises(Killed):
        dead.handle_one_event()
    monkeypatch.undo()

    stage = job_status(rt.store, rt.registry, job_id)["stages"][0]
    assert stage["planning"] is True and stage["total"] == FIRST_CHUNK + CHUNK < N
    assert stage["done"] == stage.get("completed", 0) == 0  # not one less than completed
    assert stage["progress"] == 0.0  # an unknown share of a stage of unknown size, not "near complete"
    assert StageProgress(**stage).planning  # and the API shows it
    assert not WorkerLoop(rt, ["jobs"]).handle_one_event()  # the event is hidden for 60 s

    planner = WorkerLoop(rt, ["jobs"])
    assert planner.release_orphaned_events() == 1
    assert planner.handle_one_event()
    stage = job_status(rt.store, rt.registry, job_id)["stages"][0]
    assert stage["planning"] is False and stage["total"] == N


def test_a_live_planners_events_are_left_alone(make_runtime: Any) -> None:
    rt = make_runtime(event_visibility_seconds=60)
    rt.orchestrator.submit("fanout", {"n": 1})
    other = f"{rt.settings.app_name}#1"  # pid 1 is alive
    assert rt.store.claim_event(other, 60) is not None
    assert rt.store.claim_event(f"another-host#{_dead_pid()}", 60) is None  # (nothing else to claim)
    assert WorkerLoop(rt, ["jobs"]).release_orphaned_events() == 0
    assert rt.store.event_claimants() == [other]


def test_a_planner_of_another_host_that_stopped_reporting_is_resumed_at_once(
    make_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its pid cannot be checked here: the other host's supervisor no longer reports in the workers table."""
    rt = make_runtime(event_visibility_seconds=60, janitor_interval_seconds=5)  # a report counts for 15 s
    job_id = rt.orchestrator.submit("fanout", {"n": N}).job.job_id
    dead = WorkerLoop(rt, ["jobs"])
    dead.app = "geomill@other-host#4242"
    rt.store.record_worker("geomill@other-host#4240", {"app_name": "geomill@other-host", "pids": [4242]})
    _kill_during_second_chunk(rt, monkeypatch)
    with pytest.raises(Killed):
        dead.handle_one_event()
    monkeypatch.undo()
    assert WorkerLoop(rt, ["jobs"]).release_orphaned_events() == 0  # the other host still reports that pid: alive

    stale = {"t": rt.store._since(16)}  # type: ignore[attr-defined]
    rt.store._write("UPDATE workers SET last_seen_at = :t", stale)  # type: ignore[attr-defined]  # it stopped
    planner = WorkerLoop(rt, ["jobs"])
    assert planner.release_orphaned_events() == 1
    assert planner.handle_one_event()
    stage = job_status(rt.store, rt.registry, job_id)["stages"][0]
    assert stage["planning"] is False and stage["total"] == N


def test_the_janitor_takes_back_the_events_of_a_host_that_stopped_reporting_without_a_planner_starting(
    make_runtime: Any
) -> None:
    """A whole host gone while the other hosts' planners keep running: the janitor pass releases its events."""
    rt = make_runtime(event_visibility_seconds=60, janitor_interval_seconds=5)
    rt.orchestrator.submit("fanout", {"n": 1})
    rt.orchestrator.submit("fanout", {"n": 2})
    assert rt.store.claim_event("geomill@gone#7", 60) is not None
    assert rt.store.claim_event("geomill@alive#8", 60) is not None
    rt.store.record_worker("geomill@alive#1", {"app_name": "geomill@alive", "pids": [8]})
    WorkerPool(rt, [["jobs"]])._janitor()
    assert rt.store.event_claimants() == ["geomill@alive#8"]
    assert rt.store.counters().get("released_events") == 1  # a repair, counted (GET /metrics shows it)

