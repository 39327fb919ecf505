"""What a dispatch message says (ids only: the database holds everything else) and how a dead one is recorded."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from geomill.domain import DispatchError

DEAD_LETTER = "dead-letter"  # logical name of the dead-letter exchange and queue (queue_names may rename it)
DEFAULT_DEAD_LETTER = "geomill.dead-letter"
REASON_HEADER = "x-geomill-reason"
SOURCE_HEADER = "x-geomill-source-queue"
DELIVERY_LIMIT = 20  # the broker's own safety net; handlers dead-letter with a reason long before this
RECORDED_BODY_BYTES = 4096  # a dead letter keeps this much of the body (and the full length)
_ID = r"^[^\x00]+$"  # PostgreSQL text cannot hold NUL: an id with one is undecodable, not a store error


class TaskMessage(BaseModel):
    kind: Literal["task"]
    task_id: str = Field(min_length=1, pattern=_ID)
    job_id: str = Field(pattern=_ID)
    stage: int


class EventMessage(BaseModel):
    kind: Literal["event"]
    event_id: int
    job_id: str = Field(pattern=_ID)
    stage: int


Message = Annotated[TaskMessage | EventMessage, Field(discriminator="kind")]
_message = TypeAdapter(Message)


class UndecodableMessage(DispatchError):
    """A message that is not a geomill message at all."""


def decode(body: bytes) -> TaskMessage | EventMessage:
    """The message in `body`, or UndecodableMessage naming what is wrong."""
    try:
        return _message.validate_json(body)
    except ValidationError as exc:
        raise UndecodableMessage(f"undecodable message: {exc.errors()[0]['msg']} at "
                                 f"{'.'.join(map(str, exc.errors()[0]['loc'])) or 'top level'}") from exc


def dead_letter_name(queue_names: Mapping[str, str]) -> str:
    return queue_names.get(DEAD_LETTER, DEFAULT_DEAD_LETTER)


def dead_letter_payload(queue: str, body: bytes) -> dict[str, Any]:
    """What the database records of a dead message: any bytes (NUL, invalid UTF-8) fit as base64."""
    kept = body[:RECORDED_BODY_BYTES]
    return {"queue": queue, "body_base64": base64.b64encode(kept).decode("ascii"), "body_bytes": len(body),
            "truncated": len(kept) < len(body)}
