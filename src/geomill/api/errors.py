"""Every error as `application/problem+json` (RFC 9457); domain exceptions map to HTTP status in one table."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from geomill.domain import (
    Conflict,
    Fenced,
    GeomillError,
    IllegalTransition,
    InvalidInput,
    NotFinished,
    NotFound,
    StoreError,
    UnknownJobType,
)

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
TYPE_BASE = "https://geomill.dev/problems/"


class ApiError(GeomillError):
    """An HTTP-level refusal with its own status (auth, conflicts, limits)."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.extra = status, title, extra


# most specific first: UnknownJobType is an InvalidInput but answers 404
STATUS_BY_ERROR: list[tuple[type[Exception], int, str]] = [
    (UnknownJobType, 404, "Unknown job type"),
    (NotFound, 404, "Not found"),
    (InvalidInput, 422, "Invalid input"),
    (NotFinished, 409, "Not finished"),
    (Conflict, 409, "Conflict"),
    (IllegalTransition, 409, "Conflict"),
    (Fenced, 409, "Conflict"),
    (StoreError, 503, "Database unavailable"),
]


def problem(request: Request, status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": TYPE_BASE + title.lower().replace(" ", "-"), "title": title, "status": status,
            "detail": detail, "instance": request.url.path,
            "correlation_id": getattr(request.state, "correlation_id", None), **extra}
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ApiError):
        return problem(request, exc.status, exc.title, str(exc), **exc.extra)
    for kind, status, title in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            extra: dict[str, Any] = {}
            if isinstance(exc, UnknownJobType):
                extra["known_job_types"] = exc.known
            if isinstance(exc, InvalidInput) and exc.errors:
                extra["errors"] = exc.errors
            return problem(request, status, title, str(exc), **extra)
    return _unexpected(request, exc)


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [_field_error(e) for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(request, 422, "Invalid input", detail, errors=errors)


def _field_error(e: dict[str, Any]) -> dict[str, str]:
    if e.get("type") == "json_invalid":  # its loc is ("body", character offset), not a field
        return {"field": "body", "message": f"malformed JSON: {e.get('ctx', {}).get('error', 'cannot parse')}"}
    return {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
            "message": e.get("msg", "invalid")}


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    titles = {400: "Bad request", 404: "Not found", 405: "Method not allowed", 413: "Payload too large",
              415: "Unsupported media type"}
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    response = problem(request, exc.status_code, titles.get(exc.status_code, "HTTP error"), detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def log_unexpected(method: str, path: str, exc: BaseException, correlation_id: str | None) -> None:
    """The traceback, with the correlation id the client was given (the log line a support request quotes)."""
    log.error("unhandled error on %s %s (correlation id %s)", method, path, correlation_id, exc_info=exc,
              extra={"correlation_id": correlation_id})


def internal_error(request: Request) -> JSONResponse:
    return problem(request, 500, "Internal error", "an unexpected error occurred; the server log has details "
                   "(quote the correlation id)")


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log_unexpected(request.method, request.url.path, exc, getattr(request.state, "correlation_id", None))
    return internal_error(request)


def install_domain(app: FastAPI) -> None:
    """Only geomill's own errors as problems (a mounted app, e.g. the STAC API, keeps its other handlers)."""
    app.add_exception_handler(GeomillError, _domain_error)


def install(app: FastAPI) -> None:
    app.add_exception_handler(GeomillError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


_MEANING = {400: "the request body cannot be read (not UTF-8 text)", 401: "missing or unknown API key",
            403: "the key lacks the needed scope", 404: "no such resource",
            409: "not possible in the resource's current state", 413: "request body over the size limit",
            415: "the request body is not application/json",
            422: "invalid input", 500: "unexpected error", 503: "database unavailable"}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries: each status answered with a Problem document."""
    return {code: {"description": _MEANING[code],
                   "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}} for code in codes}


PROBLEM_RESPONSES = problem_responses(500)  # any route
KEYED_RESPONSES = problem_responses(401, 403, 422, 503)  # routes behind an API key that read the database
