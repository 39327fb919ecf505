"""SQLite store: fenced leases, O(1) stage counters, the janitor's repairs, claiming, and the schema."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from geomill.domain import (
    EventKind,
    FailurePolicy,
    Job,
    JobStatus,
    NewJob,
    NewTask,
    NotFound,
    Stage,
    Task,
    TaskStatus,
    make_task_id,
)
from geomill.engine.ports import ExpiredLease
from geomill.runtime import Runtime
from geomill.store import rows as rows_module
from geomill.store import sqlite_queries as q
from geomill.store.sql import migrations
from geomill.store.sqlite import SQLiteStore
from geomill.worker.heartbeat import Heartbeat
from geomill.worker.janitor import reconcile
from geomill.worker.loop import WorkerLoop

QUEUE = ["default-tasks"]
TASK_QUEUES = ["raster-tasks", "vector-tasks", "long-tasks", "default-tasks"]
LEASE = 0.05


def at_once(lease: ExpiredLease) -> float | None:
    """A lost lease retried at once while the task has attempts left (tests that claim the next attempt)."""
    return 0.0 if lease.attempt < lease.max_attempts else None


def _plan_first_stage(rt: Runtime) -> None:
    assert WorkerLoop(rt, ["jobs"]).handle_one_event()


def _expire(db: sqlite3.Connection, task_id: str) -> None:
    """Make a running attempt's lease already expired, as if its worker had hung."""
    db.execute("UPDATE tasks SET lease_expires_at = ? WHERE task_id = ?", (time.time() - 1, task_id))


def _stage(store: SQLiteStore, job_id: str, stage: int = 1) -> Stage:
    return next(s for s in store.get_stages(job_id) if s.stage == stage)


def _events(db: sqlite3.Connection, job_id: str) -> list[tuple[str, int]]:
    return [tuple(r) for r in db.execute("SELECT kind, stage FROM events WHERE job_id = ? ORDER BY event_id",
                                         (job_id,))]


# fencing


def test_an_expired_lease_is_reclaimed_and_the_late_attempt_is_fenced(
    runtime: Runtime, store: SQLiteStore, db: sqlite3.Connection
) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 1}).job.job_id
    _plan_first_stage(runtime)
    first = store.claim_task(QUEUE, "worker-a", LEASE)
    assert first is not None and first.attempt == 1 and first.status is TaskStatus.PROCESSING
    assert store.heartbeat(first.task_id, 1, LEASE)

    time.sleep(LEASE * 2)  # worker-a hangs past its lease
    assert store.reclaim_expired_leases(at_once) == 1
    reclaimed = store.get_task(first.task_id)
    assert (reclaimed.status, reclaimed.attempt) == (TaskStatus.QUEUED, 1)
    assert reclaimed.error["type"] == "LeaseExpired" and reclaimed.lease_expires_at is None
    assert _stage(store, job_id).remaining == 1  # a reclaim is a retry: the stage is not counted down
    assert store.reclaim_expired_leases(at_once) == 0

    second = store.claim_task(QUEUE, "worker-b", 30)
    assert second is not None and second.task_id == first.task_id
    assert (second.attempt, second.executed_by_app) == (2, "worker-b")

    # worker-a comes back late: everything it says about attempt 1 is refused
    assert store.heartbeat(first.task_id, 1, 30) is False
    assert store.report_progress(first.task_id, 1, 0.5, "late") is False
    late = store.complete_task(first.task_id, 1, {"key": "late", "attempt": 1, "pid": 0})
    assert (late.applied, late.stage_done) == (False, False)
    assert store.fail_task(first.task_id, 1, {"type": "X"}, None).applied is False
    assert store.fail_task(first.task_id, 1, {"type": "X"}, 0.0).applied is False
    still = store.get_task(first.task_id)
    assert (still.status, still.attempt, still.result) == (TaskStatus.PROCESSING, 2, None)
    assert _stage(store, job_id).remaining == 1

    assert store.heartbeat(first.task_id, 2, 30)
    done = store.complete_task(first.task_id, 2, {"key": "s1-0000000", "attempt": 2, "pid": 1})
    assert (done.applied, done.stage_done) == (True, True)
    final = store.get_task(first.task_id)
    assert (final.status, final.result["attempt"], final.error) == (TaskStatus.COMPLETED, 2, None)
    assert final.lease_expires_at is None and final.finished_at is not None

    # the counter went down exactly once, and one stage_complete was emitted
    assert (_stage(store, job_id).remaining, _stage(store, job_id).failed) == (0, 0)
    assert _stage(store, job_id).completed_at is not None
    assert _events(db, job_id) == [("stage_complete", 1)]
    assert store.complete_task(first.task_id, 2, {"again": True}).applied is False  # a replay changes nothing
    assert store.heartbeat(first.task_id, 2, 30) is False
    assert _stage(store, job_id).remaining == 0
    assert store.get_task(first.task_id).result["attempt"] == 2


