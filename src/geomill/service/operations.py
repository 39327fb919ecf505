"""Operations on jobs and tasks: cancel, retry, resubmit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomill.domain import Conflict, Job, JobStatus, Task
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
