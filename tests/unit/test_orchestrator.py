"""Orchestrator on the SQLite store: submission, the orchestration patterns, failure policies, retries and
exactly-once stage advancement under duplicate and stale events."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import pytest

from geomill.domain import (
    Event,
    EventKind,
    InvalidInput,
    JobStatus,
    TaskStatus,
    UnknownJobType,
    make_task_id,
)
from geomill.runtime import Runtime
from geomill.worker.loop import WorkerLoop

TASK_QUEUES = ["raster-tasks", "vector-tasks", "long-tasks", "default-tasks"]


# submission


@pytest.mark.parametrize(("job_type", "params", "field"), [
    ("hello_world", {"n": "abc"}, "n"),
    ("hello_world", {"n": -1}, "n"),
    ("fanout", {"n": 2, "stages": "many"}, "stages"),
    ("fanout", {"n": 2, "invalid_keys": ["x"]}, "invalid_keys.0"),
    ("fanout", {"sleep_s": [1]}, "sleep_s"),
])
def test_invalid_params_name_the_field_and_store_nothing(
    runtime: Runtime, rows: Callable[..., int], job_type: str, params: dict, field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        runtime.orchestrator.submit(job_type, params)
    assert f"{field}:" in str(info.value)
    assert (rows("jobs"), rows("tasks"), rows("events"), rows("stages")) == (0, 0, 0, 0)


def test_unknown_job_type_stores_nothing(runtime: Runtime, rows: Callable[..., int]) -> None:
    with pytest.raises(UnknownJobType, match="fanout, hello_world"):
        runtime.orchestrator.submit("nope", {})
    assert (rows("jobs"), rows("events")) == (0, 0)


def test_submit_stores_a_queued_job_and_one_event(runtime: Runtime, rows: Callable[..., int]) -> None:
    sub = runtime.orchestrator.submit("hello_world", {"n": 2})
    assert sub.created
    job = sub.job
    assert (job.status, job.stage, job.stage_count, job.advances) == (JobStatus.QUEUED, 0, 2, 0)
    assert job.params == {"n": 2}
    assert rows("jobs") == 1
    assert rows("events", "kind = 'job_submitted' AND job_id = ? AND stage = 0", (job.job_id,)) == 1
    assert rows("tasks") == 0


def test_same_params_twice_give_the_same_job(runtime: Runtime, rows: Callable[..., int]) -> None:
    first = runtime.orchestrator.submit("fanout", {"n": 3, "stages": 2})
    again = runtime.orchestrator.submit("fanout", {"stages": 2, "n": 3})
    defaults_spelt_out = runtime.orchestrator.submit("fanout", {"n": 3, "stages": 2, "sleep_s": 0.0, "tag": ""})
    assert first.created and not again.created and not defaults_spelt_out.created
    assert again.job.job_id == first.job.job_id == defaults_spelt_out.job.job_id
    assert rows("jobs") == 1 and rows("events") == 1
    assert runtime.orchestrator.submit("fanout", {"n": 3, "stages": 2, "tag": "b"}).created


def test_resubmit_of_a_finished_job_is_a_new_job_with_lineage(
    runtime: Runtime, finish: Callable, rows: Callable[..., int]
) -> None:
    orch = runtime.orchestrator
    first = orch.submit("hello_world", {"n": 1}).job
    assert finish(runtime, first.job_id).status is JobStatus.COMPLETED
    rerun = orch.resubmit(first.job_id)
    assert rerun.created
    assert rerun.job.job_id != first.job_id
    assert rerun.job.resubmit_of == first.job_id
    assert rerun.job.params == first.params and rerun.job.status is JobStatus.QUEUED
    assert orch.resubmit(first.job_id).job.job_id == rerun.job.job_id  # a resubmit is idempotent too
    assert finish(runtime, rerun.job.job_id).status is JobStatus.COMPLETED
    assert rows("jobs") == 2
    assert runtime.store.get_job(first.job_id).status is JobStatus.COMPLETED  # the original is untouched


@pytest.mark.parametrize("steps", [0, 1])
def test_resubmit_of_an_unfinished_job_is_refused(runtime: Runtime, rows: Callable[..., int], steps: int) -> None:
    job = runtime.orchestrator.submit("hello_world", {"n": 2}).job
    loop = WorkerLoop(runtime, runtime.settings.queues)
    for _ in range(steps):
        assert loop.run_once()
    status = runtime.store.get_job(job.job_id).status
    assert status is (JobStatus.QUEUED if steps == 0 else JobStatus.PROCESSING)
    with pytest.raises(InvalidInput, match=f"{job.job_id} is {status}"):
        runtime.orchestrator.resubmit(job.job_id)
    assert rows("jobs") == 1


# orchestration patterns


def test_hello_world_fans_out_then_plans_replies_from_results(runtime: Runtime, finish: Callable) -> None:
    job_id = runtime.orchestrator.submit("hello_world", {"n": 4}).job.job_id
    job = finish(runtime, job_id)
    assert job.status is JobStatus.COMPLETED
    assert (job.stage, job.advances) == (2, 3)
    assert job.result == {"greetings": 4, "replies": 4, "sample": [
        "Reply to 'Hello from greeting 0'", "Reply to 'Hello from greeting 1'", "Reply to 'Hello from greeting 2'"]}
    replies = runtime.store.stage_tasks(job_id, 2)
    assert [t.params for t in replies] == [{"greeting": f"Hello from greeting {i}"} for i in range(4)]
    assert [t.task_key for t in replies] == [f"reply-greet-{i:06d}" for i in range(4)]
    stages = runtime.store.get_stages(job_id)
    assert [(s.name, s.total, s.remaining, s.failed) for s in stages] == [("greet", 4, 0, 0), ("reply", 4, 0, 0)]
    for task in runtime.store.list_tasks(job_id):
        assert task.status is TaskStatus.COMPLETED and task.attempt == 1
        assert task.target_queue == "default-tasks"
        assert task.executed_by_app and task.executed_by_app.startswith("unit-test#")
        assert task.execution_started_at is not None and task.finished_at is not None
        assert task.task_id == make_task_id(job_id, task.stage, task.task_key)


def test_zero_task_stages_complete_at_once_and_the_job_completes(
    runtime: Runtime, finish: Callable, rows: Callable[..., int]
) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 0}).job.job_id
    job = finish(runtime, job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"stages": 3, "completed": 0, "failed": 0}
    assert job.advances == job.stage_count + 1 == 4
    stages = runtime.store.get_stages(job_id)
    assert [(s.total, s.remaining) for s in stages] == [(0, 0)] * 3
    assert all(s.completed_at is not None for s in stages)
    assert rows("tasks") == 0 and rows("events") == 0


def test_hello_world_with_zero_greetings_plans_zero_replies(runtime: Runtime, finish: Callable) -> None:
    job = finish(runtime, runtime.orchestrator.submit("hello_world", {"n": 0}).job.job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"greetings": 0, "replies": 0, "sample": []}


def test_sequential_stages_run_one_after_another(runtime: Runtime, finish: Callable) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 4, "stages": 3}).job.job_id
    job = finish(runtime, job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"stages": 3, "completed": 12, "failed": 0}
    assert job.advances == 4
    stages = runtime.store.get_stages(job_id)
    assert [(s.name, s.total, s.remaining) for s in stages] == [(f"work-{k}", 4, 0) for k in (1, 2, 3)]
    for before, after in zip(stages, stages[1:], strict=False):
        assert before.completed_at is not None and before.completed_at <= after.created_at
        last_before = max(t.finished_at for t in runtime.store.stage_tasks(job_id, before.stage))
        first_after = min(t.execution_started_at for t in runtime.store.stage_tasks(job_id, after.stage))
        assert last_before <= first_after  # the barrier: no stage k+1 task starts before stage k ends
    keys = [t.task_key for t in runtime.store.list_tasks(job_id)]
    assert keys == [f"s{k}-{i:07d}" for k in (1, 2, 3) for i in range(4)]


def test_stage_k_plus_1_is_not_planned_while_stage_k_has_unfinished_tasks(runtime: Runtime) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 3, "stages": 2}).job.job_id
    loop = WorkerLoop(runtime, runtime.settings.queues)
    assert loop.run_once()  # job_submitted -> stage 1 planned
    assert loop.run_once()  # one task of stage 1
    assert loop.run_once()  # another
    loop.flush_finished()  # short prefetched tasks are recorded in batches: record the two now
    assert runtime.store.get_job(job_id).stage == 1
    assert [s.stage for s in runtime.store.get_stages(job_id)] == [1]
    assert runtime.store.get_stages(job_id)[0].remaining == 1


# failure policies


def test_fail_job_policy_fails_the_job_naming_the_failed_tasks(
    runtime: Runtime, finish: Callable, rows: Callable[..., int]
) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 4, "stages": 2, "invalid_keys": [1, 3]}).job.job_id
    job = finish(runtime, job_id)
    assert job.status is JobStatus.FAILED
    assert job.result is None and job.finished_at is not None
    err = job.error
    assert err["type"] == "StageFailed" and err["stage"] == 1
    assert err["failed_tasks"] == [make_task_id(job_id, 1, "s1-0000001"), make_task_id(job_id, 1, "s1-0000003")]
    assert "2 task(s) failed" in err["message"] and "s1-0000001" in err["message"]
    assert "InvalidInput" in err["message"]
    # the other tasks of the stage still ran; the next stage was never planned
    statuses = {t.task_key: t.status for t in runtime.store.list_tasks(job_id)}
    assert statuses == {"s1-0000000": TaskStatus.COMPLETED, "s1-0000001": TaskStatus.FAILED,
                        "s1-0000002": TaskStatus.COMPLETED, "s1-0000003": TaskStatus.FAILED}
    assert [s.stage for s in runtime.store.get_stages(job_id)] == [1]
    assert runtime.store.get_stages(job_id)[0].failed == 2
    assert rows("tasks", "stage = 2") == 0
    assert job.stage == 1 and job.advances == 2  # stage 1 planned, then the failing compare-and-set


def test_tolerate_policy_goes_on_and_ends_completed_with_errors(runtime: Runtime, finish: Callable) -> None:
    params = {"n": 3, "stages": 2, "invalid_keys": [1], "tolerate": True}
    job_id = runtime.orchestrator.submit("fanout", params).job.job_id
    job = finish(runtime, job_id)
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS
    assert job.result == {"stages": 3, "completed": 4, "failed": 2}
    assert job.error is None
    assert [(s.stage, s.failed, str(s.failure_policy)) for s in runtime.store.get_stages(job_id)] == [
        (1, 1, "tolerate"), (2, 1, "tolerate"), (3, 0, "tolerate")]


def test_a_plan_that_raises_fails_the_job_instead_of_looping(
    runtime: Runtime, db: sqlite3.Connection, finish: Callable
) -> None:
    job_id = runtime.orchestrator.submit("hello_world", {"n": 1}).job.job_id
    loop = WorkerLoop(runtime, runtime.settings.queues)
    assert loop.run_once() and loop.run_once()  # stage 1 planned and its one task completed
    db.execute("UPDATE tasks SET result = '{}' WHERE job_id = ?", (job_id,))  # the reply plan needs 'greeting'
    job = finish(runtime, job_id, loop=loop)
    assert job.status is JobStatus.FAILED
    assert job.error["type"] == "KeyError" and job.error["stage"] == 1
    assert [s.stage for s in runtime.store.get_stages(job_id)] == [1]


# retries


def test_transient_failure_is_retried_and_attempt_2_completes(runtime: Runtime, finish: Callable) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 2, "fail_attempts": 1}).job.job_id
    job = finish(runtime, job_id)
    assert job.status is JobStatus.COMPLETED
    for task in runtime.store.list_tasks(job_id):
        assert task.status is TaskStatus.COMPLETED
        assert task.attempt == 2 and task.result["attempt"] == 2
        assert task.error is None
    assert runtime.store.get_stages(job_id)[0].failed == 0


def test_retry_waits_out_its_backoff(runtime: Runtime) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 1, "fail_attempts": 1}).job.job_id
    loop = WorkerLoop(runtime, runtime.settings.queues)
    assert loop.run_once() and loop.run_once()  # plan, then attempt 1 fails
    (task,) = runtime.store.list_tasks(job_id)
    assert (task.status, task.attempt) == (TaskStatus.QUEUED, 1)
    assert task.error["type"] == "TransientError" and task.error["retryable"] is True
    wait = (task.available_at - task.created_at).total_seconds()
    assert 0.15 <= wait <= 2.0  # demo.work backs off 0.2 s (+-10 %) after attempt 1
    assert runtime.store.get_stages(job_id)[0].remaining == 1  # a retry does not count the stage down
    assert not loop.run_once()  # nothing claimable during the backoff


def test_transient_failures_exhaust_max_attempts_then_fail(runtime: Runtime, finish: Callable) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 1, "fail_attempts": 10}).job.job_id
    job = finish(runtime, job_id)
    assert job.status is JobStatus.FAILED
    (task,) = runtime.store.list_tasks(job_id)
    assert (task.status, task.attempt, task.max_attempts) == (TaskStatus.FAILED, 3, 3)
    assert task.error["attempt"] == 3 and task.error["retryable"] is True
    assert "attempt 3" in task.error["message"]


def test_invalid_input_is_not_retried(runtime: Runtime, finish: Callable) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 1, "invalid_keys": [0]}).job.job_id
    job = finish(runtime, job_id)
    assert job.status is JobStatus.FAILED
    (task,) = runtime.store.list_tasks(job_id)
    assert (task.status, task.attempt) == (TaskStatus.FAILED, 1)
    assert task.error["type"] == "InvalidInput" and task.error["retryable"] is False
    assert "refuse its input" in task.error["message"]


# exactly-once stage advancement


def _insert_event(db: sqlite3.Connection, kind: EventKind, job_id: str, stage: int) -> None:
    now = time.time()
    db.execute("INSERT INTO events (kind, job_id, stage, created_at, visible_at) VALUES (?, ?, ?, ?, ?)",
               (str(kind), job_id, stage, now, now))


def _handle_next_event(runtime: Runtime, times: int = 1) -> Event:
    event = runtime.store.claim_event("test", 30)
    assert event is not None
    for _ in range(times):
        runtime.orchestrator.handle_event(event)
    runtime.store.ack_event(event.event_id)
    return event


def test_duplicate_events_advance_each_stage_exactly_once(
    runtime: Runtime, db: sqlite3.Connection, rows: Callable[..., int], finish: Callable, idle: Callable
) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 3, "stages": 2}).job.job_id
    workers = WorkerLoop(runtime, TASK_QUEUES)  # tasks only: events are handled by hand below

    event = _handle_next_event(runtime, times=3)  # job_submitted, delivered three times
    assert event.kind is EventKind.JOB_SUBMITTED
    job = runtime.store.get_job(job_id)
    assert (job.stage, job.advances, rows("tasks")) == (1, 1, 3)

    _insert_event(db, EventKind.JOB_SUBMITTED, job_id, 0)  # a replayed submission
    assert idle(workers) == 3
    stage1 = runtime.store.get_stages(job_id)[0]
    assert (stage1.remaining, stage1.completed_at is not None) == (0, True)
    assert rows("events", "kind = 'stage_complete' AND stage = 1") == 1  # emitted once, by the last completion

    for _ in range(3):
        _insert_event(db, EventKind.STAGE_COMPLETE, job_id, 1)
        _insert_event(db, EventKind.JOB_SUBMITTED, job_id, 0)
    for _ in range(3):
        runtime.orchestrator.handle_event(Event(0, EventKind.STAGE_COMPLETE, job_id, 1))

    job = finish(runtime, job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.advances == job.stage_count + 1 == 4
    assert job.result == {"stages": 3, "completed": 6, "failed": 0}
    assert rows("tasks") == 6
    assert db.execute("SELECT COUNT(DISTINCT job_id || stage || task_key) FROM tasks").fetchone()[0] == 6
    assert rows("stages") == 3
    assert rows("tasks", "attempt <> 1") == 0  # no task ran twice
    assert rows("events") == 0

    before = db.execute("SELECT * FROM jobs").fetchall()
    for kind, stage in [(EventKind.JOB_SUBMITTED, 0), (EventKind.STAGE_COMPLETE, 1), (EventKind.STAGE_COMPLETE, 3)]:
        runtime.orchestrator.handle_event(Event(0, kind, job_id, stage))
    assert db.execute("SELECT * FROM jobs").fetchall() == before


def test_stale_and_premature_events_change_nothing(
    runtime: Runtime, db: sqlite3.Connection, rows: Callable[..., int], idle: Callable
) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 2, "stages": 3}).job.job_id
    workers = WorkerLoop(runtime, TASK_QUEUES)
    _handle_next_event(runtime)  # plan stage 1
    idle(workers)
    _handle_next_event(runtime)  # stage 1 complete -> plan stage 2
    assert runtime.store.get_job(job_id).stage == 2
    snapshot = (db.execute("SELECT * FROM jobs").fetchall(), db.execute("SELECT * FROM stages").fetchall(),
                rows("tasks"))

    orch = runtime.orchestrator
    orch.handle_event(Event(0, EventKind.STAGE_COMPLETE, job_id, 1))  # stale: stage 1 was already advanced
    orch.handle_event(Event(0, EventKind.JOB_SUBMITTED, job_id, 0))  # stale submission
    orch.handle_event(Event(0, EventKind.STAGE_COMPLETE, job_id, 2))  # premature: stage 2 has 2 tasks queued
    orch.handle_event(Event(0, EventKind.STAGE_COMPLETE, job_id, 3))  # from the future
    after = (db.execute("SELECT * FROM jobs").fetchall(), db.execute("SELECT * FROM stages").fetchall(),
             rows("tasks"))
    assert after == snapshot
    assert runtime.store.get_job(job_id).advances == 2


def test_events_of_a_cancelled_job_change_nothing(runtime: Runtime, rows: Callable[..., int]) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 2}).job.job_id
    assert runtime.store.cancel_job(job_id)
    loop = WorkerLoop(runtime, runtime.settings.queues)
    assert loop.run_once()  # the job_submitted event is consumed ...
    assert not loop.run_once()
    job = runtime.store.get_job(job_id)
    assert (job.status, job.stage, job.advances) == (JobStatus.CANCELLED, 0, 0)  # ... and plans nothing
    assert rows("tasks") == 0 and rows("events") == 0


# issue 19 bug 3: a job that failed on its input says so, and `geomill run` can tell it from a platform failure


def test_a_job_failed_by_refused_inputs_has_cause_invalid_input(runtime: Runtime, finish: Callable) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 3, "invalid_keys": [0, 2]}).job.job_id
    job = finish(runtime, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error["cause"] == "invalid_input"
    failed = [t for t in runtime.store.list_tasks(job_id) if t.status is TaskStatus.FAILED]
    assert {t.error["cause"] for t in failed} == {"invalid_input"}
    assert all(t.error["retryable"] is False and t.attempt == 1 for t in failed)


def test_a_job_failed_by_exhausted_transient_errors_has_cause_platform(
    make_runtime: Callable[..., Runtime], finish: Callable
) -> None:
    rt = make_runtime()
    job_id = rt.orchestrator.submit("fanout", {"n": 2, "fail_attempts": 9}).job.job_id
    job = finish(rt, job_id, timeout=30.0)
    assert job.status is JobStatus.FAILED
    assert job.error["cause"] == "platform"
    assert {t.error["cause"] for t in rt.store.list_tasks(job_id)} == {"transient"}


def test_one_refused_input_among_platform_failures_is_a_platform_failure() -> None:
    from geomill.engine.orchestrator import failure_cause

    assert failure_cause([{"cause": "invalid_input"}, {"cause": "invalid_input"}]) == "invalid_input"
    assert failure_cause([{"cause": "invalid_input"}, {"cause": "transient"}]) == "platform"
    assert failure_cause([{"type": "InvalidInput", "retryable": False}]) == "invalid_input"  # recorded before
    assert failure_cause([]) == "platform"
