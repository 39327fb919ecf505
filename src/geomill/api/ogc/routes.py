"""OGC API - Processes - Part 1 at ``/ogc``: landing page, conformance, the API definition, processes (the job
types), execute, jobs, results, dismiss; JSON or HTML. The calls go to the service layer like the JSON API's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.responses import Response

from geomill.api.auth import Principal, require
from geomill.api.body import parse_object
from geomill.api.errors import ApiError
from geomill.api.ogc import documents, openapi30
from geomill.api.ogc import vocabulary as v
from geomill.api.ogc.callbacks import composer
from geomill.api.ogc.execute import ExecuteRequest, read_execute
from geomill.api.ogc.render import respond
from geomill.domain import InvalidInput, JobStatus, NotFinished, NotFound, UnknownJobType
from geomill.runtime import Runtime
from geomill.service import callbacks, listing, operations
from geomill.service.listing import MAX_PAGE
from geomill.service.status import job_status_async
from geomill.service.submit import DRILL_JOB_TYPES, job_type_for, submit_async

PREFIX = "/ogc"
SYNC_POLL_SECONDS = 0.1


@asynccontextmanager
async def deliver_callbacks(app: FastAPI) -> AsyncIterator[None]:
    """Every HTTP process runs a callback deliverer; the database's leadership lets one of them deliver."""
    rt: Runtime = app.state.runtime
    settings = app.state.settings
    base = (settings.public_url or "").rstrip("/") + PREFIX
    deliverer = callbacks.CallbackDeliverer(rt.store, rt.registry, composer(base), settings.app_name)
    deliverer.start()
    try:
        yield
    finally:
        await run_in_threadpool(deliverer.stop)


router = APIRouter(prefix=PREFIX, tags=["OGC API - Processes"], lifespan=deliver_callbacks)
JSON_OR_HTML: dict[int | str, dict[str, Any]] = {200: {"description": "JSON, or HTML (?f=html or Accept: text/html)",
                      "content": {v.JSON: {"schema": {"type": "object"}}, v.HTML: {"schema": {"type": "string"}}}}}
F = Annotated[str | None, Query(description="json or html (default: by the Accept header)")]


def base(request: Request) -> str:
    """``/ogc`` under GEOMILL_PUBLIC_URL, or under the proxy's root path (relative links)."""
    public = request.app.state.settings.public_url
    return (public.rstrip("/") if public else request.scope.get("root_path", "")) + PREFIX


def _rt(request: Request) -> Runtime:
    return request.app.state.runtime


def _page(request: Request, doc: dict[str, Any], template: str, status_code: int = 200,
          headers: dict[str, str] | None = None, **context: Any) -> Response:
    return respond(request, doc, template, status_code, headers, base=base(request), **context)


def no_such_job(job_id: str) -> ApiError:
    return ApiError(404, "No such job", f"no job {job_id}", type=v.NO_SUCH_JOB)


def _job_id(job_id: str) -> str:
    if len(job_id) != 64 or any(c not in "0123456789abcdef" for c in job_id):
        raise no_such_job(job_id)
    return job_id


def _visible_job_types(request: Request) -> list[dict[str, Any]]:
    hidden = () if request.app.state.settings.drill_jobs else tuple(DRILL_JOB_TYPES)
    return listing.job_types(_rt(request).registry, hidden)


def _job_type_doc(request: Request, process_id: str) -> dict[str, Any]:
    found = next((jt for jt in _visible_job_types(request) if jt["name"] == process_id), None)
    if found is None:
        raise ApiError(404, "No such process", f"no process {process_id!r}", type=v.NO_SUCH_PROCESS)
    return found


@router.get("", response_model=None, responses=JSON_OR_HTML)
def landing_page(request: Request, f: F = None) -> Response:
    """The landing page: links to the API definition, conformance, processes and jobs. Needs no key."""
    return _page(request, documents.landing(base(request)), "landing.html")


@router.get("/conformance", response_model=None, responses=JSON_OR_HTML)
def conformance(request: Request, f: F = None) -> Response:
    """The conformance classes this API claims (each is tested). Needs no key."""
    return _page(request, documents.conformance(base(request)), "conformance.html")


@router.get("/api", response_model=None, responses={200: {
    "description": "the OpenAPI 3.0 document of this API", "content": {v.OPENAPI_JSON: {}, v.HTML: {}}}})
