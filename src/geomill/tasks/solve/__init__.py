"""The `compute.solve` task: one solve of a compute contract (handler in `handler.py`, imported when first run)."""

from __future__ import annotations

from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy

SOLVE_QUEUE = "solve-tasks"
# connection errors and 5xx: 5 attempts, 0.5 + 1 + 2 + 4 s apart (+-10 %), then failed and dead-lettered
SOLVE_RETRY = RetryPolicy(max_attempts=5, backoff_base_seconds=0.5, backoff_factor=2.0, backoff_max_seconds=30.0)

SOLVE = TaskType(
    "compute.solve", "geomill.tasks.solve.handler:solve", "geomill.tasks.solve.models:SolveTaskParams",
    "geomill.tasks.solve.models:SolveTaskResult", SOLVE_QUEUE, timeout_seconds=3600.0, retry=SOLVE_RETRY,
    description="solve a compute contract (in process, or on the AppServer) and record its result and artifacts",
    dead_letter_when_exhausted=True,
)


def register(registry: Registry) -> None:
    registry.register_task_type(SOLVE)
