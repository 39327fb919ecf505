"""Submission, one code path for every face: the job type's model validates, the path policy checks and normalises
file parameters, the store creates the job (sync, or the HTTP API's async store); an Idempotency-Key names it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geomill.domain import NewJob
from geomill.engine.orchestrator import Submission, submitted
from geomill.engine.ports import AsyncStore
from geomill.service.paths import check_params

if TYPE_CHECKING:
    from geomill.runtime import Runtime


def prepare(rt: Runtime, job_type: str, params: dict[str, Any], *, restricted: bool,
            correlation_id: str | None = None, resubmit_of: str | None = None) -> NewJob:
    """The job to store: file parameters checked and normalised, then validated once by the job type's model
    (UnknownJobType, InvalidInput). CPU only, apart from resolving file paths."""
    model = rt.registry.job_type(job_type).params_model
    checked = check_params(params, model, rt.storage, restricted=restricted, source_roots=rt.settings.source_roots)
    return rt.orchestrator.new_job(job_type, checked, resubmit_of=resubmit_of, correlation_id=correlation_id)


def submit(rt: Runtime, job_type: str, params: dict[str, Any], *, restricted: bool,
           correlation_id: str | None = None, idempotency_key: str | None = None, force: bool = False) -> Submission:
    """Store a job (the same type and parameters give back the existing one). With `idempotency_key`: the job the
    key already names, else this submission, which the key then names. `force`: a finished existing job is run
    again as a fresh job."""
    if idempotency_key:
        existing = rt.store.job_for_idempotency_key(idempotency_key)
        if existing is not None:
            return Submission(rt.store.get_job(existing), False)
    sub = submitted(*rt.store.create_job(
        prepare(rt, job_type, params, restricted=restricted, correlation_id=correlation_id)))
    if idempotency_key:
        named = rt.store.remember_idempotency_key(idempotency_key, sub.job.job_id)
        if named != sub.job.job_id:  # a concurrent submission with the same key won
            return Submission(rt.store.get_job(named), False)
    if force and not sub.created and sub.job.status.is_terminal:
        return resubmit(rt, sub.job.job_id, correlation_id)
    return sub


async def submit_async(rt: Runtime, store: AsyncStore, job_type: str, params: dict[str, Any], *,
                       restricted: bool, correlation_id: str | None = None) -> Submission:
    """`submit` without a key on an event loop: validation is CPU, the insert one statement of the async store."""
    new = prepare(rt, job_type, params, restricted=restricted, correlation_id=correlation_id)
    return submitted(*await store.create_job(new))


def resubmit(rt: Runtime, job_id: str, correlation_id: str | None = None) -> Submission:
    """A fresh run of a finished job (a new id; `resubmit_of` names the old one); InvalidInput while it runs."""
    return rt.orchestrator.resubmit(job_id, correlation_id=correlation_id)
