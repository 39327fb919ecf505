"""run_task: validation of parameters and results, and classification of failures (permanent or transient)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, Field

from geomill.domain import (
    Fenced,
    InvalidInput,
    OutOfSpace,
    PermanentError,
    Task,
    TaskStatus,
    TaskTimeout,
    TransientError,
)
from geomill.engine.context import Limits, TaskContext
from geomill.engine.execution import error_record, run_task
from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy


class Params(BaseModel):
    n: int = Field(ge=0)
    mode: str = "ok"


class Result(BaseModel):
    doubled: int


def handler(params: Params, ctx: TaskContext) -> Any:
    if params.mode == "invalid":
        raise InvalidInput("the file is not a raster", field="path")
    if params.mode == "boom":
        raise RuntimeError("disk on fire")
    if params.mode == "transient":
        raise TransientError("busy")
    if params.mode == "timeout":
        raise TaskTimeout("too slow")
    if params.mode == "nospace":
        raise OutOfSpace("no space left on /data", path="/data", free_bytes=0, needed_bytes=10)
    if params.mode == "fenced":
        raise Fenced("lost the lease")
    if params.mode == "permanent":
        raise PermanentError("the solver broke its contract")
    if params.mode == "dict":
        return {"doubled": params.n * 2}
    if params.mode == "bad-result":
        return {"doubled": "many"}
    return Result(doubled=params.n * 2)


POLICY = RetryPolicy(max_attempts=3, backoff_base_seconds=1.0, backoff_factor=2.0, jitter=0)


@pytest.fixture
def reg() -> Registry:
    r = Registry()
    r.register_task_type(TaskType("t.x", handler, Params, Result, "default-tasks", retry=POLICY))
    return r


def task(params: dict[str, Any], attempt: int = 1, max_attempts: int = 3) -> Task:
    return Task(task_id="tid", job_id="jid", stage=1, task_key="k", task_type="t.x", params=params,
                status=TaskStatus.PROCESSING, attempt=attempt, max_attempts=max_attempts,
                target_queue="default-tasks", timeout_seconds=60, created_at=datetime.now(UTC))


def ctx(t: Task, limits: Limits | None = None) -> TaskContext:
    return TaskContext(task_id=t.task_id, job_id=t.job_id, stage=t.stage, attempt=t.attempt, storage=None,
                       limits=limits or Limits())


def run(reg: Registry, params: dict[str, Any], attempt: int = 1, max_attempts: int = 3,
        limits: Limits | None = None):
    t = task(params, attempt, max_attempts)
    return run_task(reg, t, ctx(t, limits))


def test_success_returns_the_result_as_json(reg: Registry) -> None:
    out = run(reg, {"n": 21})
    assert (out.result, out.error, out.retry_in, out.fenced) == ({"doubled": 42}, None, None, False)


def test_a_dict_result_is_validated_by_the_result_model(reg: Registry) -> None:
    assert run(reg, {"n": 2, "mode": "dict"}).result == {"doubled": 4}


@pytest.mark.parametrize("params", [{"n": "abc"}, {"n": -1}, {}, {"n": [1]}])
def test_param_validation_errors_are_permanent(reg: Registry, params: dict[str, Any]) -> None:
    out = run(reg, params, attempt=1)
    assert out.result is None and out.retry_in is None
    assert out.error["type"] == "InvalidInput" and out.error["retryable"] is False
    assert out.error["message"].startswith("invalid task parameters: n:")
    assert out.error["attempt"] == 1


def test_invalid_input_from_the_handler_is_permanent_even_with_attempts_left(reg: Registry) -> None:
    out = run(reg, {"n": 1, "mode": "invalid"}, attempt=1, max_attempts=3)
    assert out.retry_in is None
    assert out.error["type"] == "InvalidInput" and out.error["retryable"] is False
    assert out.error["message"] == "the file is not a raster"
    assert "InvalidInput: the file is not a raster" in out.error["traceback"]
    assert "in handler" in out.error["traceback"]


@pytest.mark.parametrize(("mode", "kind"), [("boom", "RuntimeError"), ("transient", "TransientError"),
                                            ("timeout", "TaskTimeout"), ("bad-result", "ValidationError")])
def test_other_exceptions_are_transient_with_backoff_while_attempts_remain(
    reg: Registry, mode: str, kind: str
) -> None:
    first = run(reg, {"n": 1, "mode": mode}, attempt=1)
    second = run(reg, {"n": 1, "mode": mode}, attempt=2)
    assert first.result is None and first.error["type"] == kind
    assert first.error["retryable"] is True and first.error["attempt"] == 1
    assert (first.retry_in, second.retry_in) == (1.0, 2.0)  # the task type's policy, attempt by attempt


@pytest.mark.parametrize("mode", ["boom", "transient", "timeout"])
def test_the_last_attempt_is_not_retried(reg: Registry, mode: str) -> None:
    out = run(reg, {"n": 1, "mode": mode}, attempt=3, max_attempts=3)
    assert out.retry_in is None
    assert out.error["retryable"] is True and out.error["attempt"] == 3


def test_out_of_space_fails_at_once_by_default(reg: Registry) -> None:
    """A full disk is never retried at once (it would fill again): by default the task fails with the error."""
    out = run(reg, {"n": 1, "mode": "nospace"}, attempt=1)
    assert out.error["type"] == "OutOfSpace" and out.error["retryable"] is False and out.retry_in is None
    assert out.error["cause"] == "permanent"  # a platform failure, not the input's fault


def test_out_of_space_waits_the_configured_delay_not_the_policys_short_one(reg: Registry) -> None:
    limits = Limits(out_of_space_retry_seconds=600)
    out = run(reg, {"n": 1, "mode": "nospace"}, attempt=1, limits=limits)
    assert out.error["type"] == "OutOfSpace" and out.error["retryable"] is True
    assert out.retry_in == 600
    assert run(reg, {"n": 1, "mode": "nospace"}, attempt=3, limits=limits).retry_in is None  # bounded by attempts


def test_the_tasks_own_budget_limits_retries_too(reg: Registry) -> None:
    assert run(reg, {"n": 1, "mode": "boom"}, attempt=1, max_attempts=1).retry_in is None


def test_a_fenced_handler_drops_its_work(reg: Registry) -> None:
    out = run(reg, {"n": 1, "mode": "fenced"})
    assert out.fenced and out.result is None and out.error is None


def test_error_record_shape() -> None:
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        rec = error_record(exc, 2, permanent=False)
    assert set(rec) == {"type", "message", "cause", "retryable", "attempt", "traceback"}
    assert (rec["type"], rec["message"], rec["retryable"], rec["attempt"]) == ("ValueError", "bad value", True, 2)
    assert rec["cause"] == "transient"
    assert rec["traceback"].startswith("Traceback") and "ValueError: bad value" in rec["traceback"]


def test_error_record_of_an_empty_message_uses_the_type_and_caps_the_traceback() -> None:
    rec = error_record(RuntimeError(), 1, permanent=True)
    assert rec["message"] == "RuntimeError" and rec["retryable"] is False and rec["cause"] == "permanent"
    huge = error_record(RuntimeError("x" * 20_000), 1, permanent=True)
    assert len(huge["traceback"]) == 8000


def test_a_permanent_error_fails_at_once_without_a_dead_letter(reg: Registry) -> None:
    """PermanentError (e.g. a contract violation): not the input's fault, never retried, even with attempts left."""
    out = run(reg, {"n": 1, "mode": "permanent"})
    assert out.retry_in is None and not out.dead_letter
    assert out.error is not None and out.error["cause"] == "permanent" and out.error["retryable"] is False


def test_a_task_type_may_dead_letter_its_exhausted_transient_failures() -> None:
    """`dead_letter_when_exhausted`: the last transient failure asks for a dead letter; earlier ones retry."""
    r = Registry()
    r.register_task_type(TaskType("t.x", handler, Params, Result, "default-tasks", retry=POLICY,
                                  dead_letter_when_exhausted=True))
    early, last = run(r, {"n": 1, "mode": "transient"}, attempt=2), run(r, {"n": 1, "mode": "transient"}, attempt=3)
    assert early.retry_in is not None and not early.dead_letter
    assert last.retry_in is None and last.dead_letter
    assert not run(r, {"n": 1, "mode": "invalid"}, attempt=3).dead_letter
