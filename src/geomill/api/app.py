"""The FastAPI application: settings and runtime on `app.state`, middleware, routers, error handlers."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geomill import __version__
from geomill.api import errors
from geomill.api.routers import debug, jobs, meta, tasks
from geomill.config import Settings
from geomill.runtime import Runtime
from geomill.worker.logs import correlation_id_var
from geomill.worker.roles import Role, resolve_role

log = logging.getLogger(__name__)
CORRELATION_HEADER = "X-Correlation-ID"


def create_app(settings: Settings, runtime: Runtime | None = None, role: Role | None = None,
               on_startup: Callable[[Runtime], None] | None = None,
               on_shutdown: Callable[[Runtime], None] | None = None) -> FastAPI:
    """The API over `runtime` (opened from `settings` when not given). `on_startup`/`on_shutdown` let
    `geomill serve` start and drain its worker pool with the server."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.open(settings)
        app.state.runtime = rt
        if on_startup:
            on_startup(rt)
        try:
            yield
        finally:
            if on_shutdown:
                on_shutdown(rt)
            if runtime is None:
                rt.close()

    app = FastAPI(title="geomill", version=__version__, lifespan=lifespan,
                  description="Submit, track and operate geospatial processing jobs.",
                  responses=errors.PROBLEM_RESPONSES)  # type: ignore[arg-type]
    app.state.settings = settings
    app.state.role = role or resolve_role(settings.app_mode, settings.queues or None)
    if runtime is not None:
        app.state.runtime = runtime
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.middleware("http")(correlation_id)
    for router in (jobs.router, tasks.router, meta.router, debug.router):
        app.include_router(router)
    _add_problem_schema(app)
    return app


async def correlation_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Take X-Correlation-ID (or make one), expose it to handlers and logs, and return it."""
    given = request.headers.get(CORRELATION_HEADER, "")
    cid = given if given and len(given) <= 128 and given.isprintable() else uuid.uuid4().hex
    request.state.correlation_id = cid
    token = correlation_id_var.set(cid)
    try:
        response = await call_next(request)
    finally:
        correlation_id_var.reset(token)
    response.headers[CORRELATION_HEADER] = cid
    return response


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = errors.problem(request, 413, "Payload too large",
                                  f"request bodies are limited to {self.max_bytes} bytes")
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def _add_problem_schema(app: FastAPI) -> None:
    """Register the Problem model so the shared error responses' $ref resolves in the OpenAPI document."""
    from fastapi.openapi.utils import get_openapi

    from geomill.api.models import Problem

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["create_app"]