def api_definition(request: Request, f: F = None) -> Response:
    """The OpenAPI 3.0 definition of the OGC routes (HTML: a pointer to the interactive docs). Needs no key."""
    if request.query_params.get("f") == "html" or (f is None and "text/html" in request.headers.get("accept", "")):
        docs = (request.app.state.settings.public_url or request.scope.get("root_path", "")).rstrip("/") + "/docs"
        return HTMLResponse(f'<!doctype html><title>API</title><p>OpenAPI 3.0: <a href="{base(request)}/api?f=json">'
                            f'JSON</a>; interactive documentation of the whole API: <a href="{docs}">{docs}</a></p>')
    state = request.app.state
    if getattr(state, "ogc_openapi", None) is None:
        state.ogc_openapi = openapi30.document(router.routes, version=request.app.version,
                                               secured=not state.settings.auth_disabled)
    return JSONResponse(state.ogc_openapi, media_type=v.OPENAPI_JSON)


@router.get("/processes", response_model=None, responses=JSON_OR_HTML)
def processes(request: Request, f: F = None, _: Principal = Depends(require("read"))) -> Response:
    """Each job type as a process summary."""
    b = base(request)
    doc = {"processes": [documents.process_summary(b, jt) for jt in _visible_job_types(request)],
           "links": documents.self_links(f"{b}/processes", "processes")}
    return _page(request, doc, "processes.html")


@router.get("/processes/{process_id}", response_model=None, responses=JSON_OR_HTML)
def process(request: Request, process_id: Annotated[str, Path(max_length=100)], f: F = None,
            _: Principal = Depends(require("read"))) -> Response:
    """A process description: inputs from the job type's parameter schema, one output (the job's result)."""
    return _page(request, documents.process_description(base(request), _job_type_doc(request, process_id)),
                 "process.html")


def _prefers(prefer: str | None, token: str) -> bool:
    return any(p.split(";", 1)[0].strip().lower() == token for p in (prefer or "").split(","))


@router.post("/processes/{process_id}/execution", response_model=None, status_code=201, responses={
    200: {"description": "respond-sync: the results", "content": {v.JSON: {"schema": {"type": "object"}}}},
    201: {"description": "the job (statusInfo); Location names it", "content": {v.JSON: {"schema": {
        "type": "object"}}}}},
    openapi_extra={"requestBody": {"required": True, "content": {v.JSON: {"schema": {"type": "object"}}}}})
async def execute(request: Request, process_id: Annotated[str, Path(max_length=100)],
                  prefer: Annotated[str | None, Header(max_length=200)] = None,
                  _: Principal = Depends(require("submit"))) -> Response:
    """Execute: asynchronously by default (201, Location of the job); with ``Prefer: respond-sync`` wait up to
    GEOMILL_OGC_SYNC_SECONDS for the results, else answer as async (Preference-Applied says which)."""
    rt, state = _rt(request), request.app.state
    try:
        job_type_for(rt, process_id)
    except UnknownJobType:
        raise ApiError(404, "No such process", f"no process {process_id!r}", type=v.NO_SUCH_PROCESS) from None
    body = read_execute(parse_object(await request.body(), request.headers.get("content-type")))
    try:
        sub = await submit_async(rt, state.async_store, process_id, body.inputs, restricted=True,
                                 correlation_id=request.state.correlation_id)
    except InvalidInput as exc:  # the spec answers invalid inputs with 400
        raise ApiError(400, "Invalid input", str(exc), errors=exc.errors or []) from None
    while not sub.created and sub.job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        # the same inputs name the same job: one that failed or was dismissed is run again (a resubmission,
        # or the existing resubmission of it); a successful one is answered as it is
        sub = await run_in_threadpool(operations.resubmit, rt, sub.job.job_id, request.state.correlation_id)
    job_id = sub.job.job_id
    if body.subscriber:
        await run_in_threadpool(callbacks.subscribe, rt.store, job_id, *body.subscriber)
    doc = await job_status_async(state.async_store, rt.registry, job_id)
    if _prefers(prefer, "respond-sync"):
        deadline = time.monotonic() + state.settings.ogc_sync_seconds
        while doc["status"] in ("queued", "processing") and time.monotonic() < deadline:
            await asyncio.sleep(SYNC_POLL_SECONDS)
            doc = await job_status_async(state.async_store, rt.registry, job_id)
        if doc["status"] not in ("queued", "processing", "cancelled"):
            return _finished(request, doc, body)
    location = f"{base(request)}/jobs/{job_id}"
    headers = {"Location": location}
    if _prefers(prefer, "respond-sync") or _prefers(prefer, "respond-async"):
        headers["Preference-Applied"] = "respond-async"
    return JSONResponse(documents.status_info(base(request), doc), status_code=201, headers=headers)


