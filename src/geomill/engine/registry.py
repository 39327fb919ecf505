"""Explicit registries of task types and job types, checked when something is registered."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from geomill.domain import RegistryError, StageSpec, UnknownJobType
from geomill.domain.models import StageResults
from geomill.engine.context import TaskContext
from geomill.engine.retry import RetryPolicy

DEFAULT_QUEUES = ("raster-tasks", "vector-tasks", "long-tasks", "default-tasks")
JOBS_QUEUE = "jobs"

Handler = Callable[[Any, TaskContext], BaseModel]
FinalizeFn = Callable[[Any, Sequence[StageResults]], dict[str, Any]]


@dataclass(frozen=True)
class TaskType:
    """A handler with its parameter and result models, its queue, time limit and retry policy."""

    name: str
    handler: Handler
    params_model: type[BaseModel]
    result_model: type[BaseModel]
    queue: str
    timeout_seconds: float = 600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    description: str = ""


@dataclass(frozen=True)
class JobType:
    """A parameter model, ordered stages and a finalizer that aggregates the stages' results."""

    name: str
    description: str
    params_model: type[BaseModel]
    stages: tuple[StageSpec, ...]
    finalize: FinalizeFn
    deadline_seconds: float | None = None  # the janitor fails the job past this


class Registry:
    """Task types and job types by name. Inconsistent declarations fail here, at start-up."""

    def __init__(self, queues: Sequence[str] = DEFAULT_QUEUES) -> None:
        self.queues = tuple(queues)
        self._task_types: dict[str, TaskType] = {}
        self._job_types: dict[str, JobType] = {}

    def register_task_type(self, task_type: TaskType) -> TaskType:
        if task_type.name in self._task_types:
            raise RegistryError(f"task type {task_type.name!r} is registered twice")
        if task_type.queue not in self.queues:
            raise RegistryError(
                f"task type {task_type.name!r} routes to unknown queue {task_type.queue!r}; "
                f"known queues: {', '.join(self.queues)}"
            )
        for label, model in (("params", task_type.params_model), ("result", task_type.result_model)):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise RegistryError(f"task type {task_type.name!r}: {label} model must be a pydantic model")
        if task_type.timeout_seconds <= 0:
            raise RegistryError(f"task type {task_type.name!r}: timeout must be positive")
        self._task_types[task_type.name] = task_type
        return task_type

    def register_job_type(self, job_type: JobType) -> JobType:
        if job_type.name in self._job_types:
            raise RegistryError(f"job type {job_type.name!r} is registered twice")
        if not job_type.stages:
            raise RegistryError(f"job type {job_type.name!r} has no stages")
        if not (isinstance(job_type.params_model, type) and issubclass(job_type.params_model, BaseModel)):
            raise RegistryError(f"job type {job_type.name!r}: params model must be a pydantic model")
        names = [s.name for s in job_type.stages]
        if len(set(names)) != len(names):
            raise RegistryError(f"job type {job_type.name!r} repeats a stage name: {names}")
        self._job_types[job_type.name] = job_type
        return job_type

    def task_type(self, name: str) -> TaskType:
        try:
            return self._task_types[name]
        except KeyError:
            raise RegistryError(f"unknown task type {name!r}") from None

    def job_type(self, name: str) -> JobType:
        try:
            return self._job_types[name]
        except KeyError:
            raise UnknownJobType(name, list(self._job_types)) from None

    def job_types(self) -> list[JobType]:
        return [self._job_types[k] for k in sorted(self._job_types)]

    def task_types(self) -> list[TaskType]:
        return [self._task_types[k] for k in sorted(self._task_types)]
