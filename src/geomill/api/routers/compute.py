"""Compute contracts, on the seed's paths: `POST /jobs/run`, `GET /jobs/status/{id}`, `GET /jobs/result/{id}`
(the same keys and scopes as /api/jobs). The job id is the inputs hash."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from geomill.api.auth import Principal, require
from geomill.api.body import parse_object
from geomill.api.errors import KEYED_RESPONSES, problem_responses
from geomill.jobs.solve import SolveParams
from geomill.service import compute

router = APIRouter(prefix="/jobs", tags=["compute"], responses=KEYED_RESPONSES)
JobId = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="the job id: the inputs hash (sha256 hex)")]
RUN_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    **SolveParams.model_json_schema(), "additionalProperties": False,
    "description": "the inputs must also conform to the named contract's inputs.schema.json (docs/contracts.md)"}}}}}


class RunResponse(BaseModel):
    job_id: str = Field(description="the inputs hash: sha256 of the canonical {definition, version, inputs}")
    inputs_hash: str
    status: str
    created: bool = Field(description="false when the same request was already a job")
    status_url: str
    result_url: str


class RunStatus(BaseModel):
    job_id: str
    inputs_hash: str | None
    status: str
    app_id: str | None
    definition: str
    version: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: dict[str, Any] | None


class Artifact(BaseModel):
    name: str
    uri: str
    href: str
    media_type: str
    size_bytes: int
    sha256: str
    created_at: datetime | None


class RunResult(BaseModel):
    job_id: str
    status: str
    app_id: str | None
    definition: str
    version: str
    contract_sha256: str | None
    engine: dict[str, Any] | None
    outputs: dict[str, Any] | None = Field(description="the solver's outputs, conforming to the outputs schema")
    artifacts: list[Artifact]
    error: dict[str, Any] | None


def _base(request: Request) -> str:
    public = request.app.state.settings.public_url
    return public.rstrip("/") if public else request.scope.get("root_path", "")


@router.post("/run", status_code=202, response_model=RunResponse, openapi_extra=RUN_BODY,
             responses={200: {"model": RunResponse, "description": "the same request was already a job"},
                        **problem_responses(400, 404, 413, 415)})
async def run_job(request: Request, response: Response, _: Principal = Depends(require("submit"))) -> RunResponse:
    """Run a compute contract: 202 created, 200 for a request already made (same definition, version, inputs),
    422 with one error per invalid field (nothing stored), 404 for an unknown contract."""
    rt, cid = request.app.state.runtime, request.state.correlation_id
    params = parse_object(await request.body(), request.headers.get("content-type"))
    sub = await run_in_threadpool(lambda: compute.run(rt, params, correlation_id=cid))
    response.status_code = 202 if sub.created else 200
    job_id, base = sub.job.job_id, _base(request)
    return RunResponse(job_id=job_id, inputs_hash=job_id, status=str(sub.job.status), created=sub.created,
                       status_url=f"{base}/jobs/status/{job_id}", result_url=f"{base}/jobs/result/{job_id}")


@router.get("/status/{job_id}", response_model=RunStatus, responses=problem_responses(404))
def run_status(request: Request, job_id: JobId, _: Principal = Depends(require("read"))) -> dict[str, Any]:
    """A solve job's status, attempts and error."""
    return compute.run_status(request.app.state.runtime, job_id)


@router.get("/result/{job_id}", response_model=RunResult, responses=problem_responses(404, 409))
def run_result(request: Request, job_id: JobId, _: Principal = Depends(require("read"))) -> dict[str, Any]:
    """A finished solve job's outputs and artifacts (media type, size, sha256), or its error; 409 while it runs."""
    return compute.run_result(request.app.state.runtime, job_id)
