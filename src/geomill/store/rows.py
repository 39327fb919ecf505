"""Database rows to domain objects: the only place statuses turn from text back into enums."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from geomill.domain import FailurePolicy, Job, JobStatus, Stage, Task, TaskStatus


def ts(value: Any) -> datetime | None:
    """Epoch seconds (SQLite), a datetime (PostgreSQL) or an ISO 8601 string (a PostgreSQL time inside JSON) as an
    aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str) and "-" in value:
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


def js(value: Any) -> Any:
    if value is None or not isinstance(value, str | bytes):
        return value
    return json.loads(value)


def job_from_row(r: Mapping[str, Any]) -> Job:
    return Job(
        job_id=r["job_id"], job_type=r["job_type"], params=js(r["params"]), status=JobStatus(r["status"]),
        stage=r["stage"], stage_count=r["stage_count"], created_at=ts(r["created_at"]),  # type: ignore[arg-type]
        started_at=ts(r["started_at"]), finished_at=ts(r["finished_at"]), deadline_at=ts(r["deadline_at"]),
        result=js(r["result"]), error=js(r["error"]), resubmit_of=r["resubmit_of"], advances=r["advances"],
        correlation_id=r["correlation_id"],
    )


def stage_from_row(r: Mapping[str, Any], counts: dict[str, int]) -> Stage:
    return Stage(
        job_id=r["job_id"], stage=r["stage"], name=r["name"], total=r["total"], remaining=r["remaining"],
        failed=r["failed"], failure_policy=FailurePolicy(r["failure_policy"]),
        created_at=ts(r["created_at"]), completed_at=ts(r["completed_at"]), counts=counts,  # type: ignore[arg-type]
        sealed=bool(r["sealed"]),
    )


def task_from_row(r: Mapping[str, Any]) -> Task:
    return Task(
        task_id=r["task_id"], job_id=r["job_id"], stage=r["stage"], task_key=r["task_key"],
        task_type=r["task_type"], params=js(r["params"]), status=TaskStatus(r["status"]), attempt=r["attempt"],
        max_attempts=r["max_attempts"], target_queue=r["target_queue"], timeout_seconds=r["timeout_seconds"],
        created_at=ts(r["created_at"]), available_at=ts(r["available_at"]),  # type: ignore[arg-type]
        lease_expires_at=ts(r["lease_expires_at"]), executed_by_app=r["executed_by_app"],
        execution_started_at=ts(r["execution_started_at"]), finished_at=ts(r["finished_at"]),
        result=js(r["result"]), error=js(r["error"]),
        progress=r["progress"], progress_message=r["progress_message"], correlation_id=r["correlation_id"],
    )
