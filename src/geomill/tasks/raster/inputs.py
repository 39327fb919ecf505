"""The entry of ``raster.validate``: a missing or misnamed input fails before GDAL is even imported (the worker's
first raster task would otherwise spend a third of a second loading it to report a typo)."""

from __future__ import annotations

from geomill.engine.context import TaskContext
from geomill.tasks.raster.models import RasterSummary, ValidateRasterParams, source_name


def validate_raster(params: ValidateRasterParams, ctx: TaskContext) -> RasterSummary:
    """Handler of ``raster.validate``: check the source exists, then open and inspect it (tasks/raster/validate)."""
    source_name(params.source, ctx.storage)
    from geomill.tasks.raster import validate

    return validate.validate_raster(params, ctx)
