"""The Store contract: every implementation (SQLite, PostgreSQL) must pass the same tests.

Semantics checked here: idempotent submission, compare-and-set stage advancement, fenced claims and completions,
the O(1) stage counter with exactly one stage_complete, the janitor's repairs, cancellation, manual retry,
dead letters, leader leases, reads and NotFound. PostgreSQL alone: concurrent claiming from many stores,
LISTEN/NOTIFY wake-ups, concurrent migrations and surviving killed connections.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

from geomill.config import Settings
from geomill.dispatch import PollingDispatch, open_dispatch
from geomill.dispatch.postgres import ListenNotifyDispatch
from geomill.domain import (
    Event,
    EventKind,
    FailurePolicy,
    Job,
    JobStatus,
    NewJob,
    NewTask,
    NotFound,
    Stage,
    StageSpec,
    StoreError,
    TaskSpec,
    TaskStatus,
    make_task_id,
)
from geomill.engine.orchestrator import CHUNK, FIRST_CHUNK
from geomill.engine.ports import ExpiredLease, Store
from geomill.engine.registry import JobType, Registry, TaskType
from geomill.engine.retry import RetryPolicy
from geomill.jobs import demo as demo_jobs
from geomill.runtime import Runtime
from geomill.storage import LocalStorage
from geomill.store import open_store
from geomill.store.common_queries import pyformat
from geomill.store.postgres import PostgresStore
from geomill.store.sql import migrations
from geomill.tasks import demo as demo_tasks
from geomill.worker.janitor import lease_retry
from geomill.worker.loop import WorkerLoop
from services import terminate_sessions

QUEUE = "default-tasks"
ALL_QUEUES = ["jobs", "raster-tasks", "vector-tasks", "long-tasks", "default-tasks"]
SHORT = 0.2  # a lease / visibility / deadline that a test lets run out


# wiring


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'geomill.db'}"
    return request.getfixturevalue("pg_url")


def contract_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir, "database_url": database_url, "app_name": "contract", "workers": 1,
        "queues": ALL_QUEUES, "lease_seconds": 30.0, "poll_interval_seconds": 0.05, "stall_grace_seconds": 0.0,
        "event_visibility_seconds": 30.0, "plugins": [], "db_pool_size": 2,
    }
    values.update(overrides)
    return Settings(**values)


def demo_registry() -> Registry:
    registry = Registry()
    demo_tasks.register(registry)
    demo_jobs.register(registry)
    return registry


@pytest.fixture
def make_rt(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """A Runtime wired by hand on the parametrized backend: the store comes from `open_store(url)`."""
    opened: list[Runtime] = []

    def factory(**overrides: Any) -> Runtime:
        settings = contract_settings(tmp_path / f"rt{len(opened)}", database_url, **overrides)
        store = open_store(database_url, settings)
        store.migrate()
        storage = LocalStorage(settings.data_dir)
        storage.ensure_zones()
        rt = Runtime(settings, demo_registry(), store, storage, PollingDispatch(max_interval=0.05))
        opened.append(rt)
        return rt

    yield factory
    try:
        if opened:
            assert_counts_follow_from_the_counters(opened[0].store)
    finally:
        for rt in opened:
            rt.close()


def assert_counts_follow_from_the_counters(store: Store) -> None:
    """Checked after every test here, whatever state it left: the tasks by status that a status read derives from
    each stage's counters (reads.stage_counts) are the tasks counted by status."""
    by_status = "SELECT stage, status, COUNT(*) AS n FROM tasks WHERE job_id = :job_id GROUP BY stage, status"
    if store.dialect == "postgres":
        by_status = pyformat(by_status)
    for job_id in sorted({r["job_id"] for r in store._read("SELECT job_id FROM stages")}):  # type: ignore[attr-defined]
        counted: dict[int, dict[str, int]] = {}
        for r in store._read(by_status, {"job_id": job_id}):  # type: ignore[attr-defined]
            counted.setdefault(r["stage"], {})[r["status"]] = r["n"]
        for stage in store.get_stages(job_id):
            assert stage.counts == counted.get(stage.stage, {}), (job_id, stage)


@pytest.fixture
def rt(make_rt: Callable[..., Runtime]) -> Runtime:
    return make_rt()


@pytest.fixture
def store(rt: Runtime) -> Store:
    return rt.store


# helpers


def new_job(store: Store, tag: str, *, stage_count: int = 2, deadline: float | None = None) -> str:
    job_id = f"job-{tag}"
    _, created = store.create_job(NewJob(job_id, "fanout", {"n": 1, "tag": tag}, stage_count, deadline))
    assert created
    return job_id


def new_tasks(job_id: str, stage: int, n: int, *, max_attempts: int = 3, queue: str = QUEUE,
              task_type: str = "demo.work") -> list[NewTask]:
    return [NewTask(make_task_id(job_id, stage, f"k{i}"), f"k{i}", task_type, {"key": f"k{i}"}, queue,
                    max_attempts, 60.0) for i in range(n)]


def start(store: Store, job_id: str, stage: int, n: int, **kwargs: Any) -> list[NewTask]:
    tasks = new_tasks(job_id, stage, n, **kwargs)
    assert store.start_stage(job_id, stage, f"stage-{stage}", FailurePolicy.FAIL_JOB, tasks)
    return tasks


def at_once(lease: ExpiredLease) -> float | None:
    """A lost lease retried at once while the task has attempts left (tests that claim the next attempt)."""
    return 0.0 if lease.attempt < lease.max_attempts else None


def stage_of(store: Store, job_id: str, stage: int = 1) -> Stage:
    return next(s for s in store.get_stages(job_id) if s.stage == stage)


def drain_events(store: Store) -> list[tuple[str, str, int]]:
    """Claim and acknowledge every visible event: (kind, job_id, stage) in order."""
    seen = []
    while (event := store.claim_event("test", 60)) is not None:
        seen.append((str(event.kind), event.job_id, event.stage))
        store.ack_event(event.event_id)
    return seen


def plan_first_stage(rt: Runtime) -> None:
    assert WorkerLoop(rt, ["jobs"]).handle_one_event()


def finish(rt: Runtime, job_id: str, timeout: float = 60.0) -> Job:
    loop = WorkerLoop(rt, ALL_QUEUES)
    deadline = time.monotonic() + timeout
    while not (job := rt.store.get_job(job_id)).status.is_terminal:
        assert time.monotonic() < deadline, f"job still {job.status} at stage {job.stage}"
        if not loop.run_once():
            time.sleep(0.01)
    return job


# schema and jobs


def test_migrations_are_applied_once_and_recorded(rt: Runtime, store: Store) -> None:
    store.migrate()  # a second start changes nothing
    assert store.schema_version() == max(v for v, _ in migrations(store.dialect))


