"""Running one claimed task's handler and deciding what its outcome means (complete, retry or fail)."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from geomill.domain import Fenced, InvalidInput, OutOfSpace, PermanentError, Task
from geomill.engine.context import Limits, TaskContext
from geomill.engine.orchestrator import validation_message
from geomill.engine.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """`result` on success; otherwise `error`, and `retry_in` seconds when another attempt is due."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retry_in: float | None = None
    fenced: bool = False
    dead_letter: bool = False  # the last attempt failed and the task type keeps such work as a dead letter


def failure_kind(exc: BaseException, *, permanent: bool) -> str:
    """``invalid_input`` (a person must fix the input), ``permanent`` (this code cannot run it), or ``transient``."""
    if isinstance(exc, InvalidInput):
        return "invalid_input"
    return "permanent" if permanent else "transient"


def error_record(exc: BaseException, attempt: int, *, permanent: bool) -> dict[str, Any]:
    """The error as stored: type, message, whether it is retryable, the attempt, and a traceback for admins."""
    return {
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "cause": failure_kind(exc, permanent=permanent),
        "retryable": not permanent,
        "attempt": attempt,
        "traceback": "".join(traceback.format_exception(exc))[-8000:],
    }


def retry_delay(exc: BaseException, policy_delay: float, limits: Limits) -> float | None:
    """The policy's delay; for a full disk (OutOfSpace), which the policy's few seconds do not free and a retry at
    once would fill again, ``limits.out_of_space_retry_seconds`` (at least the policy's), or None (0: no retry)."""
    if isinstance(exc, OutOfSpace):
        wait = limits.out_of_space_retry_seconds
        return max(policy_delay, wait) if wait > 0 else None
    return policy_delay


def run_task(registry: Registry, task: Task, ctx: TaskContext) -> Outcome:
    """Validate params, call the handler, validate its result; classify any failure."""
    task_type = registry.task_type(task.task_type)
    tt = task_type.resolve_all()
    try:
        params = tt.params_model.model_validate(task.params)
    except ValidationError as exc:
        err = InvalidInput(f"invalid task parameters: {validation_message(exc)}")
        return Outcome(error=error_record(err, task.attempt, permanent=True))
    try:
        result = tt.handler(params, ctx)
        if not isinstance(result, tt.result_model):
            result = tt.result_model.model_validate(result)
        return Outcome(result=_dump(result))
    except Fenced:
        return Outcome(fenced=True)
    except InvalidInput as exc:
        log.info("task refused its input: %s", exc, extra={"task_id": task.task_id, "job_id": task.job_id})
        return Outcome(error=error_record(exc, task.attempt, permanent=True))
    except PermanentError as exc:
        log.warning("task failed for good: %s", exc, extra={"task_id": task.task_id, "job_id": task.job_id})
        return Outcome(error=error_record(exc, task.attempt, permanent=True))
    except Exception as exc:  # anything else is transient: retried with backoff up to max_attempts
        log.warning("task attempt %d failed: %r", task.attempt, exc,
                    extra={"task_id": task.task_id, "job_id": task.job_id})
        retry = task_type.retry.should_retry(task.attempt) and task.attempt < task.max_attempts
        delay = retry_delay(exc, task_type.retry.delay(task.attempt), ctx.limits) if retry else None
        final = isinstance(exc, OutOfSpace) and delay is None  # a full disk is not retried at once: it fails
        return Outcome(error=error_record(exc, task.attempt, permanent=final), retry_in=delay,
                       dead_letter=not retry and not final and task_type.dead_letter_when_exhausted)


def _dump(result: BaseModel) -> dict[str, Any]:
    return result.model_dump(mode="json")
