"""Routing: which queue a planned task goes to.

Each task type names its queue; a task whose plan says its input is larger than `long_size_bytes`, or whose
estimated duration is longer than `long_seconds`, goes to `long-tasks` instead. Logical queue names are mapped to
physical ones (`queue_names`) here, so the store records what workers really listen to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from geomill.domain import TaskSpec
from geomill.engine.registry import TaskType

LONG_QUEUE = "long-tasks"


@dataclass(frozen=True)
class Router:
    long_size_bytes: float = 1000 * 1024 * 1024
    long_seconds: float = 20 * 60
    queue_names: Mapping[str, str] = field(default_factory=dict)

    def logical_queue(self, task_type: TaskType, spec: TaskSpec) -> str:
        if spec.size_bytes is not None and spec.size_bytes > self.long_size_bytes:
            return LONG_QUEUE
        if spec.estimated_seconds is not None and spec.estimated_seconds > self.long_seconds:
            return LONG_QUEUE
        return task_type.queue

    def queue_for(self, task_type: TaskType, spec: TaskSpec) -> str:
        logical = self.logical_queue(task_type, spec)
        return self.queue_names.get(logical, logical)