def test_every_shared_statement_compiles_in_this_dialect(store: Store) -> None:
    """The statements written once (`common_queries`), as this dialect runs them (PostgreSQL: after `pyformat`)."""
    statements = dataclasses.asdict(store._sql)  # type: ignore[attr-defined]
    s = store._sql  # type: ignore[attr-defined]  # fragments: as list_jobs / list_tasks put them together
    statements["list_jobs"] = (s.jobs + s.and_status + s.and_job_type + s.and_created_after + s.and_created_before
                               + s.and_before_cursor + s.jobs_page)
    statements["list_tasks"] = s.tasks + s.and_stage + s.and_status + s.and_after_task + s.tasks_order + s.and_limit
    for name, sql in statements.items():
        if sql.startswith(" "):
            continue
        names = set(re.findall(r"%\((\w+)\)s", sql) or re.findall(r"(?<![:\w]):(\w+)", sql))
        try:
            store._read("EXPLAIN " + sql, {n: None for n in names})  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - the test names the statement
            pytest.fail(f"{name} does not compile on {store.dialect}: {exc}")


def test_create_job_is_idempotent_and_emits_one_job_submitted(store: Store) -> None:
    new = NewJob("job-a", "fanout", {"n": 1}, 3, None)
    job, created = store.create_job(new)
    assert created and (job.status, job.stage, job.stage_count, job.advances) == (JobStatus.QUEUED, 0, 3, 0)
    assert job.params == {"n": 1} and job.created_at.tzinfo is not None and job.deadline_at is None
    again, created_again = store.create_job(new)
    assert not created_again and again.job_id == "job-a"
    assert drain_events(store) == [("job_submitted", "job-a", 0)]


def test_start_stage_is_a_compare_and_set(store: Store) -> None:
    job_id = new_job(store, "cas", stage_count=3)
    tasks = new_tasks(job_id, 1, 2)
    assert store.start_stage(job_id, 1, "one", FailurePolicy.FAIL_JOB, tasks)
    assert not store.start_stage(job_id, 1, "one", FailurePolicy.FAIL_JOB, tasks)  # a replayed event
    assert not store.start_stage(job_id, 3, "three", FailurePolicy.FAIL_JOB, [])  # skipping a stage
    job = store.get_job(job_id)
    assert (job.status, job.stage, job.advances) == (JobStatus.PROCESSING, 1, 1) and job.started_at is not None
    stage = stage_of(store, job_id)
    assert (stage.name, stage.total, stage.remaining, stage.failed) == ("one", 2, 2, 0)
    assert stage.failure_policy is FailurePolicy.FAIL_JOB and stage.completed_at is None
    assert stage.counts == {"queued": 2}
    listed = store.stage_tasks(job_id, 1)
    assert [t.task_key for t in listed] == ["k0", "k1"]
    assert all((t.status, t.attempt, t.target_queue) == (TaskStatus.QUEUED, 0, QUEUE) for t in listed)


def test_a_stage_of_zero_tasks_completes_at_once(store: Store) -> None:
    job_id = new_job(store, "empty")
    drain_events(store)
    assert store.start_stage(job_id, 1, "nothing", FailurePolicy.TOLERATE, [])
    stage = stage_of(store, job_id)
    assert (stage.total, stage.remaining) == (0, 0) and stage.completed_at is not None
    assert drain_events(store) == [("stage_complete", job_id, 1)]


def test_finish_job_is_guarded_by_stage_and_status_and_cancels_queued_tasks(store: Store) -> None:
    job_id = new_job(store, "finish")
    start(store, job_id, 1, 2)
    assert not store.finish_job(job_id, 2, JobStatus.COMPLETED, {"x": 1}, None)  # not at that stage
    assert store.finish_job(job_id, 1, JobStatus.FAILED, None, {"type": "StageFailed"})
    assert not store.finish_job(job_id, 1, JobStatus.COMPLETED, {"x": 1}, None)  # already terminal
    job = store.get_job(job_id)
    assert (job.status, job.error, job.result, job.advances) == (JobStatus.FAILED, {"type": "StageFailed"}, None, 2)
    assert job.finished_at is not None
    assert {t.status for t in store.list_tasks(job_id)} == {TaskStatus.CANCELLED}


# claiming, fencing and the stage counter


def test_claim_heartbeat_complete_are_fenced_by_attempt(store: Store) -> None:
    job_id = new_job(store, "fence")
    drain_events(store)
    (spec,) = start(store, job_id, 1, 1)
    assert store.claim_task(["raster-tasks"], "w", 30) is None  # other queues see nothing
    first = store.claim_task(["raster-tasks", QUEUE], "worker-a", SHORT)
    assert first is not None and first.task_id == spec.task_id
    assert (first.status, first.attempt, first.executed_by_app) == (TaskStatus.PROCESSING, 1, "worker-a")
    assert first.execution_started_at is not None and first.lease_expires_at is not None
    assert store.claim_task([QUEUE], "w", 30) is None  # claimed once
    assert store.heartbeat(first.task_id, 1, SHORT) and store.report_progress(first.task_id, 1, 0.5, "half")
    assert store.get_task(first.task_id).progress_message == "half"

    time.sleep(SHORT * 2)  # worker-a hangs past its lease
    assert store.reclaim_expired_leases(at_once) == 1
    reclaimed = store.get_task(first.task_id)
    assert (reclaimed.status, reclaimed.attempt, reclaimed.error["type"]) == (TaskStatus.QUEUED, 1, "LeaseExpired")
    assert stage_of(store, job_id).remaining == 1  # a reclaim is a retry: not counted down
    assert store.reclaim_expired_leases(at_once) == 0
    second = store.claim_task([QUEUE], "worker-b", 30)
    assert second is not None and (second.attempt, second.executed_by_app) == (2, "worker-b")

    # worker-a comes back late: everything it says about attempt 1 is refused
    assert not store.heartbeat(first.task_id, 1, 30)
    assert not store.report_progress(first.task_id, 1, 0.9, "late")
    assert store.complete_task(first.task_id, 1, {"late": True}).applied is False
    assert store.fail_task(first.task_id, 1, {"type": "X"}, None).applied is False
    assert store.fail_task(first.task_id, 1, {"type": "X"}, 0.0).applied is False
    assert store.cancel_task(first.task_id, 1) is False
    assert stage_of(store, job_id).remaining == 1

    done = store.complete_task(first.task_id, 2, {"attempt": 2})
    assert (done.applied, done.stage_done) == (True, True)
    final = store.get_task(first.task_id)
    assert (final.status, final.result, final.error) == (TaskStatus.COMPLETED, {"attempt": 2}, None)
    assert final.progress == 1.0
    assert final.lease_expires_at is None and final.finished_at is not None
    again = store.complete_task(first.task_id, 2, {"again": True})  # a replayed completion changes nothing
    assert (again.applied, again.stage_done) == (False, False)
    stage = stage_of(store, job_id)
    assert (stage.remaining, stage.failed) == (0, 0) and stage.completed_at is not None
    assert drain_events(store) == [("stage_complete", job_id, 1)]


