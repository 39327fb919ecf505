"""Tasks: details and manual retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from geomill.api.auth import Principal, require
from geomill.api.errors import KEYED_RESPONSES, problem_responses
from geomill.api.models import ActionResult, TaskInfo
from geomill.service import listing, operations

router = APIRouter(prefix="/api", tags=["tasks"], responses={**KEYED_RESPONSES, **problem_responses(404)})
TaskId = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("/tasks/{task_id}", response_model=TaskInfo)
def get_task(request: Request, task_id: TaskId, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Parameters, attempts, target queue, executed_by_app, timings, result; error traceback for admins."""
    return listing.get_task(request.app.state.runtime.store, task_id, admin=who.has("admin"))


def retry(request: Request, task_id: str) -> ActionResult:
    task = operations.retry(request.app.state.runtime.store, task_id)
    return ActionResult(ok=True, detail="queued again", task_id=task_id, job_id=task.job_id, status="queued")


@router.post("/tasks/{task_id}/retry", response_model=ActionResult, responses=problem_responses(409))
def retry_task(request: Request, task_id: TaskId, _: Principal = Depends(require("submit"))) -> ActionResult:
    """One more attempt for a failed task; re-opens its stage, and its job if that stage failed it."""
    return retry(request, task_id)
