"""Task ``raster.validate``: open a raster with GDAL, prove it is readable and georeferenced, describe it."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from rasterio.io import DatasetReader
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geomill.domain import InvalidInput
from geomill.engine.context import Storage, TaskContext
from geomill.tasks.raster.cogcheck import validate_cog
from geomill.tasks.raster.gdal import gdal_env
from geomill.tasks.raster.models import (  # noqa: F401  (re-exported)
    ProcessingChoice,
    RasterSummary,
    ValidateRasterParams,
    resolve_source,
    source_name,
)

logger = logging.getLogger(__name__)

PROBE_SIZE = 256  # pixels per side of the windows read to prove the data is there


@contextmanager
def open_raster(path: Path | str, source: str) -> Iterator[DatasetReader]:
    """Open `path` (a local path or a GDAL /vsis3/, /vsiaz/ name) read-only; GDAL refusing it becomes InvalidInput naming the file and GDAL's reason."""
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioError as exc:
        raise InvalidInput(
            f"{source!r} ({path}) is not a raster GDAL can read, or it is damaged: {exc}", field="source"
        ) from exc
    with ds:
        yield ds


def _probe_windows(ds: DatasetReader) -> list[Window]:
    """Small windows at the first and the last pixel: a truncated file fails on the last block it holds."""
    w, h = min(PROBE_SIZE, ds.width), min(PROBE_SIZE, ds.height)
    return [Window(0, 0, w, h), Window(ds.width - w, ds.height - h, w, h)]


def check_readable(ds: DatasetReader, source: str) -> None:
    """Really read the first and last pixels of every band (bounded memory), so truncation is caught here."""
    try:
        for window in _probe_windows(ds):
            for band in ds.indexes:
                ds.read(band, window=window)
    except rasterio.errors.RasterioError as exc:
        raise InvalidInput(
            f"{source!r} ({ds.name}) is corrupt or truncated: reading its pixel data failed: {exc}", field="source"
        ) from exc


def check_georeferenced(ds: DatasetReader, source: str) -> None:
    """Refuse rasters with no CRS; GCP-only georeferencing is refused with a hint."""
    if ds.crs is not None:
        return
    if ds.gcps[0]:
        raise InvalidInput(
            f"{source!r} ({ds.name}) is georeferenced by ground control points only; "
            "warp it to a CRS first (e.g. gdalwarp -t_srs EPSG:4326)",
            field="source",
        )
    raise InvalidInput(
        f"{source!r} ({ds.name}) has no coordinate reference system; assign one first "
        "(e.g. gdal_edit.py -a_srs EPSG:xxxx) or use a georeferenced file",
        field="source",
    )


def crs_text(ds: DatasetReader) -> tuple[str, int | None]:
    """The CRS as "EPSG:<code>" when it matches one, else WKT; and the code."""
    epsg = ds.crs.to_epsg()
    return (f"EPSG:{epsg}" if epsg else ds.crs.to_wkt()), epsg


def wgs84_bounds(ds: DatasetReader, source: str) -> tuple[float, float, float, float]:
    """The raster's bounds in EPSG:4326 (densified edges)."""
    try:
        bounds = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    except (rasterio.errors.RasterioError, ValueError) as exc:
        raise InvalidInput(f"{source!r}: its bounds cannot be transformed to WGS84: {exc}", field="source") from exc
    if not all(math.isfinite(v) for v in bounds):
        raise InvalidInput(f"{source!r}: its bounds do not transform to finite WGS84 coordinates", field="source")
    return tuple(bounds)


def has_colormap(ds: DatasetReader) -> bool:
    """True when band 1 carries a color table (a palette, i.e. categorical data)."""
    try:
        ds.colormap(1)
    except ValueError:
        return False
    return True


def _nodata(ds: DatasetReader) -> float | str | None:
    value = ds.nodata
    return "nan" if value is not None and math.isnan(value) else value


def summarize(ds: DatasetReader, source: str, path: Path | str, size_bytes: int | None = None) -> RasterSummary:
    """Describe an open, georeferenced raster (`size_bytes` given for an object in the cloud)."""
    crs, epsg = crs_text(ds)
    is_cog, errors, warnings = validate_cog(path)
    return RasterSummary(
        source=source, path=str(path), size_bytes=Path(path).stat().st_size if size_bytes is None else size_bytes,
        driver=ds.driver,
        crs=crs, epsg=epsg, width=ds.width, height=ds.height, count=ds.count,
        dtypes=list(ds.dtypes), nodata=_nodata(ds), bounds=tuple(ds.bounds),
        bounds_wgs84=wgs84_bounds(ds, source), resolution=ds.res,
        block_shapes=[tuple(s) for s in ds.block_shapes], tiled=ds.profile.get("tiled", False),
        has_colormap=has_colormap(ds), overview_count=len(ds.overviews(1)),
        is_cog=bool(is_cog and not errors), cog_errors=errors, cog_warnings=warnings,
    )


def inspect_raster(source: str, storage: Storage) -> RasterSummary:
    """Resolve, open, check and describe `source`; InvalidInput for anything a person must fix."""
    name = source_name(source, storage)
    size = storage.stat(source).size if storage.is_remote(source) else None
    with open_raster(name, source) as ds:
        check_georeferenced(ds, source)
        check_readable(ds, source)
        return summarize(ds, source, name, size)


def uncompressed_bytes(summary: RasterSummary) -> int:
    """Bytes of the full-resolution pixels once decompressed (what a reader really has to move)."""
    return summary.width * summary.height * sum(np.dtype(d).itemsize for d in summary.dtypes)


def choose_processing(summary: RasterSummary, threshold_mb: float) -> ProcessingChoice:
    """Tiled when the file or its uncompressed pixels are larger than the threshold, else a single COG."""
    file_mb, pixels_mb = summary.size_bytes / 2**20, uncompressed_bytes(summary) / 2**20
    measured = max(file_mb, pixels_mb)
    what = f"{pixels_mb:,.1f} MB of uncompressed pixels ({summary.width}x{summary.height}x{summary.count} " \
           f"{'/'.join(sorted(set(summary.dtypes)))}), file {file_mb:,.1f} MB"
    if measured > threshold_mb:
        return ProcessingChoice(path="tiled", threshold_mb=threshold_mb, measured_mb=measured, reason=(
            f"{what}: larger than GEOMILL_LARGE_RASTER_THRESHOLD_MB={threshold_mb:g}, so it is cut into tiles "
            "that are processed in parallel with bounded memory, then mosaicked"))
    return ProcessingChoice(path="single", threshold_mb=threshold_mb, measured_mb=measured, reason=(
        f"{what}: not larger than GEOMILL_LARGE_RASTER_THRESHOLD_MB={threshold_mb:g}, so one COG"))


def validate_raster(params: ValidateRasterParams, ctx: TaskContext) -> RasterSummary:
    """Handler of ``raster.validate``; decides single vs tiled processing with the worker's threshold."""
    with gdal_env(ctx):
        summary = inspect_raster(params.source, ctx.storage)
    threshold = ctx.limits.large_raster_threshold_mb
    summary.processing = choose_processing(summary, threshold)
    ctx.progress(1.0, "validated")
    logger.info("raster valid", extra={"task_id": ctx.task_id, "source": params.source, "is_cog": summary.is_cog})
    return summary
