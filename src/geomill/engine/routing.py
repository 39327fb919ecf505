"""Routing: which queue a planned task goes to."""

from __future__ import annotations

from geomill.domain import TaskSpec
from geomill.engine.registry import Registry, TaskType


class Router:
    """Sends each task to its task type's queue. (Size and duration rules arrive with the roles work.)"""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def queue_for(self, task_type: TaskType, spec: TaskSpec) -> str:
        return task_type.queue
