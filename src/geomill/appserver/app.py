"""The AppServer's HTTP protocol:

- ``POST /gh/{definition}:{version}/solve`` with ``{"inputs": {...}}``: 200 and the outputs document; 404 unknown
  contract; 422 inputs refused (problem document with one error per field); 500 the solver failed.
- ``GET /health`` (alive), ``GET /ready`` (200 once the contracts are loaded, else 503), ``GET /contracts`` (what it
  serves) and ``GET /contracts/{definition}/{version}`` (a contract's manifest and schemas).

Contracts load in the background once the server is up, so /health answers at once; until they are loaded every
other path answers 503 (a worker retries a 503), and for good when loading failed (the reason in the body).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from geomill import __version__
from geomill.contracts import Contracts, UnknownContract
from geomill.contracts.runner import run_contract
from geomill.domain import GeomillError, InvalidInput

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
ENGINE = {"mode": "appserver", "name": "geomill-appserver"}


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"title": title, "status": status, "detail": detail, **extra}, status_code=status,
                        media_type=PROBLEM)


def create_appserver(load: Callable[[], Contracts]) -> FastAPI:
    """The AppServer over the contracts `load` returns (called once, in the background at start-up)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.get_running_loop().run_in_executor(None, _load, app)  # /health answers meanwhile
        yield
        await loading

    def _load(app: FastAPI) -> None:
        try:
            app.state.contracts = load()
        except GeomillError as exc:  # stays not ready, and says why
            app.state.load_error = str(exc)
            log.error("AppServer cannot load its contracts: %s", exc)
            return
        log.info("AppServer ready: %s", ", ".join(app.state.contracts.keys()))

    app = FastAPI(title="geomill AppServer", version=__version__, lifespan=lifespan,
                  description="Solves geomill compute contracts: POST /gh/{definition}:{version}/solve.")
    app.state.contracts, app.state.load_error = None, None

    def not_ready(request: Request) -> JSONResponse | None:
        if request.app.state.contracts is not None:
            return None
        error = request.app.state.load_error
        return JSONResponse({"status": "failed" if error else "loading", "error": error}, status_code=503)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        return not_ready(request) or JSONResponse({"status": "ready", "contracts": request.app.state.contracts.keys()})

    @app.get("/contracts")
    async def list_contracts(request: Request) -> Any:
        return not_ready(request) or [c.describe() for c in request.app.state.contracts]

    @app.get("/contracts/{definition}/{version}")
    async def show_contract(request: Request, definition: str, version: str) -> Any:
        if (waiting := not_ready(request)) is not None:
            return waiting
        try:
            c = request.app.state.contracts.get(definition, version)
        except UnknownContract as exc:
            return _problem(404, "Unknown contract", str(exc), known=exc.known)
        return {**c.describe(), "manifest": c.manifest.model_dump(), "inputs_schema": c.inputs_schema,
                "outputs_schema": c.outputs_schema}

    @app.post("/gh/{ref}/solve")
    async def solve(request: Request, ref: str) -> Any:
        if (waiting := not_ready(request)) is not None:  # 503: a worker retries it
            return waiting
        contracts: Contracts = request.app.state.contracts
        definition, sep, version = ref.partition(":")
        try:
            contract = contracts.get(definition, version) if sep else None
        except UnknownContract as exc:
            return _problem(404, "Unknown contract", str(exc), known=exc.known)
        if contract is None:
            return _problem(404, "Unknown contract", f"expected /gh/<definition>:<version>/solve, got {ref!r}")
        try:
            body = await request.json()
        except ValueError:
            return _problem(400, "Bad request", "the body must be JSON: {\"inputs\": {...}}")
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
            return _problem(422, "Invalid input", "the body must be {\"inputs\": {...}}",
                            errors=[{"field": "inputs", "message": "an object is required"}])
        try:
            return await run_in_threadpool(run_contract, contract, body["inputs"], ENGINE)
        except InvalidInput as exc:
            return _problem(422, "Invalid input", str(exc), errors=exc.errors)
        except GeomillError as exc:  # a solver that broke its contract, or failed on purpose
            log.error("solve %s failed: %s", contract.key, exc)
            return _problem(500, "Solver failed", str(exc))

    return app
