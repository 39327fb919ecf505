"""Job types, health and probes, Prometheus metrics."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from geomill.api.auth import Principal, require
from geomill.api.errors import problem_responses
from geomill.api.metrics import render_metrics
from geomill.api.models import Health, JobTypeInfo
from geomill.runtime import Runtime
from geomill.storage import ZONES
from geomill.roles import Role

router = APIRouter(tags=["service"])
WORKERS_SEEN_WITHIN = 30.0


@router.get("/api/job-types", response_model=list[JobTypeInfo], responses=problem_responses(401, 403, 503))
def job_types(request: Request, _: Principal = Depends(require("read"))) -> list[dict[str, Any]]:
    """Each job type with its description, stages and the JSON Schema of its parameters."""
    return [
        {"name": jt.name, "description": jt.description,
         "stages": [{"name": s.name, "description": s.description, "failure_policy": str(s.failure_policy)}
                    for s in jt.stages],
         "parameters": jt.params_model.model_json_schema()}
        for jt in request.app.state.runtime.registry.job_types()
    ]


def _check(fn: Any) -> dict[str, Any]:
    try:
        return {"status": "ok", **(fn() or {})}
    except Exception as exc:  # a health check reports failures; it never raises
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"}


def _database(rt: Runtime) -> dict[str, Any]:
    return {"backend": rt.store.dialect, "schema_version": rt.store.schema_version()}


def _storage(rt: Runtime) -> dict[str, Any]:
    for zone in ZONES:
        with tempfile.NamedTemporaryFile(dir=rt.storage.zone_path(zone), prefix=".health-"):
            pass
    return {"backend": "local", "root": str(rt.storage.root)}


def _dispatch(rt: Runtime) -> dict[str, Any]:
    settings = rt.settings
    if not settings.broker_url:
        return {"backend": type(rt.dispatch).__name__}
    from geomill.dispatch.rabbitmq import queue_stats
    from geomill.roles import MODE_QUEUES, AppMode

    queues = MODE_QUEUES[AppMode.STANDALONE]
    return {"backend": "rabbitmq", "queues": queue_stats(settings.broker_url, queues, settings.queue_names)}


def _workers(rt: Runtime) -> dict[str, Any]:
    workers = rt.store.list_workers(WORKERS_SEEN_WITHIN)
    queues = sorted({q for w in workers for q in w.get("queues", [])})
    return {"seen_within_seconds": WORKERS_SEEN_WITHIN, "count": len(workers), "queues": queues,
            "workers": [{k: w.get(k) for k in ("worker_id", "mode", "queues", "processes", "last_seen_at")}
                        for w in workers]}


def health_document(rt: Runtime, role: Role, *, has_http: bool = True) -> tuple[dict[str, Any], int]:
    """Every component's state and the overall status with its HTTP code (503 when a required one is down:
    the database, the storage, and the broker when one is configured)."""
    settings = rt.settings
    components = {
        "database": _check(lambda: _database(rt)),
        "storage": _check(lambda: _storage(rt)),
        "dispatch": _check(lambda: _dispatch(rt)),
        "workers": _check(lambda: _workers(rt)),
        "app_mode": {"status": "ok", **role.describe(settings), "has_http": has_http, "pid": os.getpid()},
        "auth": {"status": "disabled" if settings.auth_disabled else "ok", "api_keys_required":
                 not settings.auth_disabled},
    }
    if components["workers"].get("count") == 0:
        components["workers"]["status"] = "degraded"
    required = ("database", "storage", "dispatch") if settings.broker_url else ("database", "storage")
    required_down = any(components[c]["status"] == "down" for c in required)
    degraded = any(c["status"] in ("degraded", "down") for c in components.values())
    overall = "down" if required_down else ("degraded" if degraded else "ok")
    return {"status": overall, "components": components}, (503 if required_down else 200)


@router.get("/api/health", response_model=Health, responses={503: {"model": Health}})
def health(request: Request) -> JSONResponse:
    """Each component's state; 503 when the database or storage is down. Needs no key."""
    doc, status = health_document(request.app.state.runtime, request.app.state.role)
    return JSONResponse(Health.model_validate(doc).model_dump(mode="json"), status_code=status)


@router.get("/livez", response_model=dict[str, str])
def livez() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", response_model=dict[str, str], responses={503: {"model": dict[str, str]}})
def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the database answers."""
    state = _check(lambda: _database(request.app.state.runtime))
    return JSONResponse({"status": state["status"]}, status_code=200 if state["status"] == "ok" else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}, **problem_responses(503)})
def metrics(request: Request) -> Response:
    """Prometheus text format, computed from the database (so it covers every worker process)."""
    body, content_type = render_metrics(request.app.state.runtime.store)
    return Response(body, media_type=content_type)
