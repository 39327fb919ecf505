"""Request bodies read strictly: `application/json` only (415 otherwise), standard JSON only (no NaN, Infinity or a
number that overflows a float to infinity), a JSON object, and no integer beyond 64 bits (the stores keep integers
in 64-bit columns; a larger one would fail there, not here)."""

from __future__ import annotations

import json
import math
from typing import Any

from geomill.api.errors import ApiError
from geomill.domain import InvalidInput

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 32  # parameters nest a level or two; the walk below must not meet the recursion limit
# the request body of a submission, for the OpenAPI document (the route reads the body itself)
JSON_OBJECT_BODY = {"requestBody": {"required": True, "description": "the job's parameters (see GET /api/job-types)",
                                    "content": {"application/json": {"schema": {
                                        "type": "object", "additionalProperties": True}}}}}


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} does not fit a 64-bit float")
    return value


def is_json(content_type: str | None) -> bool:
    """application/json or a +json type, with any parameters (charset); an absent type is read as JSON."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def parse_object(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """The body as a JSON object; 415 for another media type, InvalidInput (field ``body`` or the integer's path)
    for anything else this API does not accept."""
    if not is_json(content_type):
        raise ApiError(415, "Unsupported media type", f"send the parameters as application/json, not {content_type}")
    try:
        value = json.loads(raw, parse_constant=_constant, parse_float=_float)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "Bad request", "the request body is not UTF-8 text") from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidInput(f"body: malformed JSON: {exc}", field="body") from None
    if not isinstance(value, dict):
        raise InvalidInput("body: Input should be a valid dictionary (a JSON object of parameters)", field="body")
    _check_ints(value, ())
    return value


def _check_ints(value: Any, path: tuple[str, ...]) -> None:
    if len(path) > MAX_DEPTH:
        raise InvalidInput(f"body: nested deeper than {MAX_DEPTH} levels", field="body")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_ints(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_ints(item, (*path, str(i)))
    elif isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        field = ".".join(path)
        raise InvalidInput(f"{field}: integer outside the signed 64-bit range", field=field)
