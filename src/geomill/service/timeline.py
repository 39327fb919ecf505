"""A job's timeline: each stage's task counts by status, first start, last finish, progress and ETA, aggregated by
the store (stage counters plus index lookups: the same cost for 10 or 100,000 tasks)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from geomill.domain import Job
from geomill.engine.ports import JobReads, StageTimes
from geomill.engine.registry import Registry
from geomill.engine.report import COUNTED, stage_doc

FINISHED = ("completed", "failed")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else max((end - start).total_seconds(), 0.0)


def stage_entry(times: StageTimes, now: datetime) -> dict[str, Any]:
    """One planned stage: counts, timings, progress (0..1) and ETA from the rate its tasks finished at so far."""
    base = stage_doc(times.stage)
    counts = {k: base[k] for k in COUNTED}
    finished = sum(counts[k] for k in FINISHED)
    total = times.stage.total
    open_tasks = counts["queued"] + counts["processing"]
    progress = 0.0 if base["planning"] else (1.0 if total == 0 else (total - open_tasks) / total)
    running = times.stage.completed_at is None and open_tasks > 0
    elapsed = _seconds(times.first_started_at, now if running else times.last_finished_at)
    rate = finished / elapsed if finished and elapsed else None
    eta = 0.0 if not running else (round(open_tasks / rate, 1) if rate and not base["planning"] else None)
    return {
        "stage": times.stage.stage, "name": base["name"], "planned": True, "planning": base["planning"],
        "failure_policy": base["failure_policy"], "total": total, "counts": counts,
        "created_at": base["started_at"], "completed_at": base["completed_at"],
        "first_started_at": _iso(times.first_started_at), "last_finished_at": _iso(times.last_finished_at),
        "progress": round(progress, 4), "tasks_per_second": round(rate, 3) if rate else None, "eta_seconds": eta,
    }


def _unplanned(stage: int, name: str) -> dict[str, Any]:
    return {"stage": stage, "name": name, "planned": False, "planning": False, "failure_policy": None, "total": None,
            "counts": dict.fromkeys(COUNTED, 0), "created_at": None, "completed_at": None, "first_started_at": None,
            "last_finished_at": None, "progress": 0.0, "tasks_per_second": None, "eta_seconds": None}


def _job_progress(job: Job, stages: list[dict[str, Any]]) -> float:
    """Finished stages count whole, a running one by its share of finished tasks (0..1)."""
    if job.status in ("completed", "completed_with_errors"):
        return 1.0
    return round(sum(s["progress"] for s in stages) / max(job.stage_count, 1), 4)


def _job_eta(job: Job, progress: float, stages: list[dict[str, Any]], now: datetime) -> float | None:
    """Seconds left: the current stage's rate-based ETA when it is the last, else a linear estimate from the job's
    progress so far (later stages are not planned yet, so their size is unknown); None before any progress."""
    if job.status.is_terminal:
        return 0.0
    if job.stage == job.stage_count and stages and stages[-1]["eta_seconds"] is not None:
        return float(stages[-1]["eta_seconds"])
    started = job.started_at or job.created_at
    if progress <= 0 or started is None:
        return None
    elapsed = (now - started).total_seconds()
    return round(elapsed * (1.0 - progress) / progress, 1)


def job_timeline(store: JobReads, registry: Registry, job_id: str) -> dict[str, Any]:
    """The timeline document of a job (NotFound for an unknown id)."""
    job = store.get_job(job_id)
    now = datetime.now(UTC)
    planned = [stage_entry(t, now) for t in store.stage_timeline(job_id)]
    seen = {s["stage"] for s in planned}
    names = _stage_names(registry, job.job_type)
    stages = sorted(planned + [_unplanned(k, n) for k, n in enumerate(names, 1) if k not in seen],
                    key=lambda s: s["stage"])
    progress = _job_progress(job, stages)
    totals = {k: sum(s["counts"][k] for s in stages) for k in COUNTED}
    return {
        "job_id": job.job_id, "job_type": job.job_type, "status": str(job.status), "stage": job.stage,
        "stage_count": job.stage_count, "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at), "counts": totals, "total_tasks": sum(totals.values()),
        "progress": progress, "eta_seconds": _job_eta(job, progress, stages, now), "stages": stages,
    }


def _stage_names(registry: Registry, job_type: str) -> list[str]:
    try:
        return [s.name for s in registry.job_type(job_type).stages]
    except Exception:  # noqa: BLE001 (a job whose type is no longer registered still has a timeline)
        return []
