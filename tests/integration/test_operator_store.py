"""The operator console's reads and actions on both stores (issue 21): the jobs filters with keyset paging (a
property: the pages concatenate to the filtered set, newest first, no duplicate, no gap), the timeline's counts
against the task rows, and retry-failed / bulk rerun exactly once under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geomill.domain import FailurePolicy, JobStatus, NewJob, NewTask, make_task_id
from geomill.engine.ports import Store
from geomill.engine.registry import Registry
from geomill.service import listing, operations
from geomill.service.timeline import job_timeline
from geomill.store.common_queries import pyformat
from geomill.store.postgres import PostgresStore
from geomill.store.sqlite import SQLiteStore

BASE = datetime(2026, 1, 1, tzinfo=UTC)
APP = "ops-test#1"


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """``open_store()``: a store on this test's database (a second call: a second store on the same database, as
    another process would have)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    opened: list[Store] = []

    def factory() -> Store:
        store: Store = PostgresStore(url) if url else SQLiteStore(tmp_path / "ops.db")
        store.migrate()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def sql(store: Store, statement: str, **params: Any) -> None:
    """A test-only write (``:name`` parameters) in the store's dialect."""
    store._write(pyformat(statement) if store.dialect == "postgres" else statement, params)  # type: ignore[attr-defined]


def when(store: Store, at: datetime) -> Any:
    return store._time_param(at)  # type: ignore[attr-defined]


def add_tasks(store: Store, job_id: str, n: int, stage: int = 1) -> list[str]:
    tasks = [NewTask(make_task_id(job_id, stage, f"k{i:03d}"), f"k{i:03d}", "demo.work", {"i": i}, "default-tasks",
                     2, 60.0) for i in range(n)]
    assert store.start_stage(job_id, stage, f"work-{stage}", FailurePolicy.FAIL_JOB, tasks)
    return [t.task_id for t in tasks]


def fail(store: Store, task_id: str, kind: str, message: str) -> None:
    task = store.claim_task_by_id(task_id, APP, 60.0)
    assert task is not None
    error = {"type": kind, "message": message, "cause": "permanent", "traceback": "Traceback (most recent call last)"}
    assert store.fail_task(task_id, task.attempt, error, None).applied


def complete(store: Store, task_id: str) -> None:
    task = store.claim_task_by_id(task_id, APP, 60.0)
    assert task is not None
    assert store.complete_task(task_id, task.attempt, {"ok": True}).applied


# --- the jobs filters and keyset pages, as a property --------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    job_type: str
    status: str  # queued | processing | failed | completed
    second: int  # created BASE + this many seconds (few values: many ties, broken by job_id)
    micro: int
    job_error: str | None
    task_error: tuple[str, str] | None  # (type, message) of a failed task


MESSAGES = ["disk full", "disk quota exceeded", "timeout reading", "Timeout", "bad input"]
PREFIXES = ["disk", "disk f", "Time", "t", "ValueError: disk", "StageFailed: stage", "OSError", "bad input", "zzz"]

specs = st.builds(
    Spec, job_type=st.sampled_from(["a", "b"]), status=st.sampled_from(["queued", "processing", "failed", "completed"]),
    second=st.integers(0, 4), micro=st.sampled_from([0, 0, 1, 999_999]),
    job_error=st.sampled_from([None, *MESSAGES]),
    task_error=st.one_of(st.none(), st.tuples(st.sampled_from(["ValueError", "OSError"]), st.sampled_from(MESSAGES))))
filters = st.fixed_dictionaries({
    "status": st.sampled_from([None, JobStatus.FAILED, JobStatus.PROCESSING, JobStatus.COMPLETED]),
    "job_type": st.sampled_from([None, "a", "b"]),
    "created_after": st.sampled_from([None, 0, 2]), "created_before": st.sampled_from([None, 3, 5]),
    "error": st.sampled_from([None, *PREFIXES]),
})


def seed(store: Store, jobs: list[Spec]) -> dict[str, tuple[Spec, datetime]]:
    """The jobs as the engine leaves them (tasks failed through `fail_task`, jobs finished through `finish_job`),
    each created at its own time."""
    made = {}
    for i, spec in enumerate(jobs):
        job_id = f"{i:04d}" + "f" * 60
        store.create_job(NewJob(job_id, spec.job_type, {"i": i}, 1))
        if spec.status != "queued":
            (task_id,) = add_tasks(store, job_id, 1)
            if spec.task_error:
                fail(store, task_id, *spec.task_error)
        if spec.status in ("failed", "completed"):
            status = JobStatus(spec.status)
            error = {"type": "StageFailed", "message": spec.job_error} if spec.job_error else None
            assert store.finish_job(job_id, 1, status, None, error)
        at = BASE + timedelta(seconds=spec.second, microseconds=spec.micro)
        sql(store, "UPDATE jobs SET created_at = :at WHERE job_id = :job_id", at=when(store, at), job_id=job_id)
        made[job_id] = (spec, at)
    return made


