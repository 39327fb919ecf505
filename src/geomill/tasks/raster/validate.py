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
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.io import DatasetReader
from rasterio.transform import array_bounds, from_bounds
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.warp import transform as warp_transform
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
def open_raster(path: Path | str, source: str, subdataset: str | None = None) -> Iterator[DatasetReader]:
    """Open `path` (a local path or a GDAL /vsis3/, /vsiaz/ name) read-only (its subdataset `subdataset` when given:
    a name such as ``temp`` or GDAL's full subdataset string); GDAL refusing it becomes InvalidInput naming the file
    and GDAL's reason."""
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioError as exc:
        raise InvalidInput(
            f"{source!r} ({path}) is not a raster GDAL can read, or it is damaged: {exc}", field="source"
        ) from exc
    if subdataset is not None:
        with ds:
            name = _pick_subdataset(list(ds.subdatasets), subdataset, source)
        try:
            ds = rasterio.open(name)
        except rasterio.errors.RasterioError as exc:
            raise InvalidInput(f"{source!r}: subdataset {subdataset!r} cannot be read: {exc}",
                               field="subdataset") from exc
    with ds:
        yield ds


def _short_name(name: str) -> str:
    """A subdataset's short name: the netCDF variable (``NETCDF:"f.nc":temp`` → ``temp``) or the HDF5 path
    (``HDF5:f.h5://group/temp`` → ``group/temp``)."""
    return name.rsplit(":", 1)[-1].lstrip("/")


def _pick_subdataset(names: list[str], wanted: str, source: str) -> str:
    """The full GDAL name of the subdataset `wanted` (its short name, or the whole string); InvalidInput listing
    the choices."""
    for name in names:
        if wanted in (name, _short_name(name)):
            return name
    listed = ", ".join(_short_name(name) for name in names) or "none"
    raise InvalidInput(f"{source!r} has no subdataset {wanted!r}; its subdatasets: {listed}", field="subdataset")


def subdataset_names(ds: DatasetReader) -> list[str]:
    """The short names (netCDF variable, HDF5 path) of a container's subdatasets."""
    return [_short_name(name) for name in ds.subdatasets]


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


def check_contents(ds: DatasetReader, source: str) -> None:
    """Refuse what has no pixels to convert: a container of subdatasets (listed), no bands, complex numbers,
    variables with more than one dimension beyond y, x and bands."""
    if ds.subdatasets and (ds.count == 0 or ds.driver != "GTiff"):  # a multi-page TIFF: its first page, as before
        names = subdataset_names(ds)
        raise InvalidInput(
            f"{source!r} ({ds.name}) {'has no raster bands of its own (0 bands): it ' if ds.count == 0 else ''}"
            f"is a container of {len(names)} subdatasets ({ds.driver}): "
            f"{', '.join(names)}; choose one with the parameter subdataset (e.g. -p subdataset={names[0]})",
            field="source",
        )
    if ds.count == 0:
        raise InvalidInput(f"{source!r} ({ds.name}) has no raster bands (0 bands): nothing to convert",
                           field="source")
    complex_types = sorted({d for d in ds.dtypes if np.dtype(d).kind == "c"})
    if complex_types:
        raise InvalidInput(
            f"{source!r} ({ds.name}) holds complex numbers ({', '.join(complex_types)}), which COGs and STAC "
            "statistics do not support; convert it to real values first (e.g. amplitude and phase bands)",
            field="source",
        )
    extra = ds.tags().get("NETCDF_DIM_EXTRA", "").strip("{} ")
    dims = [d for d in extra.split(",") if d]
    if len(dims) > 1:
        raise InvalidInput(
            f"{source!r} ({ds.name}) is a variable with {len(dims)} dimensions beyond y and x "
            f"({', '.join(dims)}), flattened by GDAL into {ds.count} bands; only one extra dimension (bands) "
            "is accepted: slice it first (e.g. one time step per file)",
            field="source",
        )


WIDE_INTS = frozenset({"int64", "uint64"})
EXACT_DOUBLE = 2**53  # integers up to this size survive a round trip through a double


def has_wide_int_nodata(ds: DatasetReader) -> bool:
    """A 64-bit integer raster whose nodata value marks pixels."""
    return bool(WIDE_INTS.intersection(ds.dtypes)) and MaskFlags.nodata in ds.mask_flag_enums[0]