def test_claim_tasks_takes_a_batch_oldest_first_and_release_gives_them_back(store: Store) -> None:
    job_id = new_job(store, "batch")
    drain_events(store)
    specs = start(store, job_id, 1, 5)
    batch = store.claim_tasks([QUEUE], "w", 30, 3)
    assert len(batch) == 3 and len({t.task_id for t in batch}) == 3
    assert all((t.status, t.attempt) == (TaskStatus.PROCESSING, 1) for t in batch)
    rest = store.claim_tasks([QUEUE, "raster-tasks"], "w2", 30, 10)
    assert {t.task_id for t in rest} == {s.task_id for s in specs} - {t.task_id for t in batch}
    assert store.claim_tasks([QUEUE], "w3", 30, 10) == []
    released = batch[2]
    assert store.release_task(released.task_id, 1)
    assert not store.release_task(released.task_id, 1)  # only once, and only a claimed attempt
    back = store.get_task(released.task_id)
    assert (back.status, back.attempt, back.executed_by_app) == (TaskStatus.QUEUED, 0, None)
    again = store.claim_tasks([QUEUE], "w4", 30, 10)
    assert [(t.task_id, t.attempt) for t in again] == [(released.task_id, 1)]  # the released attempt did not count
    assert stage_of(store, job_id).remaining == 5


def test_the_counter_counts_each_task_once_and_the_last_emits_one_stage_complete(store: Store) -> None:
    job_id = new_job(store, "count")
    drain_events(store)
    start(store, job_id, 1, 4, max_attempts=1)
    claimed = [store.claim_task([QUEUE], "w", 30) for _ in range(4)]
    assert len({t.task_id for t in claimed}) == 4 and store.claim_task([QUEUE], "w", 30) is None
    outcomes = []
    for i, task in enumerate(claimed):
        if i == 1:
            outcomes.append(store.fail_task(task.task_id, 1, {"type": "InvalidInput"}, None))
        else:
            outcomes.append(store.complete_task(task.task_id, 1, {"i": i}))
        store.complete_task(task.task_id, 1, {"dup": True})  # duplicate of the same attempt
        assert stage_of(store, job_id).remaining == 3 - i
    assert [o.applied for o in outcomes] == [True] * 4
    assert [o.stage_done for o in outcomes] == [False, False, False, True]
    stage = stage_of(store, job_id)
    assert (stage.remaining, stage.failed, stage.counts) == (0, 1, {"completed": 3, "failed": 1})
    assert store.get_task(claimed[1].task_id).error == {"type": "InvalidInput"}
    assert drain_events(store) == [("stage_complete", job_id, 1)]


def test_a_batch_of_completions_counts_each_stage_down_once_per_task_in_one_commit(store: Store) -> None:
    a, b = new_job(store, "batch-a"), new_job(store, "batch-b")
    drain_events(store)
    start(store, a, 1, 3, max_attempts=1)
    start(store, b, 1, 2, max_attempts=1)
    claimed = store.claim_tasks([QUEUE], "w", 30, 10)
    assert len(claimed) == 5
    mine = {t.task_id: t for t in claimed}
    a_tasks = [t for t in claimed if t.job_id == a]
    b_tasks = [t for t in claimed if t.job_id == b]
    # a's first two, a stale attempt of b's first, and b's second: b's stage stays open (its first is still running)
    batch = [(a_tasks[0].task_id, 1, {"i": 0}), (a_tasks[1].task_id, 1, {"i": 1}),
             (b_tasks[0].task_id, 2, {"stale": True}), (b_tasks[1].task_id, 1, {"i": 2})]
    outcomes = store.complete_tasks(batch)
    assert [o.applied for o in outcomes] == [True, True, False, True]
    assert not any(o.stage_done for o in outcomes)
    assert (stage_of(store, a).remaining, stage_of(store, b).remaining) == (1, 1)
    assert store.get_task(a_tasks[1].task_id).result == {"i": 1}
    assert store.get_task(b_tasks[0].task_id).status == TaskStatus.PROCESSING
    assert drain_events(store) == []
    # the rest of both stages in one batch (with a duplicate of an applied one): two stage_complete events
    last = [(b_tasks[0].task_id, 1, {}), (a_tasks[0].task_id, 1, {"dup": True}), (a_tasks[2].task_id, 1, {})]
    outcomes = store.complete_tasks(last)
    assert [o.applied for o in outcomes] == [True, False, True]
    assert [o.stage_done for o in outcomes] == [True, False, True]
    assert store.get_task(a_tasks[0].task_id).result == {"i": 0}  # the duplicate changed nothing
    assert sorted(drain_events(store)) == sorted([("stage_complete", a, 1), ("stage_complete", b, 1)])
    assert (stage_of(store, a).counts, stage_of(store, b).counts) == ({"completed": 3}, {"completed": 2})
    assert store.complete_tasks([]) == []
    assert set(mine) == {t for t, _, _ in batch[:2] + last[:1] + last[2:] + batch[3:]}


