"""The GDAL environment every raster handler runs in: a fixed block cache, so memory does not grow with input."""

from __future__ import annotations

import rasterio

from geomill.engine.context import TaskContext


def gdal_env(ctx: TaskContext, *, threads: bool = False) -> rasterio.Env:
    """rasterio.Env with the worker's cache. rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64, i.e. in
    BYTES (rasterio#2336): 512 would be a 512-byte cache, so the MiB setting is converted here, in one place."""
    options: dict[str, object] = {"GDAL_CACHEMAX": ctx.limits.gdal_cache_mb * 1024 * 1024}
    if threads:
        options["GDAL_NUM_THREADS"] = ctx.limits.gdal_threads
    return rasterio.Env(**options)
