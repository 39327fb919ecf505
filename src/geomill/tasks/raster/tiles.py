"""Tasks of tiled raster processing: ``raster.tile_scheme``, ``raster.extract_tile``, ``raster.remove_intermediates``.

A raster too large for one task is cut into a plain grid of tiles in the OUTPUT grid: the source's own grid, or,
when reprojecting, the grid ``rasterio.warp.calculate_default_transform`` gives for the target CRS. Tile (r, c)
covers output pixels ``[r*size, (r+1)*size) x [c*size, (c+1)*size)`` clipped to the grid, so tiles abut exactly:
no gap, no overlap (buffer 0), and their union is the whole output grid.

Extraction reads one tile's window (through a ``WarpedVRT`` of the whole output grid when reprojecting, so pixels at
a tile's edge are resampled from the same source pixels as in a whole-image warp and nodata appears only outside
the source's footprint) in strips of ``STRIP_ROWS`` rows, and writes it as an uncompressed tiled GeoTIFF in silver:
memory is bounded by a strip, not by the tile, and never by the file. Outputs are written to a temporary name
and published atomically (``storage.staging``: renamed into place, or uploaded in one put when silver is in S3 or
Azure), so a killed worker never leaves a half tile under the final name. A source in S3/Azure is read in place
(``/vsis3/``, ``/vsiaz/``); a tile bound for a remote silver zone is compressed (ZSTD, fast level) to halve the
upload, and local disk holds one tile at a time.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import rasterio
import rasterio.errors
from pydantic import BaseModel
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.io import DatasetReader
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geomill.domain import InvalidInput, TaskError, canonical_json
from geomill.engine.context import Storage, TaskContext
from geomill.tasks.raster.cog import (
    _check_compression_fits,
    _fingerprint,
    _needs_alpha,
    normalize_compression,
    normalize_resampling,
    parse_crs,
    source_identity,
)
from geomill.tasks.raster.gdal import gdal_env
from geomill.tasks.raster.models import (
    TILES_PREFIX,
    ExtractTileParams,
    Grid,
    RemoveIntermediatesParams,
    TileSchemeParams,
    TileWindow,
)
from geomill.tasks.raster.validate import (
    check_georeferenced,
    check_nodata_rewritable,
    check_readable,
    has_colormap,
    open_raster,
    source_name,
)

logger = logging.getLogger(__name__)

STRIP_ROWS = 512  # rows read and written at once: tile width x 512 x bands x dtype bytes of memory
BLOCK = 512
SCHEME_VERSION = 1


class TileScheme(BaseModel):
    source: str
    name: str  # safe, deterministic: <stem>-<fingerprint>; names the silver folder, mosaic and collection
    grid: Grid
    reproject: bool
    tile_size: int
    buffer: int = 0  # tiles abut exactly
    rows: int
    cols: int
    count: int
    dtype: str
    nodata: float | str | None  # NaN as "nan", so results stay plain JSON
    compression: str
    resampling: str
    tiles: list[TileWindow]


class ExtractedTile(BaseModel):
    key: str
    uri: str
    path: str
    size_bytes: int
    width: int
    height: int
    count: int
    reused: bool


class RemovedIntermediates(BaseModel):
    uri: str
    files: int
    bytes: int


# ---------------------------------------------------------------- tiling scheme


def output_grid(src: DatasetReader, dst_crs: CRS | None) -> Grid:
    """The source's grid, or the default grid of its reprojection to `dst_crs` (GDAL's suggested warp output)."""
    if dst_crs is None:
        return Grid(crs=src.crs.to_wkt(), transform=tuple(src.transform)[:6], width=src.width, height=src.height)
    try:
        transform, width, height = calculate_default_transform(src.crs, dst_crs, src.width, src.height, *src.bounds)
    except (rasterio.errors.RasterioError, ValueError) as exc:
        raise InvalidInput(f"{src.name}: cannot be reprojected to {dst_crs}: {exc}", field="target_crs") from exc
    return Grid(crs=dst_crs.to_wkt(), transform=tuple(transform)[:6], width=width, height=height)


def tile_windows(width: int, height: int, size: int) -> list[TileWindow]:
    """Row-major tiles of `size` pixels over a width x height grid; the last row and column are clipped."""
    rows, cols = -(-height // size), -(-width // size)
    digits = max(4, len(str(max(rows, cols))))
    return [
        TileWindow(key=f"r{r:0{digits}d}c{c:0{digits}d}", row=r, col=c, col_off=c * size, row_off=r * size,
                   width=min(size, width - c * size), height=min(size, height - r * size))
        for r in range(rows) for c in range(cols)
    ]


def scheme_name(identity: tuple[str, dict[str, object]], compression: str, resampling: str, dst_crs: CRS | None,
                tile_size: int) -> str:
    """``<stem>-<16 hex>``: the COG fingerprint (source identity, see `source_identity`, + options) plus the tile
    size."""
    base = _fingerprint(identity[0], identity[1], compression, resampling, dst_crs)
    digest = hashlib.sha256(canonical_json({"v": SCHEME_VERSION, "cog": base, "tile": tile_size}).encode())
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(identity[0]).stem).strip("_-")[:60] or "raster"
    return f"{stem}-{digest.hexdigest()[:16]}"


def _nodata(src: DatasetReader) -> float | str | None:
    return "nan" if src.nodata is not None and math.isnan(src.nodata) else src.nodata


def tile_scheme(params: TileSchemeParams, ctx: TaskContext) -> TileScheme:
    """Handler of ``raster.tile_scheme``: the output grid and its tiles (no pixel is read but two probes)."""
    with gdal_env(ctx):
        name = source_name(params.source, ctx.storage)
        with open_raster(name, params.source) as src:
            check_georeferenced(src, params.source)
            if src.crs is None:
                raise InvalidInput(
                    f"{params.source!r} is georeferenced by ground control points only, which the tiled path "
                    "does not warp; warp it first (gdalwarp), or raise GEOMILL_LARGE_RASTER_THRESHOLD_MB so it "
                    "is converted as one COG", field="source")
            check_readable(src, params.source)
            compression = normalize_compression(params.compression) or "DEFLATE"
            _check_compression_fits(compression, src, params.source)
            resampling = normalize_resampling(params.resampling) or ("nearest" if has_colormap(src) else "average")
            dst_crs = parse_crs(params.target_crs)
            if dst_crs is not None and dst_crs == src.crs:
                dst_crs = None
            check_nodata_rewritable(src, params.source, "cutting it into tiles" if dst_crs is None else
                                    "reprojecting its tiles", warped_vrt=dst_crs is not None)
            grid = output_grid(src, dst_crs)
            tiles = tile_windows(grid.width, grid.height, params.tile_size)
            scheme = TileScheme(
                source=params.source,
                name=scheme_name(source_identity(params.source, ctx.storage), compression, resampling, dst_crs,
                                 params.tile_size),
                grid=grid, reproject=dst_crs is not None, tile_size=params.tile_size,
                rows=tiles[-1].row + 1, cols=tiles[-1].col + 1, count=src.count, dtype=src.dtypes[0],
                nodata=_nodata(src), compression=compression, resampling=resampling, tiles=tiles,
            )
    ctx.progress(1.0, f"{len(tiles)} tiles of {params.tile_size} px over {grid.width}x{grid.height}")
    return scheme


# ---------------------------------------------------------------- extraction


@contextmanager
def tile_reader(src: DatasetReader, params: ExtractTileParams) -> Iterator[DatasetReader | WarpedVRT]:
    """What to read the tile's window from: the source itself, or a WarpedVRT covering the whole output grid."""
    if not params.reproject:
        yield src
        return
    grid = params.grid
    with WarpedVRT(src, crs=CRS.from_wkt(grid.crs), transform=Affine(*grid.transform), width=grid.width,
                   height=grid.height, resampling=Resampling[params.resampling],
                   add_alpha=_needs_alpha(src)) as vrt:
        yield vrt


