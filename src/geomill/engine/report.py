"""A job's progress as one JSON-ready document: what `geomill status` (and later the API) shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from geomill.domain import Job, Stage, Task
from geomill.engine.ports import JobView, Store
from geomill.engine.registry import Registry

COUNTED = ("queued", "processing", "completed", "failed", "cancelled")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return round(((end or datetime.now(UTC)) - start).total_seconds(), 3)


def stage_doc(stage: Stage, spec_name: str | None = None) -> dict[str, Any]:
    counts = {k: stage.counts.get(k, 0) for k in COUNTED}
    planning = not stage.sealed  # tasks still being inserted: `total` is what is in so far, not the stage's size
    done = stage.total - stage.remaining + (1 if planning else 0)  # `remaining` holds the plan's token until sealed
    progress = 100.0 * done / stage.total if stage.total else 100.0
    return {
        "stage": stage.stage, "name": spec_name or stage.name, "failure_policy": str(stage.failure_policy),
        "total": stage.total, "done": done, "planning": planning, **counts,
        # the size of a stage being planned is unknown: its share of the job is not counted until sealed
        "progress": 0.0 if planning else round(progress, 1),
        "started_at": _iso(stage.created_at), "completed_at": _iso(stage.completed_at),
        "seconds": _duration(stage.created_at, stage.completed_at),
    }


def job_doc(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id, "job_type": job.job_type, "status": str(job.status), "params": job.params,
        "stage": job.stage, "stage_count": job.stage_count, "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
        "seconds": _duration(job.started_at or job.created_at, job.finished_at),
        "resubmit_of": job.resubmit_of, "advances": job.advances, "correlation_id": job.correlation_id, "result": job.result, "error": job.error,
    }


ERROR_SUMMARY_CHARS = 200


def error_summary(error: dict[str, Any] | None) -> str | None:
    """``type: message``, first line, at most ERROR_SUMMARY_CHARS characters: what a task list row shows."""
    if not error:
        return None
    kind, message = error.get("type"), str(error.get("message") or "").strip().splitlines()
    text = f"{kind}: {message[0]}" if kind and message else (kind or (message[0] if message else ""))
    return text[:ERROR_SUMMARY_CHARS] or None


def task_doc(task: Task, *, admin: bool = False) -> dict[str, Any]:
    error = dict(task.error) if task.error else None
    if error and not admin:
        error.pop("traceback", None)
    run_seconds = (_duration(task.execution_started_at, task.finished_at)
                   if task.finished_at and task.execution_started_at else None)
    return {
        "created_at": _iso(task.created_at), "available_at": _iso(task.available_at),
        "duration_seconds": run_seconds, "error_summary": error_summary(task.error),
        "task_id": task.task_id, "job_id": task.job_id, "stage": task.stage, "task_key": task.task_key,
        "task_type": task.task_type, "status": str(task.status), "attempt": task.attempt,
        "max_attempts": task.max_attempts, "target_queue": task.target_queue,
        "executed_by_app": task.executed_by_app, "execution_started_at": _iso(task.execution_started_at),
        "finished_at": _iso(task.finished_at), "progress": task.progress, "progress_message": task.progress_message,
        "params": task.params, "result": task.result, "error": error, "correlation_id": task.correlation_id,
    }


def job_report(store: Store, registry: Registry, job_id: str) -> dict[str, Any]:
    """Job, stages with per-status task counts and timings, failed tasks' errors."""
    return report_from_view(store.job_view(job_id), registry)


def report_from_view(view: JobView, registry: Registry, *, admin: bool = False) -> dict[str, Any]:
    """The report of what `Store.job_view` read (tracebacks of failed tasks for admins only)."""
    job = view.job
    names = _stage_names(registry, job.job_type)
    doc = job_doc(job)
    doc["stage_name"] = names[job.stage - 1] if 0 < job.stage <= len(names) else None
    doc["stages"] = [stage_doc(s) for s in view.stages]
    planned = {s.stage for s in view.stages}
    doc["stages"] += [{"stage": k, "name": n, "total": None, "planned": False}
                      for k, n in enumerate(names, 1) if k not in planned]
    doc["failed_tasks"] = [task_doc(t, admin=admin) for t in view.failed_tasks]
    doc["running_tasks"] = [task_doc(t) for t in view.running_tasks]
    return doc


def _stage_names(registry: Registry, job_type: str) -> list[str]:
    try:
        return [s.name for s in registry.job_type(job_type).stages]
    except Exception:  # a job whose type is no longer registered still reports
        return []
