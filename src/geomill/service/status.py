"""The status document of a job: stages with task counts, progress and a completion estimate (CLI and API)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from geomill.engine.ports import AsyncStore, JobView, Store
from geomill.engine.registry import Registry
from geomill.engine.report import report_from_view


def overall_progress(doc: dict[str, Any]) -> float:
    """Percent done: finished stages count whole, the current stage by its share of finished tasks."""
    if doc["status"] in ("completed", "completed_with_errors"):
        return 100.0
    count = doc["stage_count"] or 1
    done_stages = max(doc["stage"] - 1, 0)
    current = next((s for s in doc["stages"] if s["stage"] == doc["stage"] and s.get("total") is not None), None)
    share = (current["progress"] / 100.0) if current else 0.0
    return round(100.0 * (done_stages + share) / count, 1)


def estimate(doc: dict[str, Any], progress: float) -> datetime | None:
    """A linear estimate of completion while the job runs (None before any progress)."""
    if doc["status"] != "processing" or not doc["started_at"] or progress <= 0:
        return None
    started = datetime.fromisoformat(doc["started_at"])
    elapsed = (datetime.now(UTC) - started).total_seconds()
    return started + timedelta(seconds=elapsed * 100.0 / progress)


def status_document(registry: Registry, view: JobView, *, admin: bool = False) -> dict[str, Any]:
    """The status document of what `Store.job_view` (or its async form) read; tracebacks for admins only."""
    doc = report_from_view(view, registry, admin=admin)
    for stage in doc["stages"]:
        stage.setdefault("planned", stage.get("total") is not None)
    doc["progress"] = overall_progress(doc)
    doc["estimated_completion"] = estimate(doc, doc["progress"])
    return doc


def job_status(store: Store, registry: Registry, job_id: str, *, admin: bool = False) -> dict[str, Any]:
    """A job's status document (NotFound for an unknown id)."""
    return status_document(registry, store.job_view(job_id), admin=admin)


async def job_status_async(store: AsyncStore, registry: Registry, job_id: str, *,
                           admin: bool = False) -> dict[str, Any]:
    """`job_status` on an event loop: one read of the async store, no thread hop."""
    return status_document(registry, await store.job_view(job_id), admin=admin)
