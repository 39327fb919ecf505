"""The FastAPI application: settings and runtime on `app.state`, middleware, routers, error handlers."""

from __future__ import annotations

import gc
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geomill import __version__
from geomill.api import errors
from geomill.api.geo import mount as mount_geo
from geomill.api.routers import compute, debug, jobs, meta, tasks
from geomill.config import Settings
from geomill.logs import correlation_id_var
from geomill.roles import Role, resolve_role
from geomill.runtime import Runtime
from geomill.service.keys import KeyCache
from geomill.store.async_access import ThreadedAsyncStore, open_async_store
from geomill.ui import pages as console

log = logging.getLogger(__name__)
CORRELATION_HEADER = "X-Correlation-ID"
_CORRELATION_KEY = CORRELATION_HEADER.lower().encode()


def create_app(settings: Settings, runtime: Runtime | None = None, role: Role | None = None,
               on_startup: Callable[[Runtime], None] | None = None,
               on_shutdown: Callable[[Runtime], None] | None = None) -> FastAPI:
    """The API over `runtime` (opened from `settings` when not given). `on_startup`/`on_shutdown` let
    `geomill serve` start and drain its worker pool with the server."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.open(settings)
        app.state.runtime = rt
        app.state.async_store = await open_async_store(rt.store)
        await geo.open(rt)
        if on_startup:
            on_startup(rt)
        gc.freeze()  # modules, app and runtime live as long as the server: no full collection walks them again
        try:
            yield
        finally:
            if on_shutdown:
                on_shutdown(rt)
            await geo.close()
            await app.state.async_store.close()
            if runtime is None:
                rt.close()

    app = FastAPI(title="geomill", version=__version__, lifespan=lifespan,
                  description="Submit, track and operate geospatial processing jobs.",
                  responses=errors.PROBLEM_RESPONSES,
                  dependencies=[Depends(single_query_values)])
    app.state.settings = settings
    app.state.key_cache = KeyCache(settings.api_key_cache_seconds)
    app.state.role = role or resolve_role(settings.app_mode, settings.queues or None)
    if runtime is not None:  # usable without its lifespan too (TestClient outside a `with`): reads in a thread
        app.state.runtime = runtime
        app.state.async_store = ThreadedAsyncStore(runtime.store)
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(CorrelationId, public_url=settings.public_url)
    for router in (jobs.router, tasks.router, meta.router, compute.router):
        app.include_router(router)
    app.include_router(debug.router, include_in_schema=settings.debug_endpoints)  # off: 404, and undocumented
    app.include_router(console.router)  # the web console (docs/console.md)
    app.mount("/ui/static", StaticFiles(directory=console.STATIC_DIR), name="console-static")
    geo = mount_geo(app, settings)  # /tiles and /stac (docs/stac-api.md)
    _add_problem_schema(app, secured=not settings.auth_disabled)
    return app


async def single_query_values(request: Request) -> None:
    """Every query parameter of this API is a single value: a repeated one (?status=a&status=b) is refused rather
    than silently reduced to its last value. ``async``: a plain ``def`` dependency would cost every request a hop to
    the thread pool. Not under /tiles: titiler's parameters repeat by design (bidx=1&bidx=2)."""
    if request.scope["path"].startswith("/tiles/"):
        return
    repeated = sorted({k for k, _ in request.query_params.multi_items()
                       if len(request.query_params.getlist(k)) > 1})
    if repeated:
        raise errors.ApiError(422, "Invalid input", f"query parameter(s) given more than once: {', '.join(repeated)}",
                              errors=[{"field": f"query.{k}", "message": "given more than once"} for k in repeated])


class CorrelationId:
    """Take X-Correlation-ID (or make one), expose it to handlers (``request.state.correlation_id``) and logs, and
    return it. An unhandled error is logged with it and answered 500 here, inside the server's own error layer,
    which would re-raise it (and the server then drops the connection). A redirect's Location never carries the
    request's Host: it becomes relative, or starts with `public_url`. Plain ASGI: a ``BaseHTTPMiddleware`` costs a
    task group and a body stream per request."""

    def __init__(self, app: ASGIApp, public_url: str | None = None) -> None:
        self.app = app
        self.public_url = public_url.rstrip("/") if public_url else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == _CORRELATION_KEY), b"").decode("latin-1")
        cid = given if given and len(given) <= 128 and given.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["correlation_id"] = cid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers[CORRELATION_HEADER] = cid
                if 300 <= message["status"] < 400 and "location" in headers:
                    headers["location"] = self._location(headers["location"], scope.get("root_path", ""))
            await send(message)

        token = correlation_id_var.set(cid)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            errors.log_unexpected(scope["method"], scope["path"], exc, cid)
            if started:  # part of a response went out: nothing valid can follow it
                raise
            await errors.internal_error(Request(scope, receive))(scope, receive, send_with_id)
        finally:
            correlation_id_var.reset(token)

    def _location(self, location: str, root_path: str) -> str:
        """An absolute Location (built from the Host header) made relative, or rebased on the public URL."""
        parts = urlsplit(location)
        if not parts.netloc:
            return location
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if self.public_url and root_path and path.startswith(root_path):
            path = path[len(root_path):]
        return self.public_url + path


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
                raise _TooLarge(self.max_bytes)
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


class _TooLarge(StarletteHTTPException):
    """An HTTPException, so FastAPI's body reader re-raises it (any other error there becomes a 400)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request bodies are limited to {max_bytes} bytes")


def _add_problem_schema(app: FastAPI, secured: bool) -> None:
    """Register the Problem model so the shared error responses' $ref resolves in the OpenAPI document. With auth
    disabled, the document does not claim that operations need a key (nor that they answer 401/403)."""
    from fastapi.openapi.utils import get_openapi

    from geomill.api.models import Problem

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}")
        if not secured:
            schema["components"].pop("securitySchemes", None)
            for operation in (op for ops in schema["paths"].values() for op in ops.values()):
                operation.pop("security", None)
                for code in ("401", "403"):
                    operation["responses"].pop(code, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["create_app"]
