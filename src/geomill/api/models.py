"""Response models: the OpenAPI document describes exactly what the endpoints return."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from geomill.domain import JobStatus as JobState

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def rfc3339(value: object) -> object:
    """Only what the OpenAPI document declares (format date-time), not pydantic's lax forms: epoch numbers, bare
    dates, times without an offset."""
    if isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z")
        return datetime.fromisoformat(value.upper())
    if not isinstance(value, datetime):
        raise ValueError("expected an RFC 3339 date-time string with an offset, e.g. 2024-05-01T12:00:00Z")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(rfc3339)]


def json_integer(value: object) -> object:
    """A JSON Schema integer: a number with no fraction (303 or 303.0), never a string or a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected an integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("expected an integer")
    return int(value)


JsonInt = Annotated[int, BeforeValidator(json_integer)]


class Problem(BaseModel):
    """RFC 9457 problem document (`application/problem+json`)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    correlation_id: str | None = None
    errors: list[dict[str, str]] | None = Field(None, description="one entry per invalid field")
    known_job_types: list[str] | None = None


class SubmitResponse(BaseModel):
    job_id: str
    status: str
    status_url: str
    created: bool = Field(description="false when the same job (or Idempotency-Key) already existed")
    correlation_id: str | None = None


class StageProgress(BaseModel):
    stage: int
    name: str
    planned: bool = True
    planning: bool = Field(False, description="tasks still being inserted: total is what is in so far")
    failure_policy: str | None = None
    total: int | None = None
    done: int | None = None
    queued: int | None = None
    processing: int | None = None
    completed: int | None = None
    failed: int | None = None
    cancelled: int | None = None
    progress: float | None = Field(None, description="percent of the stage's tasks finished")
    started_at: datetime | None = None
    completed_at: datetime | None = None
    seconds: float | None = None


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str | None = None
    message: str | None = None
    stage: int | None = None
    failed_tasks: list[str] | None = None


class TaskInfo(BaseModel):
    task_id: str
    job_id: str
    stage: int
    task_key: str
    task_type: str
    status: str
    attempt: int
    max_attempts: int
    target_queue: str
    created_at: datetime | None = None
    available_at: datetime | None = Field(None, description="when it may run (after a retry's backoff)")
    duration_seconds: float | None = Field(None, description="run time of the last attempt, once finished")
    error_summary: str | None = Field(None, description="'type: message', first line, at most 200 characters")
    executed_by_app: str | None = None
    execution_started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: float | None = None
    progress_message: str | None = None
    params: dict[str, Any]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = Field(None, description="with a traceback for admin keys only")
    correlation_id: str | None = None


class JobSummary(BaseModel):
    job_id: str
    job_type: str
    status: str
    params: dict[str, Any]
    stage: int
    stage_count: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    resubmit_of: str | None = None
    correlation_id: str | None = None


class JobStatus(JobSummary):
    stage_name: str | None = None
    progress: float = Field(description="percent of the job done (finished stages + the current one's share)")
    estimated_completion: datetime | None = Field(None, description="while running: a linear estimate")
    advances: int
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    stages: list[StageProgress]
    failed_tasks: list[TaskInfo]
    running_tasks: list[TaskInfo]


class JobList(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next (older) page")


class TaskList(BaseModel):
    items: list[TaskInfo]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


class JobResult(BaseModel):
    job_id: str
    status: str
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None


class StageInfo(BaseModel):
    name: str
    description: str
    failure_policy: str


class JobTypeInfo(BaseModel):
    name: str
    description: str
    stages: list[StageInfo]
    parameters: dict[str, Any] = Field(description="JSON Schema of the parameters (the submit body)")


class ActionResult(BaseModel):
    ok: bool
    detail: str
    job_id: str | None = None
    task_id: str | None = None
    status: str | None = None


class Health(BaseModel):
    status: str = Field(description="ok, degraded or down")
    components: dict[str, dict[str, Any]]


class StageTimeline(BaseModel):
    stage: int
    name: str
    planned: bool
    planning: bool = Field(description="tasks still being inserted: total is what is in so far")
    failure_policy: str | None = None
    total: int | None = None
    counts: dict[str, int] = Field(description="tasks by status: queued, processing, completed, failed, cancelled")
    created_at: datetime | None = Field(None, description="when the stage was planned")
    completed_at: datetime | None = None
    first_started_at: datetime | None = Field(None, description="the earliest start of its tasks (latest attempts)")
    last_finished_at: datetime | None = None
    progress: float = Field(description="fraction (0..1) of its tasks finished")
    tasks_per_second: float | None = Field(None, description="tasks finished per second since the first start")
    eta_seconds: float | None = Field(None, description="seconds left at that rate; 0 when done, None unknown")


class JobTimeline(BaseModel):
    job_id: str
    job_type: str
    status: str
    stage: int
    stage_count: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    counts: dict[str, int] = Field(description="the job's tasks by status")
    total_tasks: int
    progress: float = Field(description="fraction (0..1): finished stages whole, the current by its tasks")
    eta_seconds: float | None = Field(None, description="seconds left: the last stage's rate, or a linear estimate")
    stages: list[StageTimeline]


class RetriedCount(BaseModel):
    job_id: str
    retried: int = Field(description="failed tasks this call queued again")


class RerunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: JobState = JobState.FAILED
    job_type: str | None = Field(None, min_length=1, max_length=100)
    error_prefix: str | None = Field(None, min_length=1, max_length=500,
                                     description="start of the job's or a failed task's error (message or "
                                                 "'type: message'), case-sensitive")
    created_after: Rfc3339 | None = None
    created_before: Rfc3339 | None = None
    dry_run: bool = Field(False, strict=True)
    limit: JsonInt = Field(100, ge=1, le=1000, description="at most this many jobs, newest first")


class RerunResult(BaseModel):
    matched: int = Field(description="jobs the filter matched")
    retried_tasks: int = Field(description="failed tasks queued again (dry run: that would be)")
    jobs: list[str] = Field(description="the matched jobs' ids, newest first")
    dry_run: bool = False


class QueueDepth(BaseModel):
    queue: str
    queued: int
    ready: int
    running: int
    active: int
    broker_messages: int | None = Field(None, description="ready messages in RabbitMQ, when configured")
    consumers: int | None = Field(None, description="RabbitMQ consumers, when configured")


class WorkerSeen(BaseModel):
    worker_id: str
    app_name: str | None = None
    mode: str | None = None
    queues: list[str] = []
    processes: int | None = None
    started_at: datetime | None = None
    last_seen_at: datetime | None = None
    running: int = Field(description="tasks its processes run now")
    running_by_queue: dict[str, int] = {}


class QueuesHealth(BaseModel):
    broker: str | None = Field(None, description="the broker backend, None without one")
    broker_error: str | None = None
    queues: list[QueueDepth]
    seen_within_seconds: float
    workers: list[WorkerSeen]
    unattributed: list[dict[str, Any]] = Field(description="running tasks of processes no recent worker reports")