def _has_dataset_mask(reader: DatasetReader | WarpedVRT) -> bool:
    flags = reader.mask_flag_enums[0]
    return MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags and MaskFlags.nodata not in flags


def _profile(reader: DatasetReader | WarpedVRT, params: ExtractTileParams, compress: bool) -> dict[str, object]:
    tile = params.tile
    window = Window(tile.col_off, tile.row_off, tile.width, tile.height)
    codec = {"compress": "zstd", "zstd_level": 1} if compress else {"compress": "none"}
    return {
        "driver": "GTiff", "width": tile.width, "height": tile.height, "count": reader.count,
        "dtype": reader.dtypes[0], "crs": CRS.from_wkt(params.grid.crs),
        "transform": window_transform(window, Affine(*params.grid.transform)), "nodata": reader.nodata,
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, **codec, "BIGTIFF": "IF_SAFER",
        "interleave": "pixel" if reader.count > 1 else "band",
    }


def _copy_metadata(reader: DatasetReader | WarpedVRT, src: DatasetReader, dst: rasterio.io.DatasetWriter) -> None:
    dst.colorinterp = reader.colorinterp
    if has_colormap(src):
        dst.write_colormap(1, src.colormap(1))
    for i, desc in enumerate(src.descriptions, 1):
        if desc and i <= dst.count:
            dst.set_band_description(i, desc)


