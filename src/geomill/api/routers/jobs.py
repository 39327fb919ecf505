"""Jobs: submit, status, list, result, cancel, resubmit."""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, BeforeValidator
from starlette.datastructures import URLPath

from geomill.api.auth import Principal, require
from geomill.api.errors import KEYED_RESPONSES, ApiError, problem_responses
from geomill.api.models import ActionResult, JobList, JobResult, JobStatus, SubmitResponse, TaskInfo
from geomill.api.views import decode_cursor, encode_cursor, job_status
from geomill.domain import InvalidInput, Job, TaskStatus
from geomill.domain import JobStatus as JobState
from geomill.engine.orchestrator import submitted
from geomill.engine.report import job_doc, task_doc
from geomill.runtime import Runtime

router = APIRouter(prefix="/api", tags=["jobs"], responses=KEYED_RESPONSES)
NOT_FOUND = problem_responses(404)
CONFLICT = problem_responses(409)
# a job id is 64 hex digits: that also keeps /jobs/{job_id}/... apart from /jobs/submit/... and /jobs/status/...
JobId = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="the job id (sha256 hex)")]


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc3339(value: object) -> object:
    """Only what the OpenAPI document declares (format date-time), not pydantic's lax forms: epoch numbers, bare
    dates, times without an offset."""
    if isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z")
        return datetime.fromisoformat(value.upper())
    return value


Timestamp = Annotated[datetime | None, BeforeValidator(_rfc3339), Query()]


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@functools.cache
def _file_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The parameters a job type marks as naming files (``x-geomill-file``); computed once per model."""
    props = model.model_json_schema().get("properties", {})
    return tuple(name for name, prop in props.items() if prop.get("x-geomill-file"))


def _check_files(request: Request, rt: Runtime, job_type: str, params: dict[str, Any]) -> None:
    """Parameters that name files must stay inside storage zones or the configured roots."""
    roots = request.app.state.settings.source_roots
    for name in _file_fields(rt.registry.job_type(job_type).params_model):
        value = params.get(name)
        for item in value if isinstance(value, list) else [value]:  # a file, or a list of files
            if isinstance(item, str):
                try:
                    rt.storage.check_allowed(item, roots)
                except InvalidInput as exc:
                    raise InvalidInput(f"{name}: {exc}", field=name) from None


@router.post("/jobs/submit/{job_type}", status_code=202, response_model=SubmitResponse,
             responses={200: {"model": SubmitResponse, "description": "the same job already existed"},
                        **problem_responses(400, 404, 413)})
async def submit_job(
    request: Request, response: Response, job_type: Annotated[str, Path(max_length=100)],
    params: Annotated[dict[str, Any], Body(description="the job's parameters (see GET /api/job-types)")],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    _: Principal = Depends(require("submit")),
) -> SubmitResponse:
    """Submit a job. 202 when created; 200 with the existing job for the same parameters or Idempotency-Key."""
    rt = runtime(request)
    if idempotency_key:
        job, created = await run_in_threadpool(_submit_with_key, request, rt, job_type, params, idempotency_key)
    else:  # the common case, on the event loop: validation is CPU, the insert one statement of the async store
        new = rt.orchestrator.new_job(job_type, params, correlation_id=request.state.correlation_id)
        _check_files(request, rt, job_type, params)
        sub = submitted(*await request.app.state.async_store.create_job(new))
        job, created = sub.job, sub.created
    response.status_code = 202 if created else 200
    return SubmitResponse(job_id=job.job_id, status=str(job.status), created=created,
                          status_url=status_url(request, job.job_id),
                          correlation_id=job.correlation_id)


def status_url(request: Request, job_id: str) -> str:
    """What ``request.url_for("get_job_status", job_id=...)`` gives, without its walk over the app's routes (a miss
    raises and catches an exception per route): 10 instead of 30 µs per submission here."""
    return str(URLPath(STATUS_PATH.format(job_id=job_id), protocol="http").make_absolute_url(request.base_url))


def _submit_with_key(request: Request, rt: Runtime, job_type: str, params: dict[str, Any],
                     idempotency_key: str) -> tuple[Job, bool]:
    """The job an Idempotency-Key already names, or a submission that the key then names."""
    existing = rt.store.job_for_idempotency_key(idempotency_key)
    if existing is not None:
        return rt.store.get_job(existing), False
    rt.orchestrator.validate(job_type, params)
    _check_files(request, rt, job_type, params)
    sub = rt.orchestrator.submit(job_type, params, correlation_id=request.state.correlation_id)
    return rt.store.get_job(rt.store.remember_idempotency_key(idempotency_key, sub.job.job_id)), sub.created


async def _status(request: Request, job_id: str, admin: bool) -> dict[str, Any]:
    """Read on the event loop (PostgreSQL: an async pool; no thread hop per request)."""
    state = request.app.state
    return job_status(state.runtime, await state.async_store.job_view(job_id), admin=admin)


@router.get("/jobs/status/{job_id}", response_model=JobStatus, name="get_job_status", responses=NOT_FOUND)
async def get_job_status(request: Request, job_id: JobId,
                         who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Status, stage k of n, per-stage task counts, progress, estimate, result or error."""
    return await _status(request, job_id, who.has("admin"))


