"""Job and task statuses and the one transition table that every status change follows."""

from __future__ import annotations

from enum import StrEnum

from geomill.domain.errors import IllegalTransition


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in JOB_TERMINAL


class TaskStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TASK_TERMINAL


JOB_TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED, JobStatus.CANCELLED}
)
TASK_TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

# Terminal jobs may only be re-run as a *new* job (resubmit), never moved back.
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.PROCESSING: frozenset(
        {JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED,
         JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.COMPLETED_WITH_ERRORS: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

# processing -> queued is a retry (transient failure with backoff, or a lease reclaimed by the janitor).
TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.PROCESSING, TaskStatus.CANCELLED, TaskStatus.FAILED}),
    TaskStatus.PROCESSING: frozenset(
        {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.QUEUED, TaskStatus.CANCELLED}
    ),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}


def check_job_transition(current: JobStatus, new: JobStatus) -> None:
    """Raise IllegalTransition unless the table allows a job to go from `current` to `new`."""
    if new not in JOB_TRANSITIONS[JobStatus(current)]:
        raise IllegalTransition(f"job cannot go from {current} to {new}")


def check_task_transition(current: TaskStatus, new: TaskStatus) -> None:
    """Raise IllegalTransition unless the table allows a task to go from `current` to `new`."""
    if new not in TASK_TRANSITIONS[TaskStatus(current)]:
        raise IllegalTransition(f"task cannot go from {current} to {new}")


def job_sources(new: JobStatus) -> list[JobStatus]:
    """Statuses a job may be in for a move to `new` (used to build guarded updates)."""
    return [s for s, targets in JOB_TRANSITIONS.items() if new in targets]


def task_sources(new: TaskStatus) -> list[TaskStatus]:
    """Statuses a task may be in for a move to `new` (used to build guarded updates)."""
    return [s for s, targets in TASK_TRANSITIONS.items() if new in targets]
