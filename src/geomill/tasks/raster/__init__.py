"""Raster task types (validate, COG, mosaic, sources, tiling), declared by reference: registering them imports no
GDAL; a worker imports a handler's module the first time it runs one of its tasks."""

from __future__ import annotations

from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy
from geomill.engine.routing import LONG_QUEUE

QUEUE = "raster-tasks"
_P = "geomill.tasks.raster"
_M = f"{_P}.models"


def _task(name: str, handler: str, params: str, result: str, timeout: float, description: str,
          queue: str = QUEUE) -> TaskType:
    return TaskType(name=name, handler=f"{_P}.{handler}", params_model=f"{_M}:{params}",
                    result_model=f"{_P}.{result}", queue=queue, timeout_seconds=timeout,
                    retry=RetryPolicy(max_attempts=3), description=description)


VALIDATE = _task("raster.validate", "inputs:validate_raster", "ValidateRasterParams", "models:RasterSummary",
                 300.0, "open a raster, check it is readable and georeferenced")
CREATE_COG = _task("raster.create_cog", "cog:create_cog", "CreateCogParams", "cog:CogResult", 3600.0,
                   "write a Cloud-Optimized GeoTIFF into the silver zone")
MOSAIC = _task("raster.mosaic", "mosaic:create_mosaic", "MosaicParams", "mosaic:MosaicResult", 1800.0,
               "a MosaicJSON and a GDAL VRT over a set of COGs")
LIST_SOURCES = _task("raster.list_sources", "sources:list_sources", "ListSourcesParams", "sources:SourceList",
                     600.0, "list the raster files under a folder or storage prefix")
TILE_SCHEME = _task("raster.tile_scheme", "tiles:tile_scheme", "TileSchemeParams", "tiles:TileScheme", 600.0,
                    "cut a raster's output grid (reprojected or not) into tiles")
EXTRACT_TILE = _task("raster.extract_tile", "tiles:extract_tile", "ExtractTileParams", "tiles:ExtractedTile",
                     4 * 3600.0, "write one tile of a raster (windowed, reprojected if asked) as a GeoTIFF in silver",
                     queue=LONG_QUEUE)  # extraction runs on the dedicated long-running workers
REMOVE_INTERMEDIATES = _task("raster.remove_intermediates", "tiles:remove_intermediates",
                             "RemoveIntermediatesParams", "tiles:RemovedIntermediates", 600.0,
                             "delete the intermediate tiles of a tiled raster job")
TASK_TYPES = (VALIDATE, CREATE_COG, MOSAIC, LIST_SOURCES, TILE_SCHEME, EXTRACT_TILE, REMOVE_INTERMEDIATES)


def register(registry: Registry) -> None:
    """Register the raster task types."""
    for task_type in TASK_TYPES:
        registry.register_task_type(task_type)