def test_a_worker_records_short_prefetched_tasks_in_batched_commits(rt: Runtime, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    real = rt.store.complete_tasks

    def counting(done):  # type: ignore[no-untyped-def]
        batches.append(len(done))
        return real(done)

    monkeypatch.setattr(rt.store, "complete_tasks", counting)
    marks = tmp_path / "marks"
    marks.mkdir()
    sub = rt.orchestrator.submit("fanout", {"n": 40, "stages": 2, "tag": "batched", "marker_dir": str(marks)})
    job = finish(rt, sub.job.job_id)
    assert (job.status, job.advances, job.result["completed"]) == (JobStatus.COMPLETED, 4, 80)  # 3 stages (the third empty) + end
    assert sum(batches) > 40 and max(batches) > 1  # most successes went in batches, not one commit each
    runs = [len(f.read_text().splitlines()) for f in marks.iterdir()]
    assert (len(runs), set(runs)) == (80, {1})  # each task ran once
    for k in (1, 2):
        assert stage_of(rt.store, job.job_id, k).counts == {"completed": 40}


def test_claim_tasks_by_ids_claims_the_queued_ones_in_the_order_given(store: Store) -> None:
    job_id = new_job(store, "by-ids")
    drain_events(store)
    ids = [t.task_id for t in start(store, job_id, 1, 4)]
    assert store.claim_task_by_id(ids[1], "other", 30) is not None  # already running elsewhere
    claimed = store.claim_tasks_by_ids([ids[3], ids[1], "no-such-task", ids[0], ids[3]], "w", 30)
    assert [(t.task_id, t.attempt, t.executed_by_app) for t in claimed] == [(ids[3], 1, "w"), (ids[0], 1, "w")]
    assert store.claim_tasks_by_ids([ids[3], ids[0]], "w2", 30) == []  # duplicates claim nothing
    assert store.get_task(ids[2]).status == TaskStatus.QUEUED


def _complete_all(store: Store, n: int) -> list[bool]:
    done = []
    for _ in range(n):
        task = store.claim_task([QUEUE], "w", 30)
        assert task is not None
        done.append(store.complete_task(task.task_id, task.attempt, {}).stage_done)
    assert store.claim_task([QUEUE], "w", 30) is None
    return done


@pytest.mark.parametrize("seal_last", [True, False], ids=["completions-then-seal", "seal-then-completion"])
def test_a_chunked_stage_completes_once_whichever_of_seal_and_last_task_comes_last(
    store: Store, seal_last: bool
) -> None:
    job_id = new_job(store, f"chunks-{seal_last}")
    drain_events(store)
    tasks = new_tasks(job_id, 1, 5)
    assert store.start_stage(job_id, 1, "one", FailurePolicy.FAIL_JOB, tasks[:2], sealed=False)
    assert not stage_of(store, job_id).sealed
    assert _complete_all(store, 2) == [False, False]  # every inserted task done, but the plan is not: no event
    assert drain_events(store) == []
    assert store.add_stage_tasks(job_id, 1, tasks[2:4], expected_total=2, seal=False)
    assert not store.add_stage_tasks(job_id, 1, tasks[2:4], expected_total=2, seal=False)  # a second planner
    assert (stage_of(store, job_id).total, stage_of(store, job_id).remaining) == (4, 3)  # 2 open + the token
    if seal_last:
        assert _complete_all(store, 2) == [False, False]
        assert store.add_stage_tasks(job_id, 1, tasks[4:], expected_total=4, seal=False)
        assert _complete_all(store, 1) == [False]
        assert store.add_stage_tasks(job_id, 1, [], expected_total=5, seal=True)  # the seal finds zero: event
    else:
        assert store.add_stage_tasks(job_id, 1, tasks[4:], expected_total=4, seal=True)
        assert _complete_all(store, 3) == [False, False, True]  # the last completion emits
    assert not store.add_stage_tasks(job_id, 1, [], expected_total=5, seal=True)  # sealed stays sealed
    stage = stage_of(store, job_id)
    assert (stage.total, stage.remaining, stage.sealed, stage.counts) == (5, 0, True, {"completed": 5})
    assert stage.completed_at is not None
    assert drain_events(store) == [("stage_complete", job_id, 1)]


def test_a_large_plan_is_inserted_in_chunks_and_runs_exactly_once(rt: Runtime) -> None:
    n = 2 * CHUNK + 7  # the first chunk, two full ones and a short one
    sub = rt.orchestrator.submit("fanout", {"n": n, "stages": 2, "tag": "chunked"})
    job = finish(rt, sub.job.job_id, timeout=300)
    assert (job.status, job.advances, job.result["completed"]) == (JobStatus.COMPLETED, 4, 2 * n)  # 3 stages + end
    for k in (1, 2):
        stage = stage_of(rt.store, job.job_id, k)
        assert (stage.total, stage.remaining, stage.sealed) == (n, 0, True)


def test_a_planner_that_dies_between_chunks_is_resumed_by_the_returning_event(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = FIRST_CHUNK + CHUNK + 3
    job_id = rt.orchestrator.submit("fanout", {"n": n, "stages": 1, "tag": "resume"}).job.job_id
    event = rt.store.claim_event("planner", 60)
    assert event is not None and event.kind is EventKind.JOB_SUBMITTED
    real = rt.store.add_stage_tasks
    calls: list[int] = []

    def dies_on_second_chunk(*args: Any, **kwargs: Any) -> bool:
        calls.append(kwargs["expected_total"])
        if len(calls) == 2:
            raise StoreError("planner lost its connection")
        return real(*args, **kwargs)

    monkeypatch.setattr(rt.store, "add_stage_tasks", dies_on_second_chunk)
    with pytest.raises(StoreError):
        rt.orchestrator.handle_event(event)  # not acknowledged: the event comes back
    monkeypatch.setattr(rt.store, "add_stage_tasks", real)
    stage = stage_of(rt.store, job_id)
    assert (stage.total, stage.sealed) == (FIRST_CHUNK + CHUNK, False)
    rt.orchestrator.handle_event(event)  # the redelivery: skips what is in, inserts the rest, seals
    rt.orchestrator.handle_event(event)  # and a duplicate changes nothing
    stage = stage_of(rt.store, job_id)
    assert (stage.total, stage.sealed) == (n, True)
    job = finish(rt, job_id, timeout=300)
    assert (job.status, job.advances, job.result["completed"]) == (JobStatus.COMPLETED, 4, n)
    tasks = rt.store.list_tasks(job_id)
    assert len({t.task_id for t in tasks}) == n and all(t.attempt == 1 for t in tasks)


class _NoParams(BaseModel):
    tag: str = ""


def test_a_plan_failing_after_its_first_chunk_fails_the_job_and_cancels_its_queued_tasks(rt: Runtime) -> None:
    def plan(params: _NoParams, previous: Any) -> Iterator[TaskSpec]:
        for i in range(FIRST_CHUNK + CHUNK + 10):  # the third chunk raises: the first is in by then
            yield TaskSpec(f"k{i}", "demo.work", {"key": f"k{i}"})
        raise ValueError("the tile grid does not close")

    rt.registry.register_job_type(JobType(name="breaks_late", description="plan fails in its second chunk",
                                          params_model=_NoParams, stages=(StageSpec("one", plan),),
                                          finalize=lambda params, stages: {}))
    job_id = rt.orchestrator.submit("breaks_late", {}).job.job_id
    plan_first_stage(rt)
    job = rt.store.get_job(job_id)
    assert (job.status, job.stage) == (JobStatus.FAILED, 1)
    assert job.error["type"] == "ValueError" and "does not close" in job.error["message"]
    tasks = rt.store.list_tasks(job_id)
    assert len(tasks) == FIRST_CHUNK and {t.status for t in tasks} == {TaskStatus.CANCELLED}


def test_a_retry_waits_out_its_backoff_and_keeps_the_stage_open(store: Store) -> None:
    job_id = new_job(store, "backoff")
    start(store, job_id, 1, 1)
    task = store.claim_task([QUEUE], "w", 30)
    outcome = store.fail_task(task.task_id, 1, {"type": "TransientError"}, SHORT)
    assert (outcome.applied, outcome.stage_done) == (True, False)
    queued = store.get_task(task.task_id)
    assert (queued.status, queued.error["type"], queued.lease_expires_at) == (TaskStatus.QUEUED, "TransientError", None)
    assert store.claim_task([QUEUE], "w", 30) is None  # not due yet
    time.sleep(SHORT * 1.5)
    again = store.claim_task([QUEUE], "w", 30)
    assert again is not None and again.attempt == 2
    assert stage_of(store, job_id).remaining == 1


def test_an_expired_lease_on_the_last_attempt_fails_the_task_and_counts_down(store: Store) -> None:
    job_id = new_job(store, "last")
    drain_events(store)
    start(store, job_id, 1, 1, max_attempts=1)
    task = store.claim_task([QUEUE], "w", 0.05)
    time.sleep(0.2)
    assert store.reclaim_expired_leases(at_once) == 1
    failed = store.get_task(task.task_id)
    assert (failed.status, failed.error["type"], failed.error["attempt"]) == (TaskStatus.FAILED, "LeaseExpired", 1)
    assert (stage_of(store, job_id).remaining, stage_of(store, job_id).failed) == (0, 1)
    assert drain_events(store) == [("stage_complete", job_id, 1)]


class _Nothing(BaseModel):
    pass


def lease_registry() -> Registry:
    """Task types whose RetryPolicy differs from the task rows' max_attempts (3): the policy must decide."""
    registry = Registry()
    for name, policy in (("lease.once", RetryPolicy(max_attempts=1)),
                         ("lease.backoff", RetryPolicy(max_attempts=3, backoff_base_seconds=60.0, jitter=0))):
        registry.register_task_type(TaskType(name, lambda p, ctx: _Nothing(), _Nothing, _Nothing, QUEUE,
                                             retry=policy))
    return registry


def test_an_expired_lease_is_failed_when_its_retry_policy_allows_no_retry(store: Store) -> None:
    job_id = new_job(store, "policy-once")
    drain_events(store)
    start(store, job_id, 1, 1, task_type="lease.once")  # the row allows 3 attempts; the policy only 1
    task = store.claim_task([QUEUE], "w", 0.05)
    time.sleep(0.2)
    assert store.reclaim_expired_leases(lease_retry(lease_registry())) == 1
    failed = store.get_task(task.task_id)
    assert (failed.status, failed.attempt, failed.finished_at is not None) == (TaskStatus.FAILED, 1, True)
    assert (failed.error["type"], failed.error["retryable"]) == ("LeaseExpired", False)
    assert "lost its lease" in failed.error["message"] and "no attempts left" in failed.error["message"]
    assert (stage_of(store, job_id).remaining, stage_of(store, job_id).failed) == (0, 1)  # counted down
    assert drain_events(store) == [("stage_complete", job_id, 1)]
    assert store.claim_task([QUEUE], "w", 30) is None


def test_an_expired_lease_is_retried_after_its_retry_policys_backoff(store: Store) -> None:
    job_id = new_job(store, "policy-backoff")
    drain_events(store)
    start(store, job_id, 1, 1, task_type="lease.backoff")
    task = store.claim_task([QUEUE], "w", 0.05)
    time.sleep(0.2)
    before = time.time()
    assert store.reclaim_expired_leases(lease_retry(lease_registry())) == 1
    queued = store.get_task(task.task_id)
    assert (queued.status, queued.error["type"], queued.error["retryable"]) == (TaskStatus.QUEUED, "LeaseExpired", True)
    assert before + 55 < queued.available_at.timestamp() < time.time() + 65  # the policy's 60 s backoff
    assert store.claim_task([QUEUE], "w", 30) is None  # not due yet
    assert stage_of(store, job_id).remaining == 1  # a retry is not counted down
    assert store.reclaim_expired_leases(lease_retry(lease_registry())) == 0


# events


def test_an_event_claimed_but_not_acknowledged_comes_back(store: Store) -> None:
    job_id = new_job(store, "visibility")
    first = store.claim_event("a", SHORT)
    assert first == Event(first.event_id, EventKind.JOB_SUBMITTED, job_id, 0)
    assert store.claim_event("b", SHORT) is None  # invisible while claimed
    time.sleep(SHORT * 1.5)
    again = store.claim_event("b", 30)
    assert again is not None and again.event_id == first.event_id
    store.ack_event(again.event_id)
    store.ack_event(again.event_id)  # acknowledging twice is harmless
    assert store.claim_event("c", 30) is None


def test_the_events_of_a_dead_claimant_are_released_at_once(store: Store) -> None:
    job_id = new_job(store, "orphaned")
    claimed = store.claim_event("app#1234", 60)
    assert claimed is not None and store.claim_event("b", 60) is None
    assert store.event_claimants() == ["app#1234"]
    assert store.release_claimed_events("someone-else") == 0
    assert store.release_claimed_events("app#1234") == 1
    assert store.event_claimants() == []
    again = store.claim_event("b", 60)
    assert again is not None and (again.event_id, again.job_id) == (claimed.event_id, job_id)



def test_the_events_of_a_planner_on_a_host_that_stopped_reporting_are_released_at_once(rt: Runtime) -> None:
    """Another host's pid cannot be checked: its supervisor's rows in the workers table say whether it lives."""
    store = rt.store
    new_job(store, "other-host")
    assert store.claim_event("app@gone#7", 60) is not None
    store.record_worker("app@alive#1", {"app_name": "app@alive"})
    store.record_worker("app@gone#1", {"app_name": "app@gone"})
    assert WorkerLoop(rt, ["jobs"]).release_orphaned_events() == 0  # app@gone still reports
    stale = "UPDATE workers SET last_seen_at = :t WHERE worker_id = 'app@gone#1'"
    store._write(pyformat(stale) if store.dialect == "postgres" else stale,  # type: ignore[attr-defined]
                 {"t": store._since(rt.settings.janitor_interval_seconds * 3 + 1)})  # type: ignore[attr-defined]
    assert WorkerLoop(rt, ["jobs"]).release_orphaned_events() == 1
    assert store.event_claimants() == [] and store.claim_event("b", 60) is not None


# janitor


def test_resignal_stalled_stages_and_submissions_once(store: Store) -> None:
    submitted = new_job(store, "stalled-submit")
    lost = store.claim_event("lost", 30)  # claimed, and then its orchestrator died...
    assert lost is not None and store.resignal_stalled_stages(0.0) == 0  # ...but it is still pending
    store.ack_event(lost.event_id)  # now it is gone without the job moving
    job_id = new_job(store, "stalled-stage")
    drain_events(store)
    start(store, job_id, 1, 1)
    task = store.claim_task([QUEUE], "w", 30)
    assert store.complete_task(task.task_id, 1, {}).stage_done
    drain_events(store)  # its stage_complete was handled by a process that crashed before advancing
    time.sleep(0.01)
    assert store.resignal_stalled_stages(0.0) == 2
    assert store.resignal_stalled_stages(0.0) == 0  # the new events are pending now
    assert sorted(drain_events(store)) == sorted([("job_submitted", submitted, 0), ("stage_complete", job_id, 1)])
    assert store.resignal_stalled_stages(3600.0) == 0  # within the grace period nothing is stalled


def test_fail_overdue_jobs(store: Store) -> None:
    job_id = new_job(store, "overdue", deadline=SHORT)
    relaxed = new_job(store, "relaxed", deadline=3600.0)
    start(store, job_id, 1, 2)
    assert store.get_job(job_id).deadline_at is not None
    assert store.fail_overdue_jobs() == []
    time.sleep(SHORT * 1.5)
    assert store.fail_overdue_jobs() == [job_id]
    job = store.get_job(job_id)
    assert (job.status, job.error["type"]) == (JobStatus.FAILED, "DeadlineExceeded")
    assert {t.status for t in store.list_tasks(job_id)} == {TaskStatus.CANCELLED}
    assert store.fail_overdue_jobs() == [] and store.get_job(relaxed).status is JobStatus.QUEUED


def test_leadership_is_exclusive_until_it_expires(store: Store) -> None:
    assert store.acquire_leadership("janitor", "a", SHORT)
    assert not store.acquire_leadership("janitor", "b", SHORT)
    assert store.acquire_leadership("janitor", "a", SHORT)  # renewal
    assert store.acquire_leadership("other", "b", SHORT)  # another name is another lease
    time.sleep(SHORT * 1.5)
    assert store.acquire_leadership("janitor", "b", 30)
    assert not store.acquire_leadership("janitor", "a", 30)


# cancellation, manual retry, dead letters


def test_list_tasks_pages_by_stage_and_key_with_a_keyset_cursor(store: Store) -> None:
    job_id = new_job(store, "pages")
    start(store, job_id, 1, 12)
    start(store, job_id, 2, 3)
    everything = [(t.stage, t.task_key) for t in store.list_tasks(job_id)]
    assert everything == sorted(everything) and len(everything) == 15
    walked: list[tuple[int, str]] = []
    after: tuple[int, str] | None = None
    while page := store.list_tasks(job_id, limit=4, after=after):
        assert len(page) <= 4
        walked += [(t.stage, t.task_key) for t in page]
        after = walked[-1]
    assert walked == everything
    assert [t.task_key for t in store.list_tasks(job_id, stage=1, limit=2, after=(1, "k10"))] == ["k11", "k2"]
    assert [t.stage for t in store.list_tasks(job_id, limit=5, after=(1, "k9"))] == [2, 2, 2]
    assert store.list_tasks(job_id, status=TaskStatus.QUEUED, after=(2, "k2")) == []


def test_cancel_job_cancels_queued_tasks_and_running_ones_stop_as_cancelled(store: Store) -> None:
    job_id = new_job(store, "cancel")
    start(store, job_id, 1, 3)
    running = store.claim_task([QUEUE], "w", 30)
    assert not store.is_job_cancelled(job_id)
    assert store.cancel_job(job_id) and not store.cancel_job(job_id)
    assert store.is_job_cancelled(job_id)
    job = store.get_job(job_id)
    assert (job.status, job.finished_at is not None) == (JobStatus.CANCELLED, True)
    counts = Counter(t.status for t in store.list_tasks(job_id))
    assert counts == {TaskStatus.CANCELLED: 2, TaskStatus.PROCESSING: 1}
    assert store.claim_task([QUEUE], "w", 30) is None
    assert store.heartbeat(running.task_id, 1, 30)  # the worker learns of it at its heartbeat...
    assert store.cancel_task(running.task_id, 1) and not store.cancel_task(running.task_id, 1)
    assert store.get_task(running.task_id).status is TaskStatus.CANCELLED
    assert not store.finish_job(job_id, 1, JobStatus.COMPLETED, {}, None)
    assert store.list_tasks(job_id, status=TaskStatus.PROCESSING) == []


def test_retry_task_reopens_the_stage_and_the_job_that_stage_failed(rt: Runtime, store: Store) -> None:
    job_id = rt.orchestrator.submit("fanout", {"n": 2, "tag": "retry"}).job.job_id
    plan_first_stage(rt)
    first, second = (store.claim_task([QUEUE], "w", 30) for _ in range(2))
    store.complete_task(first.task_id, 1, {"key": first.task_key, "attempt": 1, "pid": 0})
    assert not store.retry_task(second.task_id)  # not failed
    assert store.fail_task(second.task_id, 1, {"type": "InvalidInput", "message": "bad"}, None).stage_done
    assert WorkerLoop(rt, ["jobs"]).handle_one_event()  # the orchestrator fails the job (fail_job policy)
    failed = store.get_job(job_id)
    assert failed.status is JobStatus.FAILED and failed.error["failed_tasks"] == [second.task_id]

    assert store.retry_task(second.task_id)
    assert not store.retry_task(second.task_id)  # queued now, not failed
    reopened = store.get_job(job_id)
    assert (reopened.status, reopened.error, reopened.finished_at) == (JobStatus.PROCESSING, None, None)
    stage = stage_of(store, job_id)
    assert (stage.remaining, stage.failed, stage.completed_at) == (1, 0, None)
    task = store.get_task(second.task_id)
    assert (task.status, task.max_attempts, task.finished_at) == (TaskStatus.QUEUED, second.max_attempts + 1, None)
    done = finish(rt, job_id)
    assert (done.status, done.result["completed"]) == (JobStatus.COMPLETED, 2)
    assert done.advances == done.stage_count + 2  # the failed finish counted too, before the job was re-opened


def test_retry_task_refuses_once_the_job_moved_past_the_stage(rt: Runtime, store: Store) -> None:
    job_id = rt.orchestrator.submit("fanout", {"n": 2, "stages": 2, "tolerate": True, "tag": "moved"}).job.job_id
    plan_first_stage(rt)
    a, b = (store.claim_task([QUEUE], "w", 30) for _ in range(2))
    store.complete_task(a.task_id, 1, {"key": a.task_key, "attempt": 1, "pid": 0})
    store.fail_task(b.task_id, 1, {"type": "InvalidInput", "message": "bad"}, None)
    assert WorkerLoop(rt, ["jobs"]).handle_one_event()  # tolerated: stage 2 is planned
    assert store.get_job(job_id).stage == 2
    assert not store.retry_task(b.task_id)
    assert store.get_task(b.task_id).status is TaskStatus.FAILED


def test_dead_letters_are_recorded_and_listed_newest_first(store: Store) -> None:
    store.add_dead_letter("tasks", "unknown task type 'nope'", {"task_type": "nope"}, job_id="j", task_id="t")
    store.add_dead_letter("jobs", "event names an unknown job", {"kind": "stage_complete", "stage": 1})
    letters = store.list_dead_letters()
    assert [d["source"] for d in letters] == ["jobs", "tasks"]
    newest, oldest = letters
    assert oldest["payload"] == {"task_type": "nope"} and (oldest["job_id"], oldest["task_id"]) == ("j", "t")
    assert newest["job_id"] is None and newest["created_at"].tzinfo is not None
    assert set(newest) >= {"id", "source", "reason", "payload", "job_id", "task_id", "created_at"}
    assert len(store.list_dead_letters(limit=1)) == 1


# reads


def test_reads_and_not_found(store: Store) -> None:
    ids = [new_job(store, f"read-{i}") for i in range(4)]
    start(store, ids[0], 1, 3)
    assert store.get_job(ids[0]).status is JobStatus.PROCESSING
    assert {j.job_id for j in store.list_jobs()} == set(ids)
    assert [j.job_id for j in store.list_jobs(status=JobStatus.PROCESSING)] == [ids[0]]
    assert len(store.list_jobs(status=JobStatus.QUEUED)) == 3 and len(store.list_jobs(limit=2)) == 2
    assert store.list_jobs(job_type="hello_world") == []
    assert [j.job_id for j in store.find_jobs("job-read-2")] == [ids[2]]
    assert len(store.find_jobs("job-read-")) == 3  # at most 3: enough to tell ambiguous
    assert store.find_jobs("nope") == []
    tasks = store.list_tasks(ids[0])
    assert len(tasks) == 3 and store.list_tasks(ids[0], stage=2) == []
    assert store.list_tasks(ids[0], status=TaskStatus.COMPLETED) == []
    assert store.get_task(tasks[0].task_id) == tasks[0]
    assert store.get_stages(ids[1]) == []
    with pytest.raises(NotFound):
        store.get_job("missing")
    with pytest.raises(NotFound):
        store.get_task("missing")
    assert not store.is_job_cancelled("missing")


# end to end through the worker loop


def test_hello_world_and_fanout_run_end_to_end(rt: Runtime) -> None:
    hello = rt.orchestrator.submit("hello_world", {"n": 5})
    assert hello.created and not rt.orchestrator.submit("hello_world", {"n": 5}).created
    job = finish(rt, hello.job.job_id)
    assert (job.status, job.stage, job.advances) == (JobStatus.COMPLETED, 2, 3)
    assert job.result["greetings"] == 5 and job.result["replies"] == 5

    fan = finish(rt, rt.orchestrator.submit("fanout", {"n": 40, "stages": 3}).job.job_id)
    assert (fan.status, fan.result, fan.advances) == (JobStatus.COMPLETED, {"stages": 3, "completed": 120,
                                                                            "failed": 0}, 4)
    tasks = rt.store.list_tasks(fan.job_id)
    assert len(tasks) == 120 and {t.status for t in tasks} == {TaskStatus.COMPLETED}
    assert all(t.executed_by_app.startswith("contract#") and t.target_queue == QUEUE for t in tasks)

    bad = finish(rt, rt.orchestrator.submit("fanout", {"n": 3, "invalid_keys": [1]}).job.job_id)
    assert bad.status is JobStatus.FAILED and bad.error["type"] == "StageFailed"
    tolerated = finish(rt, rt.orchestrator.submit("fanout", {"n": 3, "invalid_keys": [1], "tolerate": True}).job.job_id)
    assert tolerated.status is JobStatus.COMPLETED_WITH_ERRORS and tolerated.result["failed"] == 1


# PostgreSQL only: concurrency, wake-ups, reconnection


def test_postgres_concurrent_claims_take_each_task_exactly_once(pg_url: str, tmp_path: Path) -> None:
    settings = contract_settings(tmp_path, pg_url)
    main = PostgresStore(pg_url, pool_size=2)
    main.migrate()
    rt = Runtime(settings, demo_registry(), main, LocalStorage(tmp_path), PollingDispatch())
    job_id = rt.orchestrator.submit("fanout", {"n": 2000, "stages": 1}).job.job_id
    plan_first_stage(rt)
    claims: list[list[str]] = [[] for _ in range(4)]
    stage_done: list[int] = [0] * 4
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        store = PostgresStore(pg_url, pool_size=1)
        try:
            while (task := store.claim_task([QUEUE], f"w{i}", 30)) is not None:
                claims[i].append(task.task_id)
                outcome = store.complete_task(task.task_id, task.attempt, {"key": task.task_key, "attempt": 1,
                                                                           "pid": i})
                assert outcome.applied
                stage_done[i] += outcome.stage_done
        except BaseException as exc:  # reported below: a thread's assert does not fail the test by itself
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    every = [task_id for c in claims for task_id in c]
    assert len(every) == 2000 and len(set(every)) == 2000  # every task claimed exactly once
    assert sum(1 for c in claims if c) >= 2  # the work really was shared
    assert sum(stage_done) == 1  # the counter reached zero once
    assert (stage_of(main, job_id).remaining, stage_of(main, job_id).failed) == (0, 0)
    job = finish(rt, job_id)
    assert job.status is JobStatus.COMPLETED and job.advances == job.stage_count + 1
    assert {t.attempt for t in main.list_tasks(job_id)} == {1}
    main.close()


def test_postgres_listen_notify_wakes_a_waiting_worker_before_its_poll_interval(
    pg_url: str, tmp_path: Path
) -> None:
    settings = contract_settings(tmp_path, pg_url, poll_interval_seconds=5.0)
    dispatch = open_dispatch(settings)
    assert isinstance(dispatch, ListenNotifyDispatch)
    submitter = PostgresStore(pg_url, pool_size=1)
    submitter.migrate()
    try:
        dispatch.wait(ALL_QUEUES, timeout=0.05)  # LISTENs from now on
        woke: list[float] = []

        def waiter() -> None:
            started = time.monotonic()
            dispatch.wait(ALL_QUEUES, timeout=5.0)
            woke.append(time.monotonic() - started)

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.2)
        submitter.create_job(NewJob("job-notify", "fanout", {"n": 1}, 3, None))  # jobs queue event
        thread.join(10)
        assert woke and woke[0] < 1.0, f"waited {woke} s for a notification (poll interval 5 s)"

        # a notification that arrives while the worker is busy is kept for its next wait
        submitter.start_stage("job-notify", 1, "one", FailurePolicy.FAIL_JOB, new_tasks("job-notify", 1, 1))
        time.sleep(0.2)
        started = time.monotonic()
        dispatch.wait([QUEUE], timeout=5.0)
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        dispatch.wait([QUEUE], timeout=0.3)  # nothing new: falls back to its timeout
        assert time.monotonic() - started >= 0.25
    finally:
        dispatch.close()  # type: ignore[attr-defined]
        submitter.close()


def test_postgres_store_and_dispatch_survive_killed_connections(pg_url: str, tmp_path: Path) -> None:
    store = PostgresStore(pg_url, pool_size=2, retry_seconds=30)
    store.migrate()
    dispatch = ListenNotifyDispatch(pg_url, poll_interval=0.2)
    try:
        dispatch.wait([QUEUE], timeout=0.01)
        job_id = new_job(store, "killed")
        assert terminate_sessions(pg_url) >= 2  # what a server restart does to every client
        tasks = start(store, job_id, 1, 1)  # the pool hands out a dead connection, the retry a new one
        task = store.claim_task([QUEUE], "w", 30)
        assert task is not None and task.task_id == tasks[0].task_id
        assert store.complete_task(task.task_id, 1, {}).stage_done
        started = time.monotonic()
        dispatch.wait([QUEUE], timeout=0.2)  # notices the loss, polls meanwhile
        dispatch.wait([QUEUE], timeout=0.2)
        assert time.monotonic() - started < 2.0
        time.sleep(0.2)  # past the first reconnect backoff
        dispatch.wait([QUEUE], timeout=0.05)  # reconnected and LISTENing again
        store.start_stage(job_id, 2, "two", FailurePolicy.FAIL_JOB, new_tasks(job_id, 2, 1))
        time.sleep(0.1)
        started = time.monotonic()
        dispatch.wait([QUEUE], timeout=5.0)
        assert time.monotonic() - started < 1.0
    finally:
        dispatch.close()
        store.close()


def test_postgres_concurrent_migrations_apply_each_version_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url, pool_size=1) for _ in range(4)]
    errors: list[BaseException] = []

    def migrate(s: PostgresStore) -> None:
        try:
            s.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [v for v, _ in migrations("postgres")]
    for s in stores:
        s.close()


