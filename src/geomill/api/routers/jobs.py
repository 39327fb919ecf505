"""Jobs: submit, status, list (filters, keyset pages), timeline, tasks, result, cancel, resubmit, retry-failed, rerun."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from pydantic import BeforeValidator
from starlette.convertors import Convertor, register_url_convertor

from geomill.api.auth import Principal, require
from geomill.api.body import JSON_OBJECT_BODY, parse_object
from geomill.api.errors import KEYED_RESPONSES, problem_responses
from geomill.api.models import (
    ActionResult,
    JobList,
    JobResult,
    JobStatus,
    JobTimeline,
    RerunRequest,
    RerunResult,
    RetriedCount,
    SubmitResponse,
    TaskList,
    rfc3339,
)
from geomill.domain import JobStatus as JobState
from geomill.domain import TaskStatus
from geomill.engine.orchestrator import Submission
from geomill.runtime import Runtime
from geomill.service import listing, operations
from geomill.service.listing import MAX_PAGE
from geomill.service.status import job_status_async
from geomill.service.submit import job_type_for, submit, submit_async
from geomill.service.timeline import job_timeline


class JobIdConvertor(Convertor[str]):
    """A path segment that is a job id (64 lowercase hex digits)."""

    regex = "[0-9a-f]{64}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("jobid", JobIdConvertor())
router = APIRouter(prefix="/api", tags=["jobs"], responses=KEYED_RESPONSES)
NOT_FOUND = problem_responses(404)
CONFLICT = problem_responses(409)
# a job id is 64 hex digits: that also keeps /jobs/{job_id}/... apart from /jobs/submit/... and /jobs/status/...
JobId = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="the job id (sha256 hex)")]
INT32_MAX = 2**31 - 1  # stage and offset: never more (PostgreSQL's integer), and a bound, not an overflow


Timestamp = Annotated[datetime | None, BeforeValidator(rfc3339), Query()]


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.post("/jobs/submit/{job_type}", status_code=202, response_model=SubmitResponse, openapi_extra=JSON_OBJECT_BODY,
             responses={200: {"model": SubmitResponse, "description": "the same job already existed"},
                        **problem_responses(400, 404, 413, 415)})
async def submit_job(
    request: Request, response: Response, job_type: Annotated[str, Path(max_length=100)],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    who: Principal = Depends(require("submit")),
) -> SubmitResponse:
    """Submit a job. 202 when created; 200 with the existing job for the same parameters, or for the same
    Idempotency-Key with the same request (422 when the key was used for another)."""
    rt, cid = runtime(request), request.state.correlation_id
    job_type_for(rt, job_type)  # an unknown job type is a 404 whatever the body
    params = parse_object(await request.body(), request.headers.get("content-type"))
    if idempotency_key:  # the key's lookup and the submission are sync store calls: in the thread pool
        sub = await run_in_threadpool(lambda: submit(rt, job_type, params, restricted=True, correlation_id=cid,
                                                     idempotency_key=idempotency_key, client=who.key_id))
    else:  # the common case, on the event loop: validation is CPU, the insert one statement of the async store
        sub = await submit_async(rt, request.app.state.async_store, job_type, params, restricted=True,
                                 correlation_id=cid)
    return _submitted(request, response, sub)


def _submitted(request: Request, response: Response, sub: Submission) -> SubmitResponse:
    response.status_code = 202 if sub.created else 200
    return SubmitResponse(job_id=sub.job.job_id, status=str(sub.job.status), created=sub.created,
                          status_url=status_url(request, sub.job.job_id), correlation_id=sub.job.correlation_id)


def status_url(request: Request, job_id: str) -> str:
    """The job's status URL: under GEOMILL_PUBLIC_URL when set, else relative (with the proxy's root path), never
    from the Host header a client can forge. No ``url_for``: its walk over the routes costs 20 µs a submission."""
    path = STATUS_PATH.format(job_id=job_id)
    public = request.app.state.settings.public_url
    return public.rstrip("/") + path if public else request.scope.get("root_path", "") + path


async def _status(request: Request, job_id: str, admin: bool) -> dict[str, Any]:
    """Read on the event loop (PostgreSQL: an async pool; no thread hop per request)."""
    state = request.app.state
    return await job_status_async(state.async_store, state.runtime.registry, job_id, admin=admin)


# before the /jobs/{job_id} routes: Starlette answers a wrong method on a path with the first route it partly
# matches (OPTIONS /api/jobs/rerun must say Allow: POST)
@router.post("/jobs/rerun", response_model=RerunResult, responses=problem_responses(400))
def rerun_jobs(request: Request, body: RerunRequest, _: Principal = Depends(require("submit"))) -> RerunResult:
    """Bulk rerun by filter: retry the failed tasks of the jobs (failed ones unless `status` says otherwise) of a
    type, whose error starts with `error_prefix`, created in a window; at most `limit` jobs, newest first.
    `dry_run`: change nothing, say what would be retried. Safe to run twice at once: no task is retried twice."""
    which = operations.RerunFilter(status=body.status, job_type=body.job_type, error_prefix=body.error_prefix,
                                   created_after=body.created_after, created_before=body.created_before,
                                   limit=body.limit)
    out = operations.rerun(runtime(request).store, which, dry_run=body.dry_run)
    return RerunResult(matched=out.matched, retried_tasks=out.retried_tasks, jobs=out.jobs, dry_run=out.dry_run)


@router.get("/jobs/status/{job_id}", response_model=JobStatus, name="get_job_status", responses=NOT_FOUND)
async def get_job_status(request: Request, job_id: JobId,
                         who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Status, stage k of n, per-stage task counts, progress, estimate, result or error."""
    return await _status(request, job_id, who.has("admin"))


