"""Compute contracts' use cases (the seed's `/jobs/run`, `/jobs/status`, `/jobs/result`): a run request is checked
against its contract before anything is stored, and stored as a `solve` job whose id is the inputs hash."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geomill.contracts import inputs_hash
from geomill.contracts.runner import check_submission
from geomill.domain import InvalidInput, NewJob, NotFinished, NotFound
from geomill.engine.orchestrator import Submission, parse_params, submitted
from geomill.jobs.solve import JOB_TYPE, SolveParams
from geomill.service import listing

if TYPE_CHECKING:
    from geomill.runtime import Runtime


def new_solve_job(rt: Runtime, params: dict[str, Any], *, correlation_id: str | None = None) -> NewJob:
    """The solve job to store: parameters checked (InvalidInput), the contract found (UnknownContract: NotFound),
    the inputs checked against it (InvalidInput with one error per field); its id is the inputs hash."""
    checked = parse_params(SolveParams, params)
    assert isinstance(checked, SolveParams)
    contract = rt.contracts.get(checked.definition, checked.version)
    if checked.contract_sha256 not in (None, contract.digest):  # the client pinned another text of this version
        raise InvalidInput(f"contract_sha256: {checked.definition} {checked.version} here is {contract.digest}, not "
                           f"{checked.contract_sha256}", field="contract_sha256")
    check_submission(contract, checked.inputs)
    job_id = inputs_hash(checked.definition, checked.version, checked.inputs)
    params = {**checked.model_dump(mode="json"), "contract_sha256": contract.digest}  # what the worker must match
    return NewJob(job_id, JOB_TYPE, params, 1, correlation_id=correlation_id)


def run(rt: Runtime, params: dict[str, Any], *, correlation_id: str | None = None) -> Submission:
    """Store a solve job (the same definition, version and inputs again: the existing job)."""
    return submitted(*rt.store.create_job(new_solve_job(rt, params, correlation_id=correlation_id)))


def solve_job(rt: Runtime, job_id: str) -> Any:
    """The solve job of that id; NotFound for an unknown id or a job of another type."""
    job = rt.store.get_job(job_id)
    if job.job_type != JOB_TYPE:
        raise NotFound(f"job {job_id} is a {job.job_type} job, not a solve job; see /api/jobs/status/{job_id}")
    return job


def run_status(rt: Runtime, job_id: str) -> dict[str, Any]:
    """The seed-shaped status of a solve job: contract, status, timings, attempts, error."""
    job = solve_job(rt, job_id)
    tasks = listing.list_tasks(rt.store, job_id, limit=1).items
    attempts = tasks[0]["attempt"] if tasks else 0
    return {"job_id": job.job_id, "inputs_hash": job.job_id if job.resubmit_of is None else None,
            "status": str(job.status), "app_id": job.params.get("app_id"), "definition": job.params["definition"],
            "version": job.params["version"], "attempts": attempts, "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at, "error": job.error}


def run_result(rt: Runtime, job_id: str) -> dict[str, Any]:
    """A finished solve job's outputs and artifacts (from the result tables), or its error; NotFinished while it
    runs."""
    job = solve_job(rt, job_id)
    if not job.status.is_terminal:
        raise NotFinished(f"job {job_id} is {job.status}; poll /jobs/status/{job_id}")
    record = rt.store.compute_result(job_id) or {}
    artifacts = [{**a, "href": rt.storage.href(a["uri"])} for a in record.get("artifacts", [])]
    return {"job_id": job_id, "status": str(job.status), "app_id": job.params.get("app_id"),
            "definition": job.params["definition"], "version": job.params["version"],
            "contract_sha256": record.get("contract_sha256"), "engine": record.get("engine"),
            "outputs": record.get("outputs"), "artifacts": artifacts, "error": job.error}
