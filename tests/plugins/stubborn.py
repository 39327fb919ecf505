"""Task types that overrun their time limit: one interruptible (soft limit), one that ignores SIGALRM (hard limit)."""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence

from pydantic import BaseModel

from geomill.domain import FinishedStage, StageSpec, TaskSpec
from geomill.engine.context import TaskContext
from geomill.engine.registry import JobType, Registry, TaskType
from geomill.engine.retry import RetryPolicy


class OverrunParams(BaseModel):
    seconds: float
    block_alarm: bool = False


class OverrunResult(BaseModel):
    slept: float


def overrun(params: OverrunParams, ctx: TaskContext) -> OverrunResult:
    """Sleep past the time limit; with block_alarm, behave like C code that Python cannot interrupt."""
    if params.block_alarm:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(params.seconds)
    return OverrunResult(slept=params.seconds)


class OverrunJobParams(BaseModel):
    seconds: float = 10.0
    block_alarm: bool = False


def _plan(params: OverrunJobParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [TaskSpec("overrun", "test.overrun", params.model_dump())]


def register(registry: Registry) -> None:
    registry.register_task_type(TaskType("test.overrun", overrun, OverrunParams, OverrunResult, "default-tasks",
                                         timeout_seconds=1.0, retry=RetryPolicy(max_attempts=2, backoff_base_seconds=0.1,
                                                                                jitter=0)))
    registry.register_job_type(JobType("test_overrun", "a task that overruns its 1 s limit", OverrunJobParams,
                                       (StageSpec("overrun", _plan),), lambda p, s: {}))
