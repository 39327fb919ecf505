"""Documents the API returns, built from the engine's reports (progress, estimates, cursors)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from geomill.api.errors import ApiError
from geomill.engine.ports import JobView
from geomill.engine.report import report_from_view
from geomill.runtime import Runtime


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


def job_status(rt: Runtime, view: JobView, *, admin: bool = False) -> dict[str, Any]:
    """The status document of what `Store.job_view` (or its async form) read."""
    doc = report_from_view(view, rt.registry, admin=admin)
    for stage in doc["stages"]:
        stage.setdefault("planned", stage.get("total") is not None)
    doc["progress"] = overall_progress(doc)
    doc["estimated_completion"] = estimate(doc, doc["progress"])
    return doc


def encode_cursor(created_at: datetime, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, "Invalid input", "cursor: not a cursor this API returned",
                       errors=[{"field": "cursor", "message": "malformed"}]) from exc
