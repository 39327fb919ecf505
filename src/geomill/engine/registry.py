"""Explicit registries of task types and job types, checked when something is registered.

A task type's handler and models may be given as references (``"geomill.tasks.raster.cog:create_cog"``), imported
the first time they are used: building the registry then imports no GDAL, pyogrio or pyarrow, and a worker imports
only the handlers of the tasks it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import BaseModel

from geomill.domain import RegistryError, StageSpec, TaskSpec, UnknownJobType
from geomill.domain.models import FinishedStage
from geomill.engine.context import TaskContext
from geomill.engine.retry import RetryPolicy

DEFAULT_QUEUES = ("raster-tasks", "vector-tasks", "long-tasks", "default-tasks", "solve-tasks")
JOBS_QUEUE = "jobs"

Handler = Callable[[Any, TaskContext], BaseModel]
FinalizeFn = Callable[[Any, Sequence[FinishedStage]], dict[str, Any]]


class ResolvedTaskType(NamedTuple):
    handler: Handler
    params_model: type[BaseModel]
    result_model: type[BaseModel]


_LAZY_FIELDS = frozenset({"handler", "params_model", "result_model"})


def resolve(reference: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names (imports the module)."""
    module, _, attribute = reference.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"cannot resolve {reference!r}: {exc}") from exc


def _is_reference(value: object) -> bool:
    return isinstance(value, str) and value.count(":") == 1 and all(value.partition(":")[::2])


def _check_model(owner: str, label: str, model: object) -> None:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise RegistryError(f"task type {owner!r}: {label} model must be a pydantic model")


@dataclass(frozen=True)
class TaskType:
    """A handler with its parameter and result models, its queue, time limit and retry policy.

    `handler`, `params_model` and `result_model` may be references ("module:attribute"), resolved on first access."""

    name: str
    handler: Handler | str
    params_model: type[BaseModel] | str
    result_model: type[BaseModel] | str
    queue: str
    timeout_seconds: float = 600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    description: str = ""
    dead_letter_when_exhausted: bool = False  # a transient failure on the last attempt also leaves a dead letter

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name in _LAZY_FIELDS and isinstance(value, str):
            value = resolve(value)
            if name != "handler":
                _check_model(object.__getattribute__(self, "name"), name.split("_")[0], value)
            object.__setattr__(self, name, value)  # resolved once; later reads are plain attribute reads
        return value

    def is_resolved(self, field_name: str = "handler") -> bool:
        """False while `field_name` is still an unimported reference."""
        return not isinstance(object.__getattribute__(self, field_name), str)

    @property
    def params_type(self) -> type[BaseModel]:
        """The parameter model, imported now if still a reference (the handler's module is not imported)."""
        model = self.params_model
        assert not isinstance(model, str)  # __getattribute__ resolved it
        return model

    def resolve_all(self) -> ResolvedTaskType:
        """The handler and models, imported now if still references (RegistryError if one is broken)."""
        return ResolvedTaskType(self.handler, self.params_model, self.result_model)  # type: ignore[arg-type]

    def spec(self, key: str, params: BaseModel | Mapping[str, Any], *, size_bytes: int | None = None,
             estimated_seconds: float | None = None) -> TaskSpec:
        """A task of this type for a stage plan (params as a model or a JSON-able mapping)."""
        if isinstance(params, BaseModel):
            doc = params.model_dump(mode="json")
        else:  # a plain dict is taken as it is: big fan-outs build millions (the planner validates each anyway)
            doc = params if isinstance(params, dict) else dict(params)
        return TaskSpec(key, self.name, doc, size_bytes=size_bytes, estimated_seconds=estimated_seconds)


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
        for label in ("handler", "params_model", "result_model"):
            raw = object.__getattribute__(task_type, label)
            if isinstance(raw, str):  # a reference: checked for form now, resolved (and checked) on first use
                if not _is_reference(raw):
                    raise RegistryError(f"task type {task_type.name!r}: {label} {raw!r} is not a 'module:name' "
                                        "reference")
            elif label != "handler":
                _check_model(task_type.name, label.split("_")[0], raw)
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