def matches(spec: Spec, at: datetime, f: dict[str, Any]) -> bool:
    def starts(kind: str, message: str) -> bool:
        return message.startswith(f["error"]) or f"{kind}: {message}".startswith(f["error"])

    if f["status"] is not None and spec.status != f["status"]:
        return False
    if f["job_type"] is not None and spec.job_type != f["job_type"]:
        return False
    if f["created_after"] is not None and at < BASE + timedelta(seconds=f["created_after"]):
        return False
    if f["created_before"] is not None and at >= BASE + timedelta(seconds=f["created_before"]):
        return False
    if f["error"] is not None:
        job_hit = spec.status in ("failed", "completed") and spec.job_error is not None and starts("StageFailed", spec.job_error)
        return job_hit or (spec.task_error is not None and starts(*spec.task_error))
    return True


def clear(store: Store) -> None:
    for table in ("events", "tasks", "stages", "jobs"):
        sql(store, f"DELETE FROM {table}")


def test_jobs_pages_concatenate_to_the_filtered_set_newest_first(open_store: Callable[[], Store]) -> None:
    store = open_store()

    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=15)
    @given(jobs=st.lists(specs, max_size=14), f=filters, limit=st.integers(1, 4))
    def check(jobs: list[Spec], f: dict[str, Any], limit: int) -> None:
        clear(store)
        made = seed(store, jobs)
        expected = sorted((job_id for job_id, (spec, at) in made.items() if matches(spec, at, f)),
                          key=lambda j: (made[j][1], j), reverse=True)
        window = {k: BASE + timedelta(seconds=f[k]) if f[k] is not None else None
                  for k in ("created_after", "created_before")}
        seen: list[str] = []
        cursor = None
        for _ in range(len(made) + 2):
            page = listing.list_jobs(store, status=f["status"], job_type=f["job_type"], error=f["error"],
                                     limit=limit, cursor=cursor, **window)
            assert len(page.items) <= limit
            seen += [d["job_id"] for d in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == expected

    check()


def test_the_job_filters_use_an_index_not_a_sort(open_store: Callable[[], Store]) -> None:
    """Migration 009's indexes serve each filter's newest-first order from the cursor on: no sort step, and the
    cursor is an index condition (a deep page costs what the first one does)."""
    store = open_store()
    s = store._sql  # type: ignore[attr-defined]
    if store.dialect == "postgres":  # enough rows that the planner's choice is the one 100,000 jobs get
        sql(store, "INSERT INTO jobs (job_id, job_type, params, status, stage_count, created_at, updated_at) "
                   "SELECT md5(i::text), 't' || (i % 5), '{}', CASE WHEN i % 3 = 0 THEN 'failed' ELSE 'completed' END,"
                   " 1, now() - i * interval '1 second', now() FROM generate_series(1, 20000) i")
        sql(store, "INSERT INTO tasks (task_id, job_id, stage, task_key, task_type, params, status, max_attempts, "
                   "target_queue, timeout_seconds, available_at, error) SELECT md5(job_id), job_id, 1, 'k', 'demo.work',"
                   " '{}', 'failed', 1, 'default-tasks', 60, now(), '{\"type\": \"OSError\", \"message\": \"disk\"}'"
                   " FROM jobs WHERE status = 'failed'")
        sql(store, "ANALYZE")
        error = s.jobs + s.and_error + s.jobs_page
        rows = store._read("EXPLAIN " + error, {"error": "OSError: disk", "error_len": 13, "limit": 50})  # type: ignore[attr-defined]
        plan = "\n".join(r["QUERY PLAN"] for r in rows)  # per job along the scan, not every failed task hashed first
        assert "Index Scan Backward using jobs_created_id" in plan and "hashed SubPlan" not in plan, plan
    for clauses, args in [((), {}), ((s.and_status,), {"status": "failed"}), ((s.and_job_type,), {"job_type": "t1"}),
                          ((s.and_status, s.and_job_type), {"status": "failed", "job_type": "t1"})]:
        query = s.jobs + "".join(clauses) + s.and_before_cursor + s.jobs_page
        params = {**args, "cursor_at": when(store, datetime.now(UTC) - timedelta(hours=1)), "cursor_id": "f",
                  "limit": 50}
        if store.dialect == "postgres":
            rows = store._read("EXPLAIN " + query, params)  # type: ignore[attr-defined]
            plan = "\n".join(r["QUERY PLAN"] for r in rows)
            assert "Index Scan Backward using jobs_" in plan and "Sort" not in plan, plan
            assert "ROW(created_at, job_id) < ROW(" in plan.split("Index Cond:", 1)[-1].split("\n")[0], plan
        else:
            plan = "\n".join(r["detail"] for r in store._read("EXPLAIN QUERY PLAN " + query, params))  # type: ignore[attr-defined]
            assert "USING INDEX jobs_" in plan and "TEMP B-TREE" not in plan, plan
            assert "(created_at,job_id)<(?,?)" in plan.replace(" ", ""), plan


# --- the timeline ---------------------------------------------------------------------------------------------------

def test_timeline_counts_and_times_equal_the_task_rows(open_store: Callable[[], Store]) -> None:
    store = open_store()
    job_id = "e" * 64
    store.create_job(NewJob(job_id, "fanout", {}, 2))
    ids = add_tasks(store, job_id, 12)
    for task_id in ids[:5]:
        complete(store, task_id)
    for task_id in ids[5:8]:
        fail(store, task_id, "ValueError", "bad")
    for task_id in ids[8:10]:
        assert store.claim_task_by_id(task_id, APP, 60.0) is not None  # running

    doc = job_timeline(store, Registry(), job_id)
    tasks = store.list_tasks(job_id)
    (stage,) = [s for s in doc["stages"] if s["planned"]]
    by_status = {s: sum(1 for t in tasks if t.status == s) for s in stage["counts"]}
    assert stage["counts"] == by_status == {"queued": 2, "processing": 2, "completed": 5, "failed": 3,
                                            "cancelled": 0}
    assert stage["total"] == doc["total_tasks"] == len(tasks) == 12
    started = [t.execution_started_at for t in tasks if t.execution_started_at]
    finished = [t.finished_at for t in tasks if t.finished_at]
    assert datetime.fromisoformat(stage["first_started_at"]) == min(started)  # type: ignore[type-var]
    assert datetime.fromisoformat(stage["last_finished_at"]) == max(finished)  # type: ignore[type-var]
    assert stage["progress"] == pytest.approx(8 / 12, abs=1e-4)
    assert stage["tasks_per_second"] > 0  # 8 finished since the first start; 4 open tasks at that rate
    assert stage["eta_seconds"] == pytest.approx(4 / stage["tasks_per_second"], abs=0.1)
    assert doc["stage_count"] == 2 and doc["progress"] == pytest.approx(8 / 24, abs=1e-4)


# --- retry-failed and rerun, exactly once ---------------------------------------------------------------------------

FAILED_TASKS = 30


def failed_job(store: Store, job_id: str, job_type: str = "fanout", message: str = "disk full") -> tuple[list[str], str]:
    """A failed job with FAILED_TASKS failed tasks and one still running (its lease alive): (failed ids, running id)."""
    store.create_job(NewJob(job_id, job_type, {}, 1))
    ids = add_tasks(store, job_id, FAILED_TASKS + 1)
    for task_id in ids[:FAILED_TASKS]:
        fail(store, task_id, "OSError", message)
    assert store.claim_task_by_id(ids[-1], APP, 600.0) is not None
    assert store.finish_job(job_id, 1, JobStatus.FAILED, None, {"type": "StageFailed", "message": "stage 1 failed"})
    return ids[:FAILED_TASKS], ids[-1]


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run `calls` in threads released together; their results in order."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def assert_retried_once(store: Store, failed: list[str], running: str) -> None:
    for task_id in failed:
        task = store.get_task(task_id)
        assert (task.status, task.attempt, task.max_attempts) == ("queued", 1, 3), task_id
    still = store.get_task(running)
    assert (still.status, still.attempt, still.max_attempts) == ("processing", 1, 2)
    assert store.get_job(store.get_task(running).job_id).status is JobStatus.PROCESSING


def test_two_retry_failed_at_once_retry_each_task_once(open_store: Callable[[], Store]) -> None:
    first, second = open_store(), open_store()
    job_id = "c" * 64
    failed, running = failed_job(first, job_id)
    results = race([lambda: operations.retry_failed(first, job_id), lambda: operations.retry_failed(second, job_id)])
    assert sum(results) == FAILED_TASKS
    assert_retried_once(first, failed, running)
    assert operations.retry_failed(first, job_id) == 0


def test_rerun_by_filter_dry_run_then_two_at_once(open_store: Callable[[], Store]) -> None:
    first, second = open_store(), open_store()
    disk = [failed_job(first, c * 64, "fanout", "disk full") for c in "12"]
    other = failed_job(first, "3" * 64, "fanout", "timeout")
    typed = failed_job(first, "4" * 64, "other", "disk quota")
    which = operations.RerunFilter(job_type="fanout", error_prefix="OSError: disk")

    dry = operations.rerun(first, which, dry_run=True)
    assert dry.dry_run and dry.matched == 2 and dry.retried_tasks == 2 * FAILED_TASKS
    assert sorted(dry.jobs) == sorted(["1" * 64, "2" * 64])
    assert first.get_task(disk[0][0][0]).status == "failed"  # a dry run changed nothing

    results = race([lambda: operations.rerun(first, which), lambda: operations.rerun(second, which)])
    assert sum(r.retried_tasks for r in results) == 2 * FAILED_TASKS
    for failed, running in disk:
        assert_retried_once(first, failed, running)
    for failed, _ in (other, typed):  # not matched: left alone
        assert {first.get_task(t).status for t in failed} == {"failed"}
    again = operations.rerun(first, which)
    assert (again.matched, again.retried_tasks) == (0, 0)  # the jobs are processing again, no longer failed
