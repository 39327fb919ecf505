"""Solve one compute contract through the context's Solver, keep the outputs as an artifact in silver, and record
the result and artifact rows."""

from __future__ import annotations

import hashlib
import json

from geomill.engine.context import TaskContext
from geomill.tasks.solve.models import Artifact, SolveTaskParams, SolveTaskResult

OUTPUTS_NAME = "outputs.json"


def artifact_key(p: SolveTaskParams, job_id: str, name: str) -> str:
    """Where a solve's files go in silver: by definition, version and inputs hash (the job id; a re-run overwrites
    them with the same bytes)."""
    return f"compute/{p.definition}/{p.version}/{job_id}/{name}"


def solve(params: SolveTaskParams, ctx: TaskContext) -> SolveTaskResult:
    """Call the solver (InvalidInput, ContractViolation: at once; unreachable or 5xx: retried), then record."""
    outputs = ctx.solver.solve(params.definition, params.version, params.inputs)
    data = json.dumps(outputs, sort_keys=True, separators=(",", ":")).encode()
    uri = ctx.storage.uri_for("silver", artifact_key(params, ctx.job_id, OUTPUTS_NAME))
    ctx.storage.write_bytes(uri, data)
    artifact = Artifact(name=OUTPUTS_NAME, uri=uri, media_type="application/json", size_bytes=len(data),
                        sha256=hashlib.sha256(data).hexdigest())
    engine = outputs.get("metadata", {}).get("engine") or {"mode": ctx.solver.mode}
    result = SolveTaskResult(definition=params.definition, version=params.version,
                             contract_sha256=ctx.solver.contract_digest(params.definition, params.version),
                             engine=engine, outputs=outputs, artifacts=[artifact])
    ctx.records.save_compute_result(
        {"job_id": ctx.job_id, "app_id": params.app_id, **result.model_dump(exclude={"artifacts"})},
        [artifact.model_dump()])
    return result
