"""Debug endpoints (the seed's "Phase 5"): admin only, and absent unless GEOMILL_DEBUG_ENDPOINTS=true."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from geomill.api.auth import Principal, require
from geomill.api.errors import KEYED_RESPONSES, ApiError, problem_responses
from geomill.api.models import ActionResult, TaskInfo, TaskList
from geomill.api.routers.jobs import Cursor, JobId, PageSize
from geomill.api.routers.tasks import retry
from geomill.service import listing
from geomill.service.listing import MAX_PAGE

router = APIRouter(prefix="/api", tags=["debug"], responses={**KEYED_RESPONSES, **problem_responses(404)})


async def enabled(request: Request, who: Principal = Depends(require("admin"))) -> Principal:
    if not request.app.state.settings.debug_endpoints:
        raise ApiError(404, "Not found", "debug endpoints are disabled (GEOMILL_DEBUG_ENDPOINTS=true enables them)")
    return who


Admin = Annotated[Principal, Depends(enabled)]
Id = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("/debug/stuck-jobs", response_model=list[dict[str, Any]])
def stuck_jobs(request: Request, _: Admin,
               idle_seconds: Annotated[float, Query(ge=0, le=86400 * 30)] = 300) -> list[dict[str, Any]]:
    """Unfinished jobs that have not moved for `idle_seconds` and have no task on a live lease."""
    return listing.stuck_jobs(request.app.state.runtime.store, idle_seconds)


@router.get("/debug/job/{job_id}/tasks", response_model=TaskList)
def debug_job_tasks(request: Request, job_id: JobId, _: Admin, limit: PageSize = 100,
                    cursor: Cursor = None) -> TaskList:
    """A page of a job's tasks, with error tracebacks; follow `next_cursor`."""
    page = listing.list_tasks(request.app.state.runtime.store, job_id, limit=limit, cursor=cursor, admin=True)
    return TaskList(items=page.items, next_cursor=page.next_cursor)  # type: ignore[arg-type]


@router.get("/debug/task/{task_id}", response_model=TaskInfo)
def debug_task(request: Request, task_id: Id, _: Admin) -> dict[str, Any]:
    return listing.get_task(request.app.state.runtime.store, task_id, admin=True)


@router.post("/debug/retry-task/{task_id}", response_model=ActionResult, responses=problem_responses(409))
def debug_retry_task(request: Request, task_id: Id, _: Admin) -> ActionResult:
    return retry(request, task_id)


@router.get("/dead-letters", response_model=list[dict[str, Any]])
def dead_letters(request: Request, _: Admin, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> list[dict]:
    """Work that could not be processed at all, newest first."""
    return listing.dead_letters(request.app.state.runtime.store, limit)
