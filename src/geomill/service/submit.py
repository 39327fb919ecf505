"""Submission, one code path for every face: the job type's model validates (strictly: no coercion, no unknown
parameter), the path policy checks and normalises file parameters, the store creates the job (sync, or the HTTP
API's async store); an Idempotency-Key, scoped by the client that sent it, names it."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from geomill.domain import InvalidInput, NewJob, UnknownJobType
from geomill.engine.orchestrator import Submission, invalid_parameters, submitted
from geomill.engine.ports import AsyncStore
from geomill.engine.registry import JobType
from geomill.jobs.solve import JOB_TYPE as SOLVE_JOB_TYPE
from geomill.service.compute import new_solve_job
from geomill.service.paths import check_params

if TYPE_CHECKING:
    from geomill.config import Settings
    from geomill.runtime import Runtime

# drill job types (tests, chaos drills, benchmarks): unknown unless GEOMILL_DRILL_JOBS=true; over HTTP their folder
# parameters must stay inside the data folder
DRILL_JOB_TYPES: dict[str, tuple[str, ...]] = {"fanout": ("marker_dir",)}


def job_type_for(rt: Runtime, name: str) -> JobType:
    """The registered job type, UnknownJobType for a drill type while they are off (and never listing them)."""
    allowed = rt.settings.drill_jobs
    if name in DRILL_JOB_TYPES and not allowed:
        raise UnknownJobType(name, [jt.name for jt in rt.registry.job_types() if jt.name not in DRILL_JOB_TYPES])
    try:
        return rt.registry.job_type(name)
    except UnknownJobType as exc:
        raise UnknownJobType(name, [k for k in exc.known if allowed or k not in DRILL_JOB_TYPES]) from None


@functools.cache
def accepted_names(model: type[BaseModel]) -> frozenset[str]:
    """Top-level parameter names the model knows (fields and their aliases)."""
    return frozenset(n for name, f in model.model_fields.items() for n in (name, f.alias, f.validation_alias)
                     if isinstance(n, str))


def strict_check(model: type[BaseModel], params: dict[str, Any], *, types: bool) -> None:
    """InvalidInput naming each unknown parameter and, with `types`, each value strict JSON validation refuses:
    ``"5"`` or ``true`` for an integer, NaN or Infinity. The models stay lenient for stored parameters."""
    unknown = sorted(set(params) - accepted_names(model))
    if unknown:
        raise InvalidInput(f"invalid parameters: unknown {', '.join(unknown)}",
                           errors=[{"field": k, "message": "unknown parameter"} for k in unknown])
    if not types:
        return
    try:
        model.model_validate_json(json.dumps(params, allow_nan=False), strict=True)
    except ValueError as exc:  # ValidationError is one; json.dumps raises it for NaN/Infinity
        if not isinstance(exc, ValidationError):
            raise InvalidInput("invalid parameters: NaN and Infinity are not JSON", field="body") from None
        raise invalid_parameters(exc) from None


def state_files(settings: Settings) -> tuple[Path, ...]:
    """The SQLite state database (its journal files share its name), which no submission may name."""
    url = settings.resolved_database_url
    return (Path(url.removeprefix("sqlite:///")),) if url.startswith("sqlite:///") else ()


def prepare(rt: Runtime, job_type: str, params: dict[str, Any], *, restricted: bool,
            correlation_id: str | None = None, resubmit_of: str | None = None) -> NewJob:
    """The job to store: checked strictly, file parameters normalised, then validated by the job type's model
    (UnknownJobType, InvalidInput). CPU only, apart from resolving file paths."""
    model = job_type_for(rt, job_type).params_model
    # types strictly for HTTP only: the CLI's `-p key=value` guesses JSON, so `-p tag=123` arrives as an integer
    strict_check(model, params, types=restricted)
    if job_type == SOLVE_JOB_TYPE and resubmit_of is None:  # checked against its contract; id = the inputs hash
        return new_solve_job(rt, params, correlation_id=correlation_id)
    settings = rt.settings
    checked = check_params(params, model, rt.storage, restricted=restricted, source_roots=settings.source_roots,
                           denied=state_files(settings))
    if job_type in DRILL_JOB_TYPES:  # drill folders: inside the data folder only
        checked = check_params(checked, model, rt.storage, restricted=restricted, source_roots=[settings.data_dir],
                               denied=state_files(settings), fields=DRILL_JOB_TYPES[job_type])
    return rt.orchestrator.new_job(job_type, checked, resubmit_of=resubmit_of, correlation_id=correlation_id)


def scoped_key(idempotency_key: str, client: str | None) -> str:
    """An Idempotency-Key belongs to the client (API key) that sent it: another client's same spelling is
    another key."""
    return f"{client}:{idempotency_key}" if client else idempotency_key


def _same_request(rt: Runtime, idempotency_key: str, named: str, new: NewJob) -> Submission:
    """The job the key names, if this request is the one that key was first used for (the job id is a digest of
    the job type and canonical parameters); InvalidInput otherwise (IETF idempotency-key draft: 422)."""
    if named != new.job_id:
        raise InvalidInput(f"Idempotency-Key {idempotency_key!r} was already used for another request (job type "
                           "or parameters); send a new key for a new request", field="idempotency-key")
    return Submission(rt.store.get_job(named), False)


def submit(rt: Runtime, job_type: str, params: dict[str, Any], *, restricted: bool,
           correlation_id: str | None = None, idempotency_key: str | None = None, client: str | None = None,
           force: bool = False) -> Submission:
    """Store a job (the same type and parameters give back the existing one). With `idempotency_key` (scoped by
    `client`): the job the key already names when the request is the same (InvalidInput when it differs), else this
    submission, which the key then names. `force`: a finished existing job is run again as a fresh job."""
    new = prepare(rt, job_type, params, restricted=restricted, correlation_id=correlation_id)
    key = scoped_key(idempotency_key, client) if idempotency_key else None
    if key:
        existing = rt.store.job_for_idempotency_key(key)
        if existing is not None:
            return _same_request(rt, idempotency_key or "", existing, new)
    sub = submitted(*rt.store.create_job(new))
    if key:
        named = rt.store.remember_idempotency_key(key, sub.job.job_id)
        if named != sub.job.job_id:  # a concurrent submission with the same key won
            return _same_request(rt, idempotency_key or "", named, new)
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