@router.get("/jobs/{job_id}", response_model=JobStatus, responses=NOT_FOUND)
async def get_job(request: Request, job_id: JobId, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """The same document as /api/jobs/status/{job_id}."""
    return await _status(request, job_id, who.has("admin"))


@router.get("/jobs", response_model=JobList)
def list_jobs(
    request: Request,
    status: Annotated[JobState | None, Query()] = None,
    job_type: Annotated[str | None, Query(max_length=100)] = None,
    created_after: Timestamp = None,
    created_before: Timestamp = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    _: Principal = Depends(require("read")),
) -> JobList:
    """Jobs newest first, filtered; follow `next_cursor` for older pages."""
    rt = runtime(request)
    after = decode_cursor(cursor) if cursor else None
    jobs = rt.store.list_jobs(status, job_type, limit + 1, created_after, created_before, after)
    page, more = jobs[:limit], len(jobs) > limit
    next_cursor = encode_cursor(page[-1].created_at, page[-1].job_id) if more and page else None
    return JobList(items=[job_doc(j) for j in page], next_cursor=next_cursor)  # type: ignore[arg-type]


@router.get("/jobs/{job_id}/tasks", response_model=list[TaskInfo], responses=NOT_FOUND)
def list_job_tasks(
    request: Request, job_id: JobId,
    stage: Annotated[int | None, Query(ge=1)] = None,
    status: Annotated[TaskStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
    who: Principal = Depends(require("read")),
) -> list[dict[str, Any]]:
    """A job's tasks (filter by stage and status)."""
    rt = runtime(request)
    rt.store.get_job(job_id)  # 404 for an unknown job rather than an empty list
    tasks = rt.store.list_tasks(job_id, stage, status)[offset:offset + limit]
    return [task_doc(t, admin=who.has("admin")) for t in tasks]


@router.get("/jobs/{job_id}/result", response_model=JobResult, responses={**NOT_FOUND, **CONFLICT})
def get_job_result(request: Request, job_id: JobId, _: Principal = Depends(require("read"))) -> JobResult:
    """The result of a finished job; 409 while it still runs."""
    job = runtime(request).store.get_job(job_id)
    if not job.status.is_terminal:
        raise ApiError(409, "Not finished", f"job {job_id} is {job.status}; poll its status_url")
    return JobResult(job_id=job_id, status=str(job.status), result=job.result, error=job.error)  # type: ignore[arg-type]


@router.post("/jobs/{job_id}/cancel", response_model=ActionResult, responses={**NOT_FOUND, **CONFLICT})
def cancel_job(request: Request, job_id: JobId, _: Principal = Depends(require("submit"))) -> ActionResult:
    """Cancel: queued tasks at once, running ones at their next heartbeat. 409 if the job already finished."""
    rt = runtime(request)
    job = rt.store.get_job(job_id)
    if not rt.store.cancel_job(job_id) and job.status is not JobState.CANCELLED:
        raise ApiError(409, "Conflict", f"job {job_id} is already {job.status}")
    return ActionResult(ok=True, detail="cancelled", job_id=job_id, status="cancelled")


@router.post("/jobs/{job_id}/resubmit", status_code=202, response_model=SubmitResponse,
             responses={200: {"model": SubmitResponse, "description": "this job was already resubmitted"},
                        **NOT_FOUND})
def resubmit_job(request: Request, response: Response, job_id: JobId,
                 _: Principal = Depends(require("submit"))) -> SubmitResponse:
    """A fresh run of a finished job (a new id; `resubmit_of` names this one). 200 with that run if it exists."""
    rt = runtime(request)
    sub = rt.orchestrator.resubmit(job_id, correlation_id=request.state.correlation_id)
    response.status_code = 202 if sub.created else 200
    return SubmitResponse(job_id=sub.job.job_id, status=str(sub.job.status), created=sub.created,
                          status_url=status_url(request, sub.job.job_id),
                          correlation_id=sub.job.correlation_id)


STATUS_PATH = next(r.path for r in router.routes if getattr(r, "name", None) == "get_job_status")