# the job's own path only matches a job id, so GET /api/jobs/rerun is a 405 (Allow: POST), not a malformed id
@router.get("/jobs/{job_id:jobid}", response_model=JobStatus, responses=NOT_FOUND)
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
    error: Annotated[str | None, Query(min_length=1, max_length=500, description=(
        "a prefix (case-sensitive) of the job's error or of one of its failed tasks' errors, matched against the "
        "message and against 'type: message'"))] = None,
    _: Principal = Depends(require("read")),
) -> JobList:
    """Jobs newest first, filtered (status, job type, creation window, error prefix); follow `next_cursor` for
    older pages (keyset paging on (created_at, job_id): a deep page costs what the first one does)."""
    page = listing.list_jobs(runtime(request).store, status=status, job_type=job_type, limit=limit,
                             created_after=created_after, created_before=created_before, cursor=cursor,
                             error=error)
    return JobList(items=page.items, next_cursor=page.next_cursor)  # type: ignore[arg-type]


PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Cursor = Annotated[str | None, Query(max_length=500)]


@router.get("/jobs/{job_id}/tasks", response_model=TaskList, responses=NOT_FOUND)
def list_job_tasks(
    request: Request, job_id: JobId,
    stage: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
    status: Annotated[TaskStatus | None, Query()] = None,
    limit: PageSize = 100,
    cursor: Cursor = None,
    who: Principal = Depends(require("read")),
) -> TaskList:
    """A page of a job's tasks by stage and key (filter by stage and status); follow `next_cursor`."""
    page = listing.list_tasks(runtime(request).store, job_id, stage=stage, status=status, limit=limit,
                              cursor=cursor, admin=who.has("admin"))
    return TaskList(items=page.items, next_cursor=page.next_cursor)  # type: ignore[arg-type]


@router.get("/jobs/{job_id}/timeline", response_model=JobTimeline, responses=NOT_FOUND)
def get_job_timeline(request: Request, job_id: JobId, _: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Per stage: task counts by status, first start, last finish, progress and ETA; and the job's. Aggregated
    in the database (stage counters and index lookups): as fast for 100,000 tasks as for 10."""
    rt = runtime(request)
    return job_timeline(rt.store, rt.registry, job_id)


@router.post("/jobs/{job_id}/retry-failed", response_model=RetriedCount, responses=NOT_FOUND)
def retry_failed_tasks(request: Request, job_id: JobId,
                       _: Principal = Depends(require("submit"))) -> RetriedCount:
    """One more attempt for every failed task of the stage the job is at; `retried` counts those this call
    queued (0 when there were none, or another call took them first)."""
    return RetriedCount(job_id=job_id, retried=operations.retry_failed(runtime(request).store, job_id))


@router.get("/jobs/{job_id}/result", response_model=JobResult, responses={**NOT_FOUND, **CONFLICT})
def get_job_result(request: Request, job_id: JobId, _: Principal = Depends(require("read"))) -> JobResult:
    """The result of a finished job; 409 while it still runs."""
    return JobResult(**listing.job_result(runtime(request).store, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=ActionResult, responses={**NOT_FOUND, **CONFLICT})
def cancel_job(request: Request, job_id: JobId, _: Principal = Depends(require("submit"))) -> ActionResult:
    """Cancel: queued tasks at once, running ones at their next heartbeat. 409 if the job already finished."""
    operations.cancel(runtime(request).store, job_id)
    return ActionResult(ok=True, detail="cancelled", job_id=job_id, status="cancelled")


@router.post("/jobs/{job_id}/resubmit", status_code=202, response_model=SubmitResponse,
             responses={200: {"model": SubmitResponse, "description": "this job was already resubmitted"},
                        **NOT_FOUND})
def resubmit_job(request: Request, response: Response, job_id: JobId,
                 _: Principal = Depends(require("submit"))) -> SubmitResponse:
    """A fresh run of a finished job (a new id; `resubmit_of` names this one). 200 with that run if it exists."""
    sub = operations.resubmit(runtime(request), job_id, correlation_id=request.state.correlation_id)
    return _submitted(request, response, sub)


STATUS_PATH = next(r.path for r in router.routes if isinstance(r, APIRoute) and r.name == "get_job_status")
