"""Demo task types: greetings for hello_world and a configurable unit of work for tests and benchmarks."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, Field

from geomill.domain import InvalidInput, TransientError
from geomill.engine.context import TaskContext
from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy


class GreetParams(BaseModel):
    index: int = Field(ge=0)


class GreetResult(BaseModel):
    greeting: str


def greet(params: GreetParams, ctx: TaskContext) -> GreetResult:
    """Say hello from greeting number `index`."""
    return GreetResult(greeting=f"Hello from greeting {params.index}")


class ReplyParams(BaseModel):
    greeting: str


class ReplyResult(BaseModel):
    reply: str


def reply(params: ReplyParams, ctx: TaskContext) -> ReplyResult:
    """Answer one greeting of the previous stage."""
    return ReplyResult(reply=f"Reply to '{params.greeting}'")


class WorkParams(BaseModel):
    key: str
    sleep_s: float = Field(0.0, ge=0, description="how long the task works (heartbeats keep its lease)")
    fail_attempts: int = Field(0, ge=0, description="the first N attempts fail with a transient error")
    invalid: bool = Field(False, description="fail at once with InvalidInput")
    marker_dir: str | None = Field(None, description="append one line per execution to <marker_dir>/<key>")


class WorkResult(BaseModel):
    key: str
    attempt: int
    pid: int


def work(params: WorkParams, ctx: TaskContext) -> WorkResult:
    """Sleep, fail or succeed as asked; record each run so tests can count executions."""
    if params.invalid:
        raise InvalidInput(f"task {params.key} was asked to refuse its input")
    if ctx.attempt <= params.fail_attempts:
        raise TransientError(f"task {params.key}: planned transient failure on attempt {ctx.attempt}")
    deadline = time.monotonic() + params.sleep_s
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
    if params.marker_dir:
        with open(Path(params.marker_dir) / params.key, "a") as fh:
            fh.write(f"{ctx.task_id} attempt={ctx.attempt} pid={os.getpid()}\n")
    return WorkResult(key=params.key, attempt=ctx.attempt, pid=os.getpid())


_RETRY = RetryPolicy(max_attempts=3, backoff_base_seconds=0.2, backoff_max_seconds=5.0)
GREET = TaskType("demo.greet", greet, GreetParams, GreetResult, "default-tasks", timeout_seconds=60,
                 description="one greeting")
REPLY = TaskType("demo.reply", reply, ReplyParams, ReplyResult, "default-tasks", timeout_seconds=60,
                 description="a reply to one greeting")
WORK = TaskType("demo.work", work, WorkParams, WorkResult, "default-tasks", timeout_seconds=600, retry=_RETRY,
                description="configurable test work")


def register(registry: Registry) -> None:
    for task_type in (GREET, REPLY, WORK):
        registry.register_task_type(task_type)
