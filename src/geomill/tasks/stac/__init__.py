"""STAC task types ``stac.create_item`` and ``stac.create_collection``, declared by reference (no import of
pystac or GDAL until a worker runs one)."""

from __future__ import annotations

from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy

QUEUE = "raster-tasks"

CREATE_ITEM = TaskType(
    name="stac.create_item", handler="geomill.tasks.stac.item:create_item",
    params_model="geomill.tasks.stac.models:CreateItemParams", result_model="geomill.tasks.stac.item:ItemResult",
    queue=QUEUE, timeout_seconds=600.0, retry=RetryPolicy(max_attempts=3),
    description="describe a COG as a STAC item in the static catalog",
)
CREATE_COLLECTION = TaskType(
    name="stac.create_collection", handler="geomill.tasks.stac.collection:create_collection",
    params_model="geomill.tasks.stac.models:CreateCollectionParams",
    result_model="geomill.tasks.stac.collection:CollectionResult", queue=QUEUE, timeout_seconds=1800.0,
    retry=RetryPolicy(max_attempts=3),
    description="a STAC collection with an item per COG and the mosaic as assets, upserted into the catalog",
)
TASK_TYPES = (CREATE_ITEM, CREATE_COLLECTION)


def register(registry: Registry) -> None:
    """Register the STAC task types."""
    for task_type in TASK_TYPES:
        registry.register_task_type(task_type)
