"""Deterministic ids: the same request always names the same job, the same task key the same task."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace, so equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def make_job_id(job_type: str, params: dict[str, Any], lineage: str | None = None) -> str:
    """sha256 of canonical {job_type, params}; a resubmit adds its lineage so it gets a fresh id."""
    doc: dict[str, Any] = {"job_type": job_type, "params": params}
    if lineage is not None:
        doc["resubmit_of"] = lineage
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def make_task_id(job_id: str, stage: int, task_key: str) -> str:
    """A task id derived from its job, stage number and key within the stage."""
    raw = f"{job_id}:{stage}:{task_key}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]
