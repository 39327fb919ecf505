"""Job types, health and probes, Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from geomill.api.auth import Principal, optional_principal, require
from geomill.api.errors import problem_responses
from geomill.api.metrics import render_metrics
from geomill.api.models import Health, JobTypeInfo, QueuesHealth
from geomill.service import listing
from geomill.service.health import health_document, queues_document, ready
from geomill.service.submit import DRILL_JOB_TYPES

router = APIRouter(tags=["service"])


@router.get("/api/job-types", response_model=list[JobTypeInfo], responses=problem_responses(401, 403, 503))
def job_types(request: Request, _: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    """Each job type with its description, stages and the JSON Schema of its parameters."""
    hidden = () if request.app.state.settings.drill_jobs else tuple(DRILL_JOB_TYPES)
    return listing.job_types(request.app.state.runtime.registry, hidden)


@router.get("/api/health", response_model=Health, responses={503: {"model": Health}})
def health(request: Request, who: Principal | None = Depends(optional_principal)) -> JSONResponse:
    """Each component's state; 503 when the database or storage is down. Needs no key; details (paths, hosts,
    processes, errors) for admin keys only."""
    details = who is not None and who.has("admin")
    doc, down = health_document(request.app.state.runtime, request.app.state.role, details=details)
    return JSONResponse(Health.model_validate(doc).model_dump(mode="json"), status_code=503 if down else 200)


@router.get("/api/health/queues", response_model=QueuesHealth, responses=problem_responses(401, 403))
def health_queues(request: Request, _: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Each queue's depth (queued, ready, running, active; RabbitMQ's messages and consumers when configured) and
    the workers seen lately with their last heartbeat and the tasks they run now."""
    return queues_document(request.app.state.runtime)


@router.get("/livez", response_model=dict[str, str])
def livez() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=dict[str, str], responses={503: {"model": dict[str, str]}})
def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the database answers."""
    ok = ready(request.app.state.runtime)
    return JSONResponse({"status": "ok" if ok else "down"}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}, **problem_responses(503)})
def metrics(request: Request) -> Response:
    """Prometheus text format, computed from the database (so it covers every worker process)."""
    body, content_type = render_metrics(request.app.state.runtime.store)
    return Response(body, media_type=content_type)
