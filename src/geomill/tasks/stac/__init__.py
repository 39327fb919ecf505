"""STAC tasks: ``stac.create_item``."""

from __future__ import annotations

from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy
from geomill.tasks.stac import item

QUEUE = "raster-tasks"


def register(registry: Registry) -> None:
    """Register the STAC task types."""
    registry.register_task_type(
        TaskType(
            name=item.TASK_NAME, handler=item.create_item, params_model=item.CreateItemParams,
            result_model=item.ItemResult, queue=QUEUE, timeout_seconds=600.0,
            retry=RetryPolicy(max_attempts=3), description="describe a COG as a STAC item in the static catalog",
        )
    )