def test_counter_counts_each_task_once_with_several_tasks(runtime: Runtime, store: SQLiteStore) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 3}).job.job_id
    _plan_first_stage(runtime)
    claimed = [store.claim_task(QUEUE, "w", 30) for _ in range(3)]
    assert store.claim_task(QUEUE, "w", 30) is None
    assert len({t.task_id for t in claimed}) == 3
    outcomes = []
    for i, task in enumerate(claimed):
        outcomes.append(store.complete_task(task.task_id, 1, {"key": task.task_key, "attempt": 1, "pid": 0}))
        store.complete_task(task.task_id, 1, {"dup": True})  # duplicate completion of the same attempt
        assert _stage(store, job_id).remaining == 2 - i
    assert [o.stage_done for o in outcomes] == [False, False, True]


def test_lease_expiry_on_the_last_attempt_fails_the_task_and_counts_the_stage_down(
    runtime: Runtime, store: SQLiteStore, db: sqlite3.Connection, finish: Callable
) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 2}).job.job_id
    _plan_first_stage(runtime)
    victim_id = make_task_id(job_id, 1, "s1-0000000")
    for attempt in (1, 2, 3):
        task = store.claim_task(QUEUE, "w", 30)
        while task.task_id != victim_id:  # the other task: complete it normally
            store.complete_task(task.task_id, task.attempt, {"key": task.task_key, "attempt": 1, "pid": 0})
            task = store.claim_task(QUEUE, "w", 30)
        assert task.attempt == attempt
        _expire(db, victim_id)
        assert store.reclaim_expired_leases(at_once) == 1
    failed = store.get_task(victim_id)
    assert (failed.status, failed.attempt) == (TaskStatus.FAILED, 3)
    assert failed.error["type"] == "LeaseExpired" and failed.error["attempt"] == 3
    assert failed.finished_at is not None
    stage = _stage(store, job_id)
    assert (stage.remaining, stage.failed) == (0, 1)
    assert _events(db, job_id) == [("stage_complete", 1)]
    job = finish(runtime, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error["failed_tasks"] == [victim_id]


def test_heartbeat_renews_the_lease_and_notices_when_its_attempt_was_fenced(
    runtime: Runtime, store: SQLiteStore, db: sqlite3.Connection
) -> None:
    runtime.orchestrator.submit("fanout", {"n": 1})
    _plan_first_stage(runtime)
    task = store.claim_task(QUEUE, "a", 0.5)
    with Heartbeat(store, task, 30, 0.01) as hb:
        time.sleep(0.1)
    assert not hb.fenced
    assert store.get_task(task.task_id).lease_expires_at.timestamp() > time.time() + 25  # renewed to 30 s

    _expire(db, task.task_id)
    assert store.reclaim_expired_leases(at_once) == 1
    assert store.claim_task(QUEUE, "b", 30).attempt == 2
    with Heartbeat(store, task, 30, 0.01) as stale:  # the cut-off worker, still on attempt 1
        deadline = time.monotonic() + 5
        while not stale.fenced and time.monotonic() < deadline:
            time.sleep(0.01)
    assert stale.fenced


def test_worker_drops_the_outcome_of_a_fenced_attempt(
    runtime: Runtime, store: SQLiteStore, db: sqlite3.Connection
) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 1}).job.job_id
    _plan_first_stage(runtime)
    stale = store.claim_task(QUEUE, "a", 30)
    _expire(db, stale.task_id)
    store.reclaim_expired_leases(at_once)
    current = store.claim_task(QUEUE, "b", 30)
    WorkerLoop(runtime, QUEUE).execute(stale)  # the cut-off worker finishes its (stale) attempt 1
    task = store.get_task(stale.task_id)
    assert (task.status, task.attempt, task.result) == (TaskStatus.PROCESSING, current.attempt, None)
    assert _stage(store, job_id).remaining == 1


# janitor