def check_nodata_rewritable(ds: DatasetReader, source: str, why: str, *, warped_vrt: bool = False) -> None:
    """Refuse a 64-bit integer raster whose nodata value a rewrite would lose or corrupt. GDAL copies such a value
    exactly, but rasterio hands nodata to GDAL as a double: one beyond 2**53 is written as text like
    ``-9.2233720368547758e+18``, which GDAL reads back for a 64-bit band as -9 (and one it cannot hold at all
    reads as None); and a WarpedVRT of a 64-bit band keeps no nodata at all (every pixel valid). Either would
    publish a COG whose nodata marks the wrong pixels: refuse instead."""
    if not has_wide_int_nodata(ds):
        return
    value, kinds = ds.nodata, "/".join(sorted(WIDE_INTS.intersection(ds.dtypes)))
    if value is not None and abs(value) <= EXACT_DOUBLE and not warped_vrt:
        return
    if value is not None and abs(value) <= EXACT_DOUBLE:
        reason = f"{why} goes through a warped VRT, which keeps no nodata for {kinds} bands (GDAL/rasterio limit)"
        fix = "convert it without target_crs, or below the tiling threshold, or warp it first (gdalwarp)"
    else:
        shown = "beyond what rasterio can read" if value is None else f"{int(value):d}"
        reason = (f"its nodata value ({shown}) is beyond +/-2**53: {why} would write it through a double and "
                  "corrupt it (rasterio limit)")
        fix = "process it without reprojection and below the tiling threshold, or change its nodata value first"
    raise InvalidInput(f"{source!r} ({ds.name}) is an {kinds} raster and {reason}; {fix}", field="source")


def has_gcps(ds: DatasetReader) -> bool:
    """True when the raster is georeferenced by ground control points (with their CRS)."""
    gcps, crs = ds.gcps
    return bool(gcps) and crs is not None


def check_georeferenced(ds: DatasetReader, source: str) -> None:
    """Refuse rasters with nothing to convert (check_contents) or no CRS; GCPs with a CRS are georeferencing."""
    check_contents(ds, source)
    if ds.crs is not None or has_gcps(ds):
        return
    raise InvalidInput(
        f"{source!r} ({ds.name}) has no coordinate reference system; assign one first "
        "(e.g. gdal_edit.py -a_srs EPSG:xxxx) or use a georeferenced file",
        field="source",
    )


def source_crs(ds: DatasetReader) -> CRS:
    """The raster's CRS, or its GCPs' CRS for a raster georeferenced by ground control points."""
    return ds.crs if ds.crs is not None else ds.gcps[1]


def crs_text(ds: DatasetReader) -> tuple[str, int | None]:
    """The CRS (of the GCPs when there are only those) as "EPSG:<code>" when it matches one, else WKT2; and the
    code."""
    crs = source_crs(ds)
    epsg = crs.to_epsg()
    return (f"EPSG:{epsg}" if epsg else crs.to_wkt(version="WKT2_2019")), epsg


SAMPLES_PER_SIDE = 101  # grid of points sampled when the corners do not all transform (off-earth, poles)


def sampled_wgs84_bounds(crs: CRS, transform: Affine, width: int, height: int) -> tuple[float, ...] | None:
    """WGS84 bounds of the points of a dense grid over the raster that do transform (a geostationary disk's
    corners are in space): the footprint of the valid pixels, not of the corners. None if no point transforms."""
    grid_cols, grid_rows = np.meshgrid(np.linspace(0, width, SAMPLES_PER_SIDE),
                                       np.linspace(0, height, SAMPLES_PER_SIDE))
    cols, rows = grid_cols.ravel(), grid_rows.ravel()
    xs = transform.a * cols + transform.b * rows + transform.c
    ys = transform.d * cols + transform.e * rows + transform.f
    with np.errstate(invalid="ignore"):
        lon, lat = (np.asarray(v) for v in warp_transform(crs, "EPSG:4326", list(xs), list(ys)))
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90) & (np.abs(lon) <= 360)
    if not ok.any():
        return None
    lon, lat = np.clip(lon[ok], -180, 180), lat[ok]
    return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())


