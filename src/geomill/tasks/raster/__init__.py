"""Raster tasks: ``raster.validate``, ``raster.create_cog``, ``raster.mosaic`` and the tiling tasks (tiles.py)."""

from __future__ import annotations

from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy
from geomill.tasks.raster import cog, mosaic, sources, tiles, validate

QUEUE = "raster-tasks"


def register(registry: Registry) -> None:
    """Register the raster task types."""
    registry.register_task_type(
        TaskType(
            name=validate.TASK_NAME, handler=validate.validate_raster, params_model=validate.ValidateRasterParams,
            result_model=validate.RasterSummary, queue=QUEUE, timeout_seconds=300.0,
            retry=RetryPolicy(max_attempts=3), description="open a raster, check it is readable and georeferenced",
        )
    )
    registry.register_task_type(
        TaskType(
            name=cog.TASK_NAME, handler=cog.create_cog, params_model=cog.CreateCogParams,
            result_model=cog.CogResult, queue=QUEUE, timeout_seconds=3600.0,
            retry=RetryPolicy(max_attempts=3), description="write a Cloud-Optimized GeoTIFF into the silver zone",
        )
    )
    registry.register_task_type(
        TaskType(
            name=mosaic.TASK_NAME, handler=mosaic.create_mosaic, params_model=mosaic.MosaicParams,
            result_model=mosaic.MosaicResult, queue=QUEUE, timeout_seconds=1800.0,
            retry=RetryPolicy(max_attempts=3), description="a MosaicJSON and a GDAL VRT over a set of COGs",
        )
    )
    registry.register_task_type(
        TaskType(
            name=sources.TASK_NAME, handler=sources.list_sources, params_model=sources.ListSourcesParams,
            result_model=sources.SourceList, queue=QUEUE, timeout_seconds=600.0,
            retry=RetryPolicy(max_attempts=3), description="list the raster files under a folder or storage prefix",
        )
    )
    tiles.register(registry)