def _finished(request: Request, doc: dict[str, Any], body: ExecuteRequest) -> Response:
    """The synchronous answer of a finished job: its results (raw: the value alone), or its failure."""
    headers = {"Preference-Applied": "respond-sync", "Location": f"{base(request)}/jobs/{doc['job_id']}"}
    if doc["status"] == "failed":
        raise ApiError(500, "Job failed", documents.message(doc), type=v.JOB_FAILED, jobID=doc["job_id"])
    results = documents.results(doc)
    value = results[documents.OUTPUT_ID]["value"] if body.response == "raw" else results
    return JSONResponse(value, headers=headers)


@router.get("/jobs", response_model=None, responses=JSON_OR_HTML)
def jobs(request: Request, f: F = None,
         limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 10,
         process_id: Annotated[str | None, Query(alias="processID", max_length=100)] = None,
         status: Annotated[str | None, Query(max_length=20)] = None,
         cursor: Annotated[str | None, Query(max_length=500)] = None,
         _: Principal = Depends(require("read"))) -> Response:
    """Jobs newest first as statusInfo, filtered by processID and status (one each); `next` links page on."""
    if status is not None and status not in v.JOB_STATUS_FOR:
        raise ApiError(400, "Bad request", f"status: one of {', '.join(v.JOB_STATUS_FOR)}",
                       errors=[{"field": "query.status", "message": "unknown status"}])
    page = listing.list_jobs(_rt(request).store, status=v.JOB_STATUS_FOR[status] if status else None,
                             job_type=process_id, limit=limit, cursor=cursor)
    query = None
    if page.next_cursor:
        kept = {"limit": str(limit), "processID": process_id, "status": status, "f": f, "cursor": page.next_cursor}
        query = urlencode({k: val for k, val in kept.items() if val})
    return _page(request, documents.job_list(base(request), page.items, query), "jobs.html")


async def _job_doc(request: Request, job_id: str) -> dict[str, Any]:
    state = request.app.state
    try:
        return await job_status_async(state.async_store, state.runtime.registry, _job_id(job_id))
    except NotFound:
        raise no_such_job(job_id) from None


@router.get("/jobs/{job_id}", response_model=None, responses=JSON_OR_HTML)
async def job(request: Request, job_id: Annotated[str, Path(max_length=100)], f: F = None,
              _: Principal = Depends(require("read"))) -> Response:
    """A job's statusInfo."""
    return _page(request, documents.status_info(base(request), await _job_doc(request, job_id)), "job.html")


@router.get("/jobs/{job_id}/results", response_model=None, responses=JSON_OR_HTML)
def results(request: Request, job_id: Annotated[str, Path(max_length=100)], f: F = None,
            _: Principal = Depends(require("read"))) -> Response:
    """A successful job's results; 404 result-not-ready while it runs, the job's exception when it failed."""
    try:
        doc = listing.job_result(_rt(request).store, _job_id(job_id))
    except NotFound:
        raise no_such_job(job_id) from None
    except NotFinished:
        raise ApiError(404, "Result not ready", f"job {job_id} is still running; follow its status",
                       type=v.RESULT_NOT_READY) from None
    if doc["status"] == "failed":
        message = str((doc["error"] or {}).get("message") or "the job failed")
        raise ApiError(500, "Job failed", message, type=v.JOB_FAILED, jobID=job_id)
    if doc["status"] == "cancelled":
        raise ApiError(404, "Result not ready", f"job {job_id} was dismissed: it has no results",
                       type=v.RESULT_NOT_READY)
    return _page(request, documents.results(doc), "results.html", job_id=job_id)


@router.delete("/jobs/{job_id}", response_model=None, responses=JSON_OR_HTML)
async def dismiss(request: Request, job_id: Annotated[str, Path(max_length=100)], f: F = None,
                  _: Principal = Depends(require("submit"))) -> Response:
    """Dismiss a running or queued job (cancel it); its statusInfo, status dismissed. A finished job stays (409)."""
    try:
        await run_in_threadpool(operations.cancel, _rt(request).store, _job_id(job_id))
    except NotFound:
        raise no_such_job(job_id) from None
    return _page(request, documents.status_info(base(request), await _job_doc(request, job_id)), "job.html")