def wgs84_bounds(ds: DatasetReader, source: str) -> tuple[float, float, float, float]:
    """The raster's bounds in EPSG:4326: densified edges (PROJ handles poles inside); when some corners do not
    transform (a geostationary view of space), the bounds of the pixels that do. GCPs: where GDAL's GCP
    transformer puts the raster."""
    if ds.crs is None:  # georeferenced by GCPs
        crs = source_crs(ds)
        dst_transform, width, height = calculate_default_transform(
            crs, crs, ds.width, ds.height, gcps=ds.gcps[0])
        bounds = array_bounds(height, width, dst_transform)
        native = (bounds[0], bounds[1], bounds[2], bounds[3])
    else:
        crs, native = ds.crs, tuple(ds.bounds)
    left, bottom, right, top = native
    left, right = sorted((left, right))
    bottom, top = sorted((bottom, top))
    try:
        w, s, e, n = transform_bounds(crs, "EPSG:4326", left, bottom, right, top, densify_pts=21)
    except (rasterio.errors.RasterioError, ValueError):
        w = s = e = n = math.inf
    if all(math.isfinite(v) for v in (w, s, e, n)):
        return w, s, e, n
    transform = ds.transform if ds.crs is not None else from_bounds(left, bottom, right, top, ds.width, ds.height)
    sampled = sampled_wgs84_bounds(crs, transform, ds.width, ds.height)
    if sampled is None:
        raise InvalidInput(f"{source!r}: none of its pixels transform to WGS84 coordinates", field="source")
    return sampled  # type: ignore[return-value]


def ordered_bounds(ds: DatasetReader) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) in the raster's CRS, also for south-up grids (positive y pixel size)."""
    left, bottom, right, top = ds.bounds
    return min(left, right), min(bottom, top), max(left, right), max(bottom, top)


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


def summarize(ds: DatasetReader, source: str, path: Path | str, subdataset: str | None = None,
              size_bytes: int | None = None) -> RasterSummary:
    """Describe an open, georeferenced raster (`size_bytes` given for an object in the cloud)."""
    crs, epsg = crs_text(ds)
    is_cog, errors, warnings = validate_cog(path) if subdataset is None else (False, [], [])
    return RasterSummary(
        source=source, path=str(path), size_bytes=Path(path).stat().st_size if size_bytes is None else size_bytes,
        driver=ds.driver,
        crs=crs, epsg=epsg, width=ds.width, height=ds.height, count=ds.count,
        dtypes=list(ds.dtypes), nodata=_nodata(ds), bounds=ordered_bounds(ds),
        bounds_wgs84=wgs84_bounds(ds, source), resolution=ds.res,
        block_shapes=[tuple(s) for s in ds.block_shapes], tiled=ds.profile.get("tiled", False),
        has_colormap=has_colormap(ds), overview_count=len(ds.overviews(1)),
        is_cog=bool(is_cog and not errors), cog_errors=errors, cog_warnings=warnings,
        subdataset=subdataset, gcp_count=0 if ds.crs is not None else len(ds.gcps[0]),
    )


def inspect_raster(source: str, storage: Storage, subdataset: str | None = None) -> RasterSummary:
    """Resolve, open, check and describe `source`; InvalidInput for anything a person must fix."""
    name = source_name(source, storage)
    size = storage.stat(source).size if storage.is_remote(source) else None
    with open_raster(name, source, subdataset) as ds:
        check_georeferenced(ds, source)
        check_readable(ds, source)
        return summarize(ds, source, name, subdataset, size)


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
        summary = inspect_raster(params.source, ctx.storage, params.subdataset)
    threshold = ctx.limits.large_raster_threshold_mb
    summary.processing = choose_processing(summary, threshold)
    if summary.processing.path == "tiled" and (summary.subdataset or summary.gcp_count):
        what = "a subdataset" if summary.subdataset else "a raster georeferenced by GCPs"
        summary.processing = summary.processing.model_copy(update={"path": "single", "reason": (
            f"{summary.processing.reason}; but {what} is converted as one COG (the tiled path reads neither "
            "subdatasets nor GCPs)")})
    ctx.progress(1.0, "validated")
    logger.info("raster valid", extra={"task_id": ctx.task_id, "source": params.source, "is_cog": summary.is_cog})
    return summary
