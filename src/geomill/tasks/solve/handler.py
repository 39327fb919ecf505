"""Solve one compute contract through the context's Solver, keep the outputs as an artifact in silver, and record
the result and artifact rows."""

from __future__ import annotations

import hashlib
import json

from geomill.domain import PermanentError
from geomill.engine.context import TaskContext
from geomill.tasks.solve.models import Artifact, SolveTaskParams, SolveTaskResult

OUTPUTS_NAME = "outputs.json"


def artifact_key(p: SolveTaskParams, job_id: str, name: str) -> str:
    """Where a solve's files go in silver: by definition, version and inputs hash (the job id; a re-run overwrites
    them with the same bytes)."""
    return f"compute/{p.definition}/{p.version}/{job_id}/{name}"


def solve(params: SolveTaskParams, ctx: TaskContext) -> SolveTaskResult:
    """Call the solver (InvalidInput, ContractViolation: at once; unreachable or 5xx: retried), keep the outputs and
    the contract's derived files in silver, then record the result and artifact rows."""
    digest = ctx.solver.contract_digest(params.definition, params.version)
    if params.contract_sha256 and digest != params.contract_sha256:  # a version is immutable: refuse a changed one
        raise PermanentError(f"contract {params.definition} {params.version} here (sha256 {digest[:12]}…) is not the "
                             f"one the inputs were checked against ({params.contract_sha256[:12]}…): a version must "
                             "not change; publish a new version and deploy the same folder everywhere")
    outputs = ctx.solver.solve(params.definition, params.version, params.inputs)
    files = [(OUTPUTS_NAME, "application/json", json.dumps(outputs, sort_keys=True, separators=(",", ":")).encode()),
             *ctx.solver.artifacts(params.definition, params.version, params.inputs, outputs)]
    artifacts = [store_artifact(ctx, artifact_key(params, ctx.job_id, name), name, media_type, data)
                 for name, media_type, data in files]
    engine = outputs.get("metadata", {}).get("engine") or {"mode": ctx.solver.mode}
    result = SolveTaskResult(definition=params.definition, version=params.version,
                             contract_sha256=digest,
                             engine=engine, outputs=outputs, artifacts=artifacts)
    ctx.records.save_compute_result(
        {"job_id": ctx.job_id, "app_id": params.app_id, **result.model_dump(exclude={"artifacts"})},
        [a.model_dump() for a in artifacts])
    return result


def store_artifact(ctx: TaskContext, key: str, name: str, media_type: str, data: bytes) -> Artifact:
    """Write one file to silver (atomically, by the storage) and describe it."""
    uri = ctx.storage.uri_for("silver", key)
    ctx.storage.write_bytes(uri, data)
    return Artifact(name=name, uri=uri, media_type=media_type, size_bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest())
