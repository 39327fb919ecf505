"""STAC tasks: ``stac.create_item``."""

from __future__ import annotations

from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy
from geomill.tasks.stac import collection, item

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
    registry.register_task_type(
        TaskType(
            name=collection.TASK_NAME, handler=collection.create_collection,
            params_model=collection.CreateCollectionParams, result_model=collection.CollectionResult, queue=QUEUE,
            timeout_seconds=1800.0, retry=RetryPolicy(max_attempts=3),
            description="a STAC collection with an item per COG and the mosaic as assets, upserted into the catalog",
        )
    )
