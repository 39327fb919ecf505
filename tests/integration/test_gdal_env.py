"""The GDAL block cache really in force inside a raster handler's environment (rasterio#2336: bytes, not MB)."""

from __future__ import annotations

import ctypes
import glob
from pathlib import Path

import pytest
import rasterio

from geomill.engine.context import Limits, TaskContext
from geomill.tasks.raster.gdal import gdal_env


def _cache_max() -> int:
    libs = glob.glob(str(Path(rasterio.__file__).parent.parent / "rasterio.libs" / "libgdal*"))
    if not libs:
        pytest.skip("rasterio's bundled libgdal not found (a system GDAL build?)")
    lib = ctypes.CDLL(libs[0])  # already loaded by rasterio: the same library, the same cache
    lib.GDALGetCacheMax64.restype = ctypes.c_int64
    return lib.GDALGetCacheMax64()


def test_cache_setting_is_mebibytes() -> None:
    ctx = TaskContext("t", "j", 1, 1, storage=None, limits=Limits(gdal_cache_mb=48))
    with gdal_env(ctx):
        assert _cache_max() == 48 * 1024 * 1024
