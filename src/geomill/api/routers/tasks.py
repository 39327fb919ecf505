"""Tasks: details and manual retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from geomill.api.auth import Principal, require
from geomill.api.errors import KEYED_RESPONSES, ApiError, problem_responses
from geomill.api.models import ActionResult, TaskInfo
from geomill.engine.report import task_doc

router = APIRouter(prefix="/api", tags=["tasks"], responses={**KEYED_RESPONSES, **problem_responses(404)})
TaskId = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("/tasks/{task_id}", response_model=TaskInfo)
def get_task(request: Request, task_id: TaskId, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Parameters, attempts, target queue, executed_by_app, timings, result; error traceback for admins."""
    task = request.app.state.runtime.store.get_task(task_id)
    return task_doc(task, admin=who.has("admin"))


def retry(request: Request, task_id: str) -> ActionResult:
    store = request.app.state.runtime.store
    task = store.get_task(task_id)
    if not store.retry_task(task_id):
        raise ApiError(409, "Conflict", f"task {task_id} is {task.status}; only a failed task of a job still at "
                       "its stage can be retried (resubmit the job instead)")
    return ActionResult(ok=True, detail="queued again", task_id=task_id, job_id=task.job_id, status="queued")


@router.post("/tasks/{task_id}/retry", response_model=ActionResult, responses=problem_responses(409))
def retry_task(request: Request, task_id: TaskId, _: Principal = Depends(require("submit"))) -> ActionResult:
    """One more attempt for a failed task; re-opens its stage, and its job if that stage failed it."""
    return retry(request, task_id)
