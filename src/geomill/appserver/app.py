"""The AppServer's HTTP protocol:

- ``POST /gh/{definition}:{version}/solve`` with ``{"inputs": {...}}``: 200 and the outputs document; 404 unknown
  contract; 422 inputs refused (problem document with one error per field); 500 the solver failed.
- ``GET /health`` (alive), ``GET /ready`` (200 once the contracts are loaded, else 503), ``GET /contracts`` (what it
  serves) and ``GET /contracts/{definition}/{version}`` (a contract's manifest and schemas).
"""

from __future__ import annotations

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
    """The AppServer over the contracts `load` returns (called once, at start-up; /ready answers 200 after)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.contracts = await run_in_threadpool(load)
        log.info("AppServer ready: %s", ", ".join(app.state.contracts.keys()))
        yield

    app = FastAPI(title="geomill AppServer", version=__version__, lifespan=lifespan,
                  description="Solves geomill compute contracts: POST /gh/{definition}:{version}/solve.")
    app.state.contracts = None

    def contracts(request: Request) -> Contracts:
        loaded = request.app.state.contracts
        if loaded is None:
            raise UnknownContract("?", "?", [])
        return loaded

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        loaded = request.app.state.contracts
        if loaded is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "contracts": loaded.keys()})

    @app.get("/contracts")
    async def list_contracts(request: Request) -> list[dict[str, Any]]:
        return [c.describe() for c in contracts(request)]

    @app.get("/contracts/{definition}/{version}")
    async def show_contract(request: Request, definition: str, version: str) -> Any:
        try:
            c = contracts(request).get(definition, version)
        except UnknownContract as exc:
            return _problem(404, "Unknown contract", str(exc), known=exc.known)
        return {**c.describe(), "manifest": c.manifest.model_dump(), "inputs_schema": c.inputs_schema,
                "outputs_schema": c.outputs_schema}

    @app.post("/gh/{ref}/solve")
    async def solve(request: Request, ref: str) -> Any:
        definition, sep, version = ref.partition(":")
        try:
            contract = contracts(request).get(definition, version) if sep else None
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