def test_postgres_urls_select_the_postgres_store_and_listen_notify(pg_url: str, tmp_path: Path) -> None:
    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        settings = contract_settings(tmp_path, url)
        store = open_store(url, settings)
        dispatch = open_dispatch(settings)
        assert isinstance(store, PostgresStore) and isinstance(dispatch, ListenNotifyDispatch)
        store.close()
    sqlite = contract_settings(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(open_dispatch(sqlite), PollingDispatch)


def test_postgres_errors_are_translated_at_the_edge(pg_url: str) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        PostgresStore(pg_url.rsplit("/", 1)[0] + "/geomill_no_such_database")
    store = PostgresStore(pg_url, pool_size=1)
    try:
        with pytest.raises(StoreError):  # no schema yet: an undefined table is a store error, not a retry
            store.get_job("x")
    finally:
        store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_job("x")


# broker dispatch: the outbox and claims by id (what a RabbitMQ message handler does)


def test_the_outbox_hands_out_each_due_message_once_until_it_is_old(store: Store) -> None:
    job_id = new_job(store, "outbox")
    (pending,) = store.take_unpublished_work(100)
    assert pending.body() == {"kind": "event", "event_id": pending.event_id, "job_id": job_id, "stage": 0}
    assert store.take_unpublished_work(100) == []  # stamped: a concurrent publisher does not send it again
    again = store.take_unpublished_work(100, republish_after_seconds=0.0)  # sent long ago, still unclaimed
    assert [m.event_id for m in again] == [pending.event_id]
    assert pending.event_id is not None
    event = store.claim_event_by_id(pending.event_id, "me", 60)
    assert event is not None and event.job_id == job_id
    assert store.claim_event_by_id(pending.event_id, "me", 60) is None  # a duplicate message claims nothing
    store.ack_event(event.event_id)
    (task,) = start(store, job_id, 1, 1)
    (message,) = store.take_unpublished_work(100)
    assert message.task_id == task.task_id and message.queue == QUEUE and message.body()["kind"] == "task"
    store.mark_unpublished([message])  # the publish failed: sent again on the next pass
    assert [m.task_id for m in store.take_unpublished_work(100)] == [task.task_id]


def test_claim_task_by_id_is_guarded_and_a_requeued_task_is_published_again(store: Store) -> None:
    job_id = new_job(store, "by-id")
    drain_events(store)
    (task,) = start(store, job_id, 1, 1)
    store.take_unpublished_work(100)
    claimed = store.claim_task_by_id(task.task_id, "me", 60)
    assert claimed is not None and claimed.attempt == 1 and claimed.executed_by_app == "me"
    assert store.claim_task_by_id(task.task_id, "me", 60) is None  # duplicate or stale message
    assert store.claim_task_by_id("no-such-task", "me", 60) is None
    assert store.take_unpublished_work(100, republish_after_seconds=0.0) == []  # running: nothing to send
    assert store.fail_task(task.task_id, 1, {"type": "X", "message": "m"}, 30.0).applied
    assert store.claim_task_by_id(task.task_id, "me", 60) is None  # waiting out its backoff: not due
    assert store.take_unpublished_work(100) == []  # nor sent before it is due
    assert store.fail_task(task.task_id, 1, {}, None).applied is False  # fenced: it is queued, not running


def test_job_view_and_the_async_store_read_the_same_state(store: Store) -> None:
    """What the HTTP status reads: counts per stage, failed and running tasks only when there are some, NotFound."""
    import asyncio

    from geomill.store.async_access import PostgresAsyncStore, open_async_store

    job_id = new_job(store, "view")
    drain_events(store)
    quiet = store.job_view(job_id)
    assert (quiet.job.job_id, quiet.stages, quiet.failed_tasks, quiet.running_tasks) == (job_id, [], [], [])
    start(store, job_id, 1, 4, max_attempts=1)
    failing = store.claim_task([QUEUE], "w", 30)
    running = store.claim_task([QUEUE], "w", 30)
    completed = store.claim_task([QUEUE], "w", 30)
    assert failing and running and completed
    assert store.fail_task(failing.task_id, 1, {"type": "Boom", "traceback": "tb"}, None).applied
    assert store.complete_task(completed.task_id, 1, {"ok": True}).applied
    view = store.job_view(job_id)
    (stage,) = view.stages
    assert {k: v for k, v in stage.counts.items() if v} == {"queued": 1, "processing": 1, "completed": 1, "failed": 1}
    assert [t.task_id for t in view.failed_tasks] == [failing.task_id]
    assert [t.task_id for t in view.running_tasks] == [running.task_id]

    async def read() -> tuple[Any, Any]:
        reader = await open_async_store(store)
        assert isinstance(reader, PostgresAsyncStore) == (store.dialect == "postgres")
        try:
            seen = await reader.job_view(job_id)
            with pytest.raises(NotFound):
                await reader.job_view("no-such-job")
            new = NewJob("job-async", "fanout", {"n": 1, "tag": "async"}, 2, None, None, "cid-async")
            made, created = await reader.create_job(new)
            same, created_again = await reader.create_job(new)  # the same submission: the existing job
            assert (created, created_again) == (True, False) and made == same == store.get_job("job-async")
            assert made.correlation_id == "cid-async"
            return seen, [await reader.job_view(job_id) for _ in range(3)][-1]  # pooled connections are reused
        finally:
            await reader.close()

    first, again = asyncio.run(read())
    assert first == view and again == view
    assert ("job_submitted", "job-async", 0) in drain_events(store)  # its event committed with it
