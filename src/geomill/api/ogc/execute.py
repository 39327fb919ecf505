"""The execute request body: ``inputs`` (the job's parameters), ``outputs`` (accepted; there is one output),
``response`` (document or raw) and ``subscriber`` (callback URLs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geomill.api.errors import ApiError
from geomill.service.callbacks import check_callback_uri

KNOWN = ("inputs", "outputs", "response", "subscriber")


@dataclass(frozen=True)
class ExecuteRequest:
    inputs: dict[str, Any]
    response: str
    subscriber: tuple[str | None, str | None, str | None] | None  # success, failed, in progress


def _refuse(field: str, message: str) -> ApiError:
    return ApiError(400, "Invalid input", f"{field}: {message}", errors=[{"field": field, "message": message}])


def read_execute(body: dict[str, Any]) -> ExecuteRequest:
    """The request, checked (400 naming the field); the inputs themselves are checked by the job type's model."""
    unknown = sorted(set(body) - set(KNOWN))
    if unknown:
        raise _refuse(unknown[0], f"unknown member (known: {', '.join(KNOWN)})")
    inputs = body.get("inputs", {})
    if not isinstance(inputs, dict):
        raise _refuse("inputs", "an object of input values by input id")
    response = body.get("response", "document")
    if response not in ("document", "raw"):
        raise _refuse("response", "document or raw")
    subscriber = body.get("subscriber")
    if subscriber is None:
        return ExecuteRequest(inputs, response, None)
    if not isinstance(subscriber, dict) or set(subscriber) - {"successUri", "failedUri", "inProgressUri"}:
        raise _refuse("subscriber", "an object with successUri, failedUri and/or inProgressUri")
    try:
        uris = tuple(check_callback_uri(f"subscriber.{k}", subscriber.get(k))
                     for k in ("successUri", "failedUri", "inProgressUri"))
    except Exception as exc:  # InvalidInput naming the member
        raise _refuse("subscriber", str(exc)) from None
    if not any(uris):
        raise _refuse("subscriber", "give at least one of successUri, failedUri, inProgressUri")
    return ExecuteRequest(inputs, response, uris)  # type: ignore[arg-type]
