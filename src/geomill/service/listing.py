"""Listing and reading: jobs (newest first, cursor pages), a job's tasks, one task, a job's result, dead letters,
stuck jobs, and short job ids as `geomill jobs` prints them."""

from __future__ import annotations

import base64
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from geomill.domain import InvalidInput, JobStatus, NotFinished, NotFound, TaskStatus
from geomill.engine.ports import Store
from geomill.engine.registry import Registry
from geomill.engine.report import job_doc, task_doc

MAX_PAGE = 1000  # the most items one page of any listing may hold: a read key cannot ask for a whole job at once


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None




def _pack(first: str, second: str) -> str:
    return base64.urlsafe_b64encode(f"{first}|{second}".encode()).decode().rstrip("=")


def _unpack(cursor: str) -> tuple[str, str]:
    """The two parts `_pack` joined; InvalidInput (field ``cursor``) for anything else."""
    try:
        first, second = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|", 1)
        return first, second
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad_cursor() from exc


def _bad_cursor() -> InvalidInput:
    return InvalidInput("cursor: not a cursor this API returned", errors=[{"field": "cursor", "message": "malformed"}])


def encode_cursor(created_at: datetime, job_id: str) -> str:
    return _pack(created_at.isoformat(), job_id)


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, job_id) a jobs cursor names; InvalidInput (field ``cursor``) otherwise."""
    stamp, job_id = _unpack(cursor)
    try:
        return datetime.fromisoformat(stamp), job_id
    except ValueError as exc:
        raise _bad_cursor() from exc


def encode_task_cursor(stage: int, task_key: str) -> str:
    return _pack(str(stage), task_key)


def decode_task_cursor(cursor: str) -> tuple[int, str]:
    """The (stage, task_key) a tasks cursor names; InvalidInput (field ``cursor``) otherwise."""
    stage, task_key = _unpack(cursor)
    try:
        return int(stage), task_key
    except ValueError as exc:
        raise _bad_cursor() from exc


def _page_size(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit: between 1 and {MAX_PAGE}",
                           errors=[{"field": "limit", "message": f"between 1 and {MAX_PAGE}"}])
    return limit


def list_jobs(store: Store, *, status: JobStatus | None = None, job_type: str | None = None, limit: int = 50,
              created_after: datetime | None = None, created_before: datetime | None = None,
              cursor: str | None = None, error: str | None = None) -> Page:
    """Jobs newest first, filtered; `next_cursor` names the next (older) page, None on the last. `error`: a prefix
    (case-sensitive) of the job's error or of one of its failed tasks' errors, as message or ``type: message``."""
    limit = _page_size(limit)
    after = decode_cursor(cursor) if cursor else None
    jobs = store.list_jobs(status, job_type, limit + 1, created_after, created_before, after, error or None)
    page, more = jobs[:limit], len(jobs) > limit
    next_cursor = encode_cursor(page[-1].created_at, page[-1].job_id) if more and page else None
    return Page([job_doc(j) for j in page], next_cursor)


def list_tasks(store: Store, job_id: str, *, stage: int | None = None, status: TaskStatus | None = None,
               limit: int = 100, cursor: str | None = None, admin: bool = False) -> Page:
    """A page of a job's tasks by (stage, task_key); `next_cursor` names the next page, None on the last.
    NotFound for an unknown job rather than an empty page."""
    limit = _page_size(limit)
    after = decode_task_cursor(cursor) if cursor else None
    store.get_job(job_id)
    tasks = store.list_tasks(job_id, stage, status, limit + 1, after)
    page, more = tasks[:limit], len(tasks) > limit
    next_cursor = encode_task_cursor(page[-1].stage, page[-1].task_key) if more and page else None
    return Page([task_doc(t, admin=admin) for t in page], next_cursor)


def get_task(store: Store, task_id: str, *, admin: bool = False) -> dict[str, Any]:
    """One task's document (error tracebacks for admins only)."""
    return task_doc(store.get_task(task_id), admin=admin)


def job_result(store: Store, job_id: str) -> dict[str, Any]:
    """A finished job's result or error; NotFinished while it runs."""
    job = store.get_job(job_id)
    if not job.status.is_terminal:
        raise NotFinished(f"job {job_id} is {job.status}; poll its status_url")
    return {"job_id": job_id, "status": str(job.status), "result": job.result, "error": job.error}


def dead_letters(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """Work that could not be processed at all, newest first."""
    return store.list_dead_letters(_page_size(limit))


def stuck_jobs(store: Store, idle_seconds: float) -> list[dict[str, Any]]:
    """Unfinished jobs idle `idle_seconds` with no task on a live lease."""
    return store.stuck_jobs(idle_seconds)


def resolve_job_id(store: Store, job_id: str) -> str:
    """A full id, or the job a unique prefix (4 characters or more) names; NotFound otherwise."""
    try:
        return store.get_job(job_id).job_id
    except NotFound:
        matches = store.find_jobs(job_id) if len(job_id) >= 4 else []
        if len(matches) == 1:
            return matches[0].job_id
        raise


def job_types(registry: Registry, hidden: Collection[str] = ()) -> list[dict[str, Any]]:
    """Each job type (but the `hidden` ones) with its description, stages and the JSON Schema of its parameters."""
    return [
        {"name": jt.name, "description": jt.description,
         "stages": [{"name": s.name, "description": s.description, "failure_policy": str(s.failure_policy)}
                    for s in jt.stages],
         "parameters": jt.params_model.model_json_schema()}
        for jt in registry.job_types() if jt.name not in hidden
    ]
