"""Response models: the OpenAPI document describes exactly what the endpoints return."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
