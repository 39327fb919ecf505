"""Container task types (inventory, diff against the ledger, one object synced, one file catalogued, a scope's
mosaic), declared by reference: registering them imports no GDAL."""

from __future__ import annotations

from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy

_P = "geomill.tasks.container"
_M = f"{_P}.models"


def _task(name: str, handler: str, params: str, result: str, queue: str, timeout: float,
          description: str) -> TaskType:
    return TaskType(name=name, handler=f"{_P}.{handler}", params_model=f"{_M}:{params}", result_model=f"{_M}:{result}",
                    queue=queue, timeout_seconds=timeout, retry=RetryPolicy(max_attempts=3), description=description)


# raster-tasks for all of them: the workers that process a sync's files (worker_raster hosts serve no default-tasks)
LIST = _task("container.list", "manifest:list_container", "ListContainerParams", "Manifest", "raster-tasks",
             4 * 3600.0, "list a container or prefix into JSON lines manifest parts in silver")
DIFF = _task("container.diff", "diff:diff_part", "DiffPartParams", "DiffResult", "raster-tasks", 1800.0,
             "compare one manifest part with what earlier syncs processed: new, changed, deleted")
SYNC_FILE = _task("container.sync_file", "files:sync_file", "SyncFileParams", "SyncFileResult", "raster-tasks",
                  3600.0, "one new or changed raster: catalogued in place when a COG, else COG + STAC item; "
                          "or a vector file loaded")
CATALOG_FILE = _task("container.catalog_file", "files:catalog_file", "CatalogFileParams", "CatalogFileResult",
                     "raster-tasks", 600.0, "a STAC item for an existing raster, catalogued where it is")
MOSAIC = _task("container.mosaic", "mosaic:mosaic_collection", "ContainerMosaicParams", "ContainerMosaicResult",
               "raster-tasks", 3600.0, "the collection's MosaicJSON + VRT over a sync scope's rasters, when "
                                       "compatible")
TASK_TYPES = (LIST, DIFF, SYNC_FILE, CATALOG_FILE, MOSAIC)


def register(registry: Registry) -> None:
    """Register the container task types."""
    for task_type in TASK_TYPES:
        registry.register_task_type(task_type)
