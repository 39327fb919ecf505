"""Job type ``process_large_raster``: a raster of any size as tiles, in bounded memory.

Stages (the same stage list and plan functions as ``process_raster``, always on the tiled path):
validate -> tile_scheme -> extract_tiles (one task per tile, on long-tasks) -> create_cog (one per tile)
-> mosaic (MosaicJSON + GDAL VRT over the tile COGs; the intermediate tiles are deleted beside it)
-> stac_item (a STAC collection with an item per tile).
"""

from __future__ import annotations

from typing import ClassVar

from geomill.engine.registry import JobType, Registry
from geomill.jobs.raster import STAGES, ProcessRasterParams, finalize

JOB_NAME = "process_large_raster"


class ProcessLargeRasterParams(ProcessRasterParams):
    """process_raster's parameters; the input is tiled whatever its size."""

    always_tiled: ClassVar[bool] = True


def register(registry: Registry) -> None:
    """Register the ``process_large_raster`` job type."""
    registry.register_job_type(JobType(
        name=JOB_NAME,
        description="Cut a raster of any size into tiles (optionally reprojected), a COG per tile, a mosaic "
                    "(MosaicJSON + VRT) over them and a STAC collection with an item per tile; bounded memory.",
        params_model=ProcessLargeRasterParams,
        stages=STAGES,
        finalize=finalize,
    ))
