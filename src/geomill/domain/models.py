"""Jobs, stages and tasks as frozen values. Stores build them; the engine reasons about them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from geomill.domain.status import JobStatus, TaskStatus


class FailurePolicy(StrEnum):
    FAIL_JOB = "fail_job"  # any failed task fails the job once the stage has ended
    TOLERATE = "tolerate"  # go on; the job ends completed_with_errors


class EventKind(StrEnum):
    JOB_SUBMITTED = "job_submitted"
    STAGE_COMPLETE = "stage_complete"


@dataclass(frozen=True)
class TaskSpec:
    """One task a stage plan asks for: `key` is unique within the stage and makes the task id."""

    key: str
    task_type: str
    params: dict[str, Any]
    size_bytes: int | None = None  # input size, for routing big inputs to long-tasks
    estimated_seconds: float | None = None  # expected duration, for routing to long-tasks


@dataclass(frozen=True)
class StageResults:
    """What a plan or a finalizer sees of a finished stage: results of completed tasks by key, errors of failed."""

    name: str
    results: dict[str, dict[str, Any]]
    errors: dict[str, dict[str, Any]]

    @property
    def completed_count(self) -> int:
        return len(self.results)

    @property
    def failed_count(self) -> int:
        return len(self.errors)


class FinishedStage(Protocol):
    """What plans and finalizers read of a finished stage: a `StageResults`, or the orchestrator's view that reads
    results from the store only when first looked at."""

    @property
    def name(self) -> str: ...

    @property
    def results(self) -> dict[str, dict[str, Any]]: ...

    @property
    def errors(self) -> dict[str, dict[str, Any]]: ...

    @property
    def completed_count(self) -> int: ...

    @property
    def failed_count(self) -> int: ...


PlanFn = Callable[[Any, Sequence[FinishedStage]], Iterable[TaskSpec]]  # a list, or a generator for big stages
PolicyFn = Callable[[Any], FailurePolicy]


@dataclass(frozen=True)
class StageSpec:
    """A step of a job type: its name, how to plan its tasks, and what a failed task means."""

    name: str
    plan: PlanFn
    failure_policy: FailurePolicy = FailurePolicy.FAIL_JOB
    description: str = ""
    policy_from_params: PolicyFn | None = None  # when the job's parameters choose the policy

    def policy_for(self, params: Any) -> FailurePolicy:
        """The failure policy of this stage for a job with these (validated) parameters."""
        return self.policy_from_params(params) if self.policy_from_params else self.failure_policy


@dataclass(frozen=True)
class NewTask:
    """A task ready to insert: planned, routed and given its retry budget."""

    task_id: str
    task_key: str
    task_type: str
    params: dict[str, Any]
    target_queue: str
    max_attempts: int
    timeout_seconds: float


@dataclass(frozen=True)
class NewJob:
    """A validated submission, ready to insert."""

    job_id: str
    job_type: str
    params: dict[str, Any]
    stage_count: int
    deadline_seconds: float | None = None
    resubmit_of: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class Job:
    job_id: str
    job_type: str
    params: dict[str, Any]
    status: JobStatus
    stage: int  # 0 before the first stage is planned, then 1..stage_count
    stage_count: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    resubmit_of: str | None = None
    advances: int = 0  # successful stage compare-and-sets, including the final one
    correlation_id: str | None = None


@dataclass(frozen=True)
class Stage:
    job_id: str
    stage: int
    name: str
    total: int
    remaining: int
    failed: int
    failure_policy: FailurePolicy
    created_at: datetime
    completed_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)  # by task status, filled by progress queries
    sealed: bool = True  # False while a large stage's tasks are still being inserted in chunks


@dataclass(frozen=True)
class Task:
    task_id: str
    job_id: str
    stage: int
    task_key: str
    task_type: str
    params: dict[str, Any]
    status: TaskStatus
    attempt: int
    max_attempts: int
    target_queue: str
    timeout_seconds: float
    created_at: datetime
    available_at: datetime | None = None
    lease_expires_at: datetime | None = None
    executed_by_app: str | None = None
    execution_started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    progress: float | None = None
    progress_message: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class Event:
    """An orchestration event on the jobs queue. Only a wake-up: its handler re-checks the database."""

    event_id: int
    kind: EventKind
    job_id: str
    stage: int