def copy_window(reader: DatasetReader | WarpedVRT, src: DatasetReader, dst_path: Path,
                params: ExtractTileParams, ctx: TaskContext, *, compress: bool = False) -> None:
    """Copy the tile's window strip by strip (bounded memory) into a new GeoTIFF at `dst_path`."""
    tile = params.tile
    mask = _has_dataset_mask(reader)
    with rasterio.open(dst_path, "w", **_profile(reader, params, compress)) as dst:
        _copy_metadata(reader, src, dst)
        for row in range(0, tile.height, STRIP_ROWS):
            if ctx.cancelled:
                raise TaskError("job cancelled during tile extraction")
            rows = min(STRIP_ROWS, tile.height - row)
            window = Window(tile.col_off, tile.row_off + row, tile.width, rows)
            target = Window(0, row, tile.width, rows)
            dst.write(reader.read(window=window), window=target)
            if mask:
                dst.write_mask(reader.read_masks(1, window=window), window=target)
            ctx.progress((row + rows) / tile.height, f"tile {tile.key}: {row + rows}/{tile.height} rows")


def _complete(uri: str, tile: TileWindow, storage: Storage) -> bool:
    """An earlier attempt's output: it only ever appears under its final name once fully written."""
    if not storage.exists(uri):
        return False
    try:
        with rasterio.open(storage.gdal_path(uri)) as ds:
            return (ds.width, ds.height) == (tile.width, tile.height)
    except rasterio.errors.RasterioError:
        return False


def _describe(params: ExtractTileParams, storage: Storage, reused: bool) -> ExtractedTile:
    uri = params.output_uri
    with rasterio.open(storage.gdal_path(uri)) as ds:
        count = ds.count
    return ExtractedTile(key=params.tile.key, uri=uri, path=storage.object_uri(uri), size_bytes=storage.stat(uri).size,
                         width=params.tile.width, height=params.tile.height, count=count, reused=reused)


def extract_tile(params: ExtractTileParams, ctx: TaskContext) -> ExtractedTile:
    """Handler of ``raster.extract_tile``: one tile of the output grid as an intermediate GeoTIFF in silver (a local
    temporary file published atomically: renamed into a local zone, uploaded to S3/Azure)."""
    storage = ctx.storage
    with gdal_env(ctx):
        if _complete(params.output_uri, params.tile, storage):
            return _describe(params, storage, reused=True)
        try:
            name = source_name(params.source, storage)
            with open_raster(name, params.source) as src, tile_reader(src, params) as reader, \
                    storage.staging(params.output_uri) as tmp:
                copy_window(reader, src, tmp, params, ctx, compress=storage.is_remote(params.output_uri))
        except rasterio.errors.RasterioError as exc:
            raise TaskError(f"extracting tile {params.tile.key} of {params.source!r} failed: {exc}") from exc
        logger.info("tile extracted", extra={"task_id": ctx.task_id, "tile": params.tile.key,
                                             "uri": params.output_uri})
        return _describe(params, storage, reused=False)


# ---------------------------------------------------------------- clean-up


def remove_intermediates(params: RemoveIntermediatesParams, ctx: TaskContext) -> RemovedIntermediates:
    """Handler of ``raster.remove_intermediates``: delete a folder of extracted tiles (missing is fine)."""
    if not params.uri.startswith(f"silver://{TILES_PREFIX}/"):
        raise InvalidInput(f"{params.uri!r}: only folders under silver://{TILES_PREFIX}/ are removed", field="uri")
    storage = ctx.storage
    if storage.is_remote(params.uri):  # objects under the prefix, deleted batch by batch
        files = size = 0
        for batch in storage.list(params.uri.rstrip("/") + "/"):
            for entry in batch:
                storage.delete(entry.uri)
                files, size = files + 1, size + entry.size
        return RemovedIntermediates(uri=params.uri, files=files, bytes=size)
    folder = storage.local_path(params.uri)
    found = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    total = sum(p.stat().st_size for p in found)
    shutil.rmtree(folder, ignore_errors=True)
    return RemovedIntermediates(uri=params.uri, files=len(found), bytes=total)
