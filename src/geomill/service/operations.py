"""Operations on jobs and tasks: cancel, retry (one task, a job's failed tasks, or by filter), resubmit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from geomill.domain import Conflict, InvalidInput, Job, JobStatus, Task
from geomill.engine.orchestrator import Submission
from geomill.engine.ports import Store
from geomill.service import submit

if TYPE_CHECKING:
    from geomill.runtime import Runtime


def cancel(store: Store, job_id: str) -> tuple[Job, bool]:
    """Cancel a job (queued tasks at once, running ones at their next heartbeat): the job and whether this call
    changed it. Cancelling a cancelled job changes nothing; Conflict when it finished otherwise."""
    changed = store.cancel_job(job_id)
    job = store.get_job(job_id)
    if not changed and job.status is not JobStatus.CANCELLED:
        raise Conflict(f"job {job_id} is already {job.status}; nothing to cancel")
    return job, changed


def retry(store: Store, task_id: str) -> Task:
    """One more attempt for a failed task (re-opens its stage, and its job if that stage failed it)."""
    task = store.get_task(task_id)
    if not store.retry_task(task_id):
        raise Conflict(f"task {task_id} is {task.status}; only a failed task of a job still at its stage can be "
                       "retried (resubmit the job instead)")
    return task


def resubmit(rt: Runtime, job_id: str, correlation_id: str | None = None) -> Submission:
    """A fresh run of a finished job (a new id; `resubmit_of` names this one)."""
    return submit.resubmit(rt, job_id, correlation_id)


RETRY_BATCH = 500  # tasks re-queued per transaction: one commit, not one per task, and no long-held locks


def retry_failed(store: Store, job_id: str) -> int:
    """One more attempt for each failed task of the stage the job is at (NotFound for an unknown job): how many this
    call re-queued. Each retry is the store's guarded update (``WHERE status = 'failed'``), so two calls at once
    never retry a task twice and a task already running again is left alone."""
    store.get_job(job_id)
    ids = store.retryable_tasks(job_id)
    return sum(store.retry_tasks(ids[i:i + RETRY_BATCH]) for i in range(0, len(ids), RETRY_BATCH))


RERUN_MAX_JOBS = 1000


@dataclass(frozen=True)
class RerunFilter:
    """Which jobs a bulk rerun takes: by job status (failed unless said), type, error prefix (the job's or one of
    its failed tasks', message or ``type: message``) and creation window; newest first, at most `limit`."""

    status: JobStatus = JobStatus.FAILED
    job_type: str | None = None
    error_prefix: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = 100


@dataclass(frozen=True)
class RerunOutcome:
    matched: int
    retried_tasks: int
    jobs: list[str] = field(default_factory=list)
    dry_run: bool = False


def rerun(store: Store, which: RerunFilter, *, dry_run: bool = False) -> RerunOutcome:
    """Retry the failed tasks of every job `which` matches (`retry_failed` per job). A dry run changes nothing and
    counts the tasks a rerun would retry now. `jobs`: the matched jobs' ids."""
    if not 1 <= which.limit <= RERUN_MAX_JOBS:
        raise InvalidInput(f"limit: between 1 and {RERUN_MAX_JOBS}",
                           errors=[{"field": "limit", "message": f"between 1 and {RERUN_MAX_JOBS}"}])
    jobs = store.list_jobs(which.status, which.job_type, which.limit, which.created_after, which.created_before,
                           None, which.error_prefix or None)
    ids = [j.job_id for j in jobs]
    if dry_run:
        retried = sum(len(store.retryable_tasks(job_id)) for job_id in ids)
    else:
        retried = sum(retry_failed(store, job_id) for job_id in ids)
    return RerunOutcome(matched=len(ids), retried_tasks=retried, jobs=ids, dry_run=dry_run)