def test_resignal_stalled_stage_after_a_lost_event_and_the_job_advances(
    runtime: Runtime, store: SQLiteStore, db: sqlite3.Connection, idle: Callable, finish: Callable
) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 2, "stages": 2}).job.job_id
    _plan_first_stage(runtime)
    assert idle(WorkerLoop(runtime, TASK_QUEUES)) == 2
    assert _events(db, job_id) == [("stage_complete", 1)]
    db.execute("DELETE FROM events WHERE job_id = ?", (job_id,))  # the crash between commit and advance

    assert store.resignal_stalled_stages(grace_seconds=3600) == 0  # too young to be called stalled
    time.sleep(0.01)
    assert store.resignal_stalled_stages(grace_seconds=0) == 1
    assert _events(db, job_id) == [("stage_complete", 1)]
    assert store.resignal_stalled_stages(grace_seconds=0) == 0  # its event is pending again: no duplicate

    job = finish(runtime, job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.advances == job.stage_count + 1
    assert job.result == {"stages": 3, "completed": 4, "failed": 0}


def test_resignal_a_submitted_job_whose_event_was_lost(
    runtime: Runtime, store: SQLiteStore, db: sqlite3.Connection, finish: Callable
) -> None:
    job_id = runtime.orchestrator.submit("hello_world", {"n": 2}).job.job_id
    db.execute("DELETE FROM events")
    assert WorkerLoop(runtime, runtime.settings.queues).run_once() is False  # nothing tells anyone
    time.sleep(0.01)
    assert store.resignal_stalled_stages(grace_seconds=0) == 1
    assert _events(db, job_id) == [("job_submitted", 0)]
    assert finish(runtime, job_id).status is JobStatus.COMPLETED


def test_resignal_ignores_running_stages_and_finished_jobs(
    runtime: Runtime, store: SQLiteStore, db: sqlite3.Connection, finish: Callable
) -> None:
    running = runtime.orchestrator.submit("fanout", {"n": 2}).job.job_id
    _plan_first_stage(runtime)  # stage 1 has 2 queued tasks: not stalled
    done = runtime.orchestrator.submit("fanout", {"n": 0, "tag": "done"}).job.job_id
    db.execute("DELETE FROM events WHERE job_id = ?", (running,))
    finish(runtime, done, loop=WorkerLoop(runtime, ["jobs"]))
    time.sleep(0.01)
    assert store.resignal_stalled_stages(grace_seconds=0) == 0
    assert _events(db, running) == [] and _events(db, done) == []


def test_fail_overdue_jobs_fails_the_job_and_cancels_its_queued_tasks(
    runtime: Runtime, store: SQLiteStore, db: sqlite3.Connection, rows: Callable[..., int]
) -> None:
    job_id = runtime.orchestrator.submit("fanout", {"n": 3}).job.job_id
    on_time = runtime.orchestrator.submit("fanout", {"n": 1, "tag": "on time"}).job.job_id
    no_deadline = runtime.orchestrator.submit("fanout", {"n": 1, "tag": "none"}).job.job_id
    _plan_first_stage(runtime)
    running = store.claim_task(QUEUE, "w", 30)
    assert running.job_id == job_id
    db.execute("UPDATE jobs SET deadline_at = ? WHERE job_id = ?", (time.time() - 1, job_id))
    db.execute("UPDATE jobs SET deadline_at = ? WHERE job_id = ?", (time.time() + 3600, on_time))

    assert store.fail_overdue_jobs() == [job_id]
    job = store.get_job(job_id)
    assert job.status is JobStatus.FAILED and job.finished_at is not None
    assert job.error["type"] == "DeadlineExceeded" and job.error["stage"] == 1
    statuses = sorted(str(t.status) for t in store.list_tasks(job_id))
    assert statuses == ["cancelled", "cancelled", "processing"]
    assert rows("tasks", "status = 'cancelled' AND finished_at IS NOT NULL") == 2
    assert store.claim_task(QUEUE, "w", 30) is None  # cancelled tasks are not claimable
    for other in (on_time, no_deadline):
        assert store.get_job(other).status is JobStatus.QUEUED
    assert store.fail_overdue_jobs() == []  # a failed job is not failed twice

    # the running attempt may still report; the job stays failed
    assert store.complete_task(running.task_id, 1, {"key": running.task_key, "attempt": 1, "pid": 0}).applied
    assert store.get_job(job_id).status is JobStatus.FAILED


def test_overdue_job_still_waiting_for_its_first_stage_fails(
    runtime: Runtime, store: SQLiteStore, db: sqlite3.Connection, finish: Callable
) -> None:
    job_id = runtime.orchestrator.submit("hello_world", {"n": 1}).job.job_id
    db.execute("UPDATE jobs SET deadline_at = ?", (time.time() - 1,))
    report = reconcile(store, runtime.settings, runtime.registry)
    assert report.overdue_jobs == 1
    job = finish(runtime, job_id)  # the job_submitted event is handled and changes nothing
    assert (job.status, job.stage, job.advances) == (JobStatus.FAILED, 0, 1)
    assert store.list_tasks(job_id) == []


def test_create_job_records_the_deadline(store: SQLiteStore) -> None:
    before = time.time()
    job, created = store.create_job(NewJob("j1", "fanout", {}, 1, deadline_seconds=60))
    assert created
    assert before + 59 < job.deadline_at.timestamp() < time.time() + 61
    job2, created2 = store.create_job(NewJob("j1", "fanout", {"other": 1}, 1))
    assert not created2 and job2.params == {} and job2.deadline_at == job.deadline_at


def test_reconcile_reports_every_kind_of_repair(
    runtime: Runtime, store: SQLiteStore, db: sqlite3.Connection
) -> None:
    runtime.orchestrator.submit("fanout", {"n": 1})
    _plan_first_stage(runtime)
    task = store.claim_task(QUEUE, "w", 30)
    _expire(db, task.task_id)
    report = reconcile(store, runtime.settings, runtime.registry)
    assert (report.reclaimed_leases, report.resignalled_stages, report.overdue_jobs) == (1, 0, 0)
    assert reconcile(store, runtime.settings, runtime.registry) == type(report)()


# claiming


def _job_with_tasks(store: SQLiteStore, queues: list[str]) -> str:
    store.create_job(NewJob("job-q", "fanout", {}, 1))
    tasks = [NewTask(f"t-{i}", f"k-{i}", "demo.work", {"key": f"k-{i}"}, queue, 3, 60.0)
             for i, queue in enumerate(queues)]
    assert store.start_stage("job-q", 1, "work-1", FailurePolicy.FAIL_JOB, tasks)
    return "job-q"


def test_claim_task_honours_queues(store: SQLiteStore) -> None:
    _job_with_tasks(store, ["raster-tasks", "vector-tasks", "default-tasks"])
    assert store.claim_task(["long-tasks"], "w", 30) is None
    raster = store.claim_task(["raster-tasks"], "w", 30)
    assert raster.task_id == "t-0" and raster.target_queue == "raster-tasks"
    assert store.claim_task(["raster-tasks"], "w", 30) is None
    got = {store.claim_task(["vector-tasks", "default-tasks"], "w", 30).task_id for _ in range(2)}
    assert got == {"t-1", "t-2"}
    assert store.claim_task(TASK_QUEUES, "w", 30) is None


def test_claim_task_records_the_claim(store: SQLiteStore) -> None:
    _job_with_tasks(store, ["default-tasks"])
    before = time.time()
    task = store.claim_task(QUEUE, "host#42", 30)
    assert (task.status, task.attempt, task.executed_by_app) == (TaskStatus.PROCESSING, 1, "host#42")
    assert before - 1 <= task.execution_started_at.timestamp() <= time.time()
    assert 29 < task.lease_expires_at.timestamp() - task.execution_started_at.timestamp() < 31


def test_claim_task_honours_available_at(store: SQLiteStore, db: sqlite3.Connection) -> None:
    _job_with_tasks(store, ["default-tasks", "default-tasks"])
    db.execute("UPDATE tasks SET available_at = ? WHERE task_id = 't-0'", (time.time() + 3600,))
    db.execute("UPDATE tasks SET available_at = ? WHERE task_id = 't-1'", (time.time() + 0.2,))
    assert store.claim_task(QUEUE, "w", 30) is None
    time.sleep(0.25)
    assert store.claim_task(QUEUE, "w", 30).task_id == "t-1"
    assert store.claim_task(QUEUE, "w", 30) is None
    db.execute("UPDATE tasks SET available_at = ? WHERE task_id = 't-0'", (time.time() - 1,))
    assert store.claim_task(QUEUE, "w", 30).task_id == "t-0"


def test_claim_task_takes_the_longest_waiting_first(store: SQLiteStore, db: sqlite3.Connection) -> None:
    _job_with_tasks(store, ["default-tasks"] * 3)
    now = time.time()
    for task_id, age in (("t-0", 1), ("t-1", 3), ("t-2", 2)):
        db.execute("UPDATE tasks SET available_at = ? WHERE task_id = ?", (now - age, task_id))
    assert [store.claim_task(QUEUE, "w", 30).task_id for _ in range(3)] == ["t-1", "t-2", "t-0"]


def test_a_retry_waits_in_the_queue_until_its_backoff_is_over(store: SQLiteStore) -> None:
    _job_with_tasks(store, ["default-tasks"])
    task = store.claim_task(QUEUE, "w", 30)
    out = store.fail_task(task.task_id, 1, {"type": "TransientError"}, retry_in_seconds=0.2)
    assert (out.applied, out.stage_done) == (True, False)
    assert store.claim_task(QUEUE, "w", 30) is None
    time.sleep(0.25)
    again = store.claim_task(QUEUE, "w", 30)
    assert again.attempt == 2 and again.error == {"type": "TransientError"}


def test_events_are_claimed_in_order_and_hidden_while_claimed(store: SQLiteStore) -> None:
    store.create_job(NewJob("a", "fanout", {}, 1))
    store.create_job(NewJob("b", "fanout", {}, 1))
    first = store.claim_event("c1", 30)
    second = store.claim_event("c2", 30)
    assert (first.job_id, first.kind, first.stage) == ("a", EventKind.JOB_SUBMITTED, 0)
    assert second.job_id == "b"
    assert store.claim_event("c3", 30) is None  # both invisible while claimed
    store.ack_event(first.event_id)
    short = store.claim_event("c3", 0.0)  # nothing visible
    assert short is None


def test_an_unacknowledged_event_is_delivered_again(store: SQLiteStore, db: sqlite3.Connection) -> None:
    store.create_job(NewJob("a", "fanout", {}, 1))
    event = store.claim_event("c1", 0.05)
    time.sleep(0.1)
    again = store.claim_event("c2", 30)
    assert again is not None and again.event_id == event.event_id
    assert db.execute("SELECT deliveries, claimed_by FROM events").fetchone() == (2, "c2")


def test_start_stage_is_a_compare_and_set(store: SQLiteStore, db: sqlite3.Connection) -> None:
    store.create_job(NewJob("j", "fanout", {}, 2))
    task = NewTask("t", "k", "demo.work", {"key": "k"}, "default-tasks", 3, 60.0)
    assert store.start_stage("j", 1, "one", FailurePolicy.FAIL_JOB, [task])
    assert not store.start_stage("j", 1, "one", FailurePolicy.FAIL_JOB, [task])  # no second plan of stage 1
    assert not store.start_stage("j", 3, "three", FailurePolicy.FAIL_JOB, [])  # no skipping a stage
    assert db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 1
    assert store.get_job("j").advances == 1


def test_finish_job_is_a_compare_and_set(store: SQLiteStore) -> None:
    store.create_job(NewJob("j", "fanout", {}, 1))
    assert store.start_stage("j", 1, "one", FailurePolicy.FAIL_JOB, [])
    assert not store.finish_job("j", 0, JobStatus.COMPLETED, {}, None)  # wrong stage
    assert store.finish_job("j", 1, JobStatus.COMPLETED, {"ok": 1}, None)
    assert not store.finish_job("j", 1, JobStatus.FAILED, None, {"late": True})
    job = store.get_job("j")
    assert (job.status, job.result, job.error, job.advances) == (JobStatus.COMPLETED, {"ok": 1}, None, 2)
    assert not store.cancel_job("j")


def test_unknown_ids_raise_not_found(store: SQLiteStore) -> None:
    with pytest.raises(NotFound):
        store.get_job("nope")
    with pytest.raises(NotFound):
        store.get_task("nope")


# schema


def test_migrations_are_idempotent(store: SQLiteStore, db: sqlite3.Connection) -> None:
    assert store.schema_version() >= 1
    tables = db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    store.migrate()
    store.migrate()
    other = SQLiteStore(store.path)  # another process opening the same file
    other.migrate()
    other.close()
    assert db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall() == tables
    versions = [r[0] for r in db.execute("SELECT version FROM schema_migrations")]
    # every shipped migration applied once (numbers may have gaps while parallel branches add theirs)
    assert versions == [v for v, _ in migrations("sqlite")] and versions[-1] == store.schema_version()


def test_migrations_keep_existing_data(store: SQLiteStore) -> None:
    store.create_job(NewJob("kept", "fanout", {"n": 1}, 1))
    store.migrate()
    assert store.get_job("kept").params == {"n": 1}


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _row_keys(function_name: str) -> set[str]:
    import inspect

    source = inspect.getsource(getattr(rows_module, function_name))
    return set(re.findall(r'r\["(\w+)"\]', source))


@pytest.mark.parametrize(("table", "reader", "model", "not_stored"), [
    ("jobs", "job_from_row", Job, set()),
    ("stages", "stage_from_row", Stage, {"counts"}),
    ("tasks", "task_from_row", Task, set()),
])
def test_schema_has_every_column_the_row_readers_use(
    db: sqlite3.Connection, table: str, reader: str, model: type, not_stored: set[str]
) -> None:
    columns = _columns(db, table)
    used = _row_keys(reader)
    assert used, f"found no column reads in rows.{reader}"
    assert used <= columns, f"{table} lacks {sorted(used - columns)}"
    fields = {f.name for f in dataclasses.fields(model)} - not_stored
    assert fields <= columns, f"{table} lacks columns for {sorted(fields - columns)}"
    assert fields <= used, f"rows.{reader} does not read {sorted(fields - used)}"


def test_every_named_query_compiles_against_the_schema(db: sqlite3.Connection) -> None:
    queries = {name: sql for name, sql in vars(q).items() if name.isupper() and isinstance(sql, str)}
    shared = q.STATEMENTS  # fragments (`and_...`) are compiled as list_jobs / list_tasks put them together
    queries.update({f"STATEMENTS.{name}": sql for name, sql in dataclasses.asdict(shared).items()
                    if not sql.startswith(" ")})
    queries["list_jobs"] = (shared.jobs + shared.and_status + shared.and_job_type + shared.and_created_after
                            + shared.and_created_before + shared.and_before_cursor + shared.jobs_page)
    queries["list_tasks"] = shared.tasks + shared.and_stage + shared.and_status + shared.tasks_order + shared.and_limit
    assert len(queries) >= 60
    for name, sql in queries.items():
        text = sql.format(sources="'queued'", queues="'default-tasks'", limit=1, level="NORMAL") if "{" in sql else sql
        names = set(re.findall(r":(\w+)", text))
        try:
            db.execute("EXPLAIN " + text, {n: None for n in names})
        except sqlite3.Error as exc:
            pytest.fail(f"{name} does not compile against the migrated schema: {exc}")


def test_store_reopens_an_existing_file(runtime: Runtime, tmp_path: Path) -> None:
    job_id = runtime.orchestrator.submit("hello_world", {"n": 1}).job.job_id
    again = SQLiteStore(runtime.store.path)
    try:
        assert again.get_job(job_id).status is JobStatus.QUEUED
    finally:
        again.close()


def test_two_processes_migrating_a_fresh_file_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second migrator must notice the first already applied a version (both read 'nothing applied')."""
    import geomill.store.sqlite as sqlite_module

    path = tmp_path / "race.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    original = sqlite_module.migrations
    raced = []

    def migrations_after_a_race(dialect: str) -> list[tuple[int, str]]:
        if not raced:  # `second` has read the applied versions; `first` now migrates the whole file
            raced.append(True)
            first.migrate()
        return original(dialect)

    monkeypatch.setattr(sqlite_module, "migrations", migrations_after_a_race)
    try:
        second.migrate()
        assert raced and second.schema_version() == original("sqlite")[-1][0]
    finally:
        first.close()
        second.close()


def test_opening_a_fresh_file_while_another_process_writes_it_waits_for_the_lock(tmp_path: Path) -> None:
    """Switching to WAL needs an exclusive lock, and SQLite refuses it at once (no busy wait) during a write."""
    import threading

    path = tmp_path / "fresh.db"
    writer = sqlite3.connect(str(path), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE t (x INTEGER)")  # a rollback-journal file with a write in progress
    opened: list[object] = []

    def open_store() -> None:
        try:
            store = SQLiteStore(path)
            store.migrate()
            opened.append(store.schema_version())
            store.close()
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            opened.append(exc)

    thread = threading.Thread(target=open_store)
    thread.start()
    time.sleep(0.3)
    writer.execute("COMMIT")
    writer.close()
    thread.join(30)
    assert opened and isinstance(opened[0], int) and opened[0] > 0, opened
    check = sqlite3.connect(str(path))
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    check.close()
