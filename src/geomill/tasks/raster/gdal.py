"""The GDAL environment every raster handler runs in: a fixed block cache, so memory does not grow with input."""

from __future__ import annotations

import rasterio

from geomill.engine.context import TaskContext

# GDAL caches what it learns of /vsis3/ and /vsiaz/ objects (sizes, folder listings) for the life of the process;
# a long-lived worker would then not see an object published after it listed the folder ("not recognized as being
# in a supported file format"). Cached per open file only: each task reads what is there now.
NON_CACHED = "/vsis3/:/vsiaz/"


def gdal_env(ctx: TaskContext, *, threads: bool = False) -> rasterio.Env:
    """rasterio.Env with the worker's cache. rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64, i.e. in
    BYTES (rasterio#2336): 512 would be a 512-byte cache, so the MiB setting is converted here, in one place."""
    options: dict[str, object] = {"GDAL_CACHEMAX": ctx.limits.gdal_cache_mb * 1024 * 1024,
                                  "CPL_VSIL_CURL_NON_CACHED": NON_CACHED}
    if threads:
        options["GDAL_NUM_THREADS"] = ctx.limits.gdal_threads
    return rasterio.Env(**options)
