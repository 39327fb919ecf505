"""The raster tasks' parameter models, option names and storage layout: light (no GDAL), so job plans, submission
checks and the planner import them without loading rasterio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from geomill.domain import InvalidInput
from geomill.engine.context import Storage

DEFAULT_COMPRESSION = "DEFLATE"
COMPRESSIONS = (
    "DEFLATE", "ZSTD", "LZW", "LZMA", "PACKBITS", "NONE", "JPEG", "WEBP", "LERC", "LERC_DEFLATE", "LERC_ZSTD",
)
BYTE_ONLY_COMPRESSIONS = frozenset({"JPEG", "WEBP"})
PREDICTOR_COMPRESSIONS = frozenset({"DEFLATE", "ZSTD", "LZW"})
# our name -> GDAL's name (COG driver RESAMPLING option); the rasterio enum uses our names
RESAMPLINGS = {
    "nearest": "NEAREST", "average": "AVERAGE", "bilinear": "BILINEAR", "cubic": "CUBIC",
    "cubic_spline": "CUBICSPLINE", "lanczos": "LANCZOS", "mode": "MODE", "rms": "RMS",
}
DEFAULT_TILE_SIZE = 8192
TILES_PREFIX = "tiles"  # silver://tiles/<name>/{extract,cogs}/<tile>.tif


def normalize_compression(value: str | None) -> str | None:
    """Upper-case a compression name; InvalidInput listing the allowed names if unknown."""
    if value is None:
        return None
    name = value.strip().upper()
    if name not in COMPRESSIONS:
        raise InvalidInput(
            f"unknown compression {value!r}; allowed: {', '.join(COMPRESSIONS)}", field="compression"
        )
    return name


def normalize_resampling(value: str | None) -> str | None:
    """Lower-case a resampling name (``cubicspline`` accepted); InvalidInput listing the allowed names if unknown."""
    if value is None:
        return None
    name = value.strip().lower().replace("cubicspline", "cubic_spline")
    if name not in RESAMPLINGS:
        raise InvalidInput(f"unknown resampling {value!r}; allowed: {', '.join(RESAMPLINGS)}", field="resampling")
    return name


def parse_crs(value: str | None) -> Any:
    """Parse a CRS (a rasterio CRS) given as EPSG:xxxx, WKT or PROJ string; InvalidInput if GDAL/PROJ cannot."""
    if value is None or not value.strip():
        return None
    import rasterio.errors  # only when a CRS is given: the rest of this module stays free of GDAL
    from rasterio.crs import CRS

    try:
        return CRS.from_user_input(value.strip())
    except rasterio.errors.CRSError as exc:
        raise InvalidInput(f"target_crs {value!r} is not a CRS GDAL/PROJ understands: {exc}",
                           field="target_crs") from exc


def extract_uri(name: str, key: str) -> str:
    return f"silver://{TILES_PREFIX}/{name}/extract/{key}.tif"


def cog_key(name: str, key: str) -> str:
    return f"{TILES_PREFIX}/{name}/cogs/{key}.tif"


SUBDATASET_DESCRIPTION = "the subdataset of a container (netCDF variable, HDF5 dataset) to process, by name"


class ValidateRasterParams(BaseModel):
    source: str = Field(min_length=1, description="local path or storage URI (bronze://, silver://, file://)")
    subdataset: str | None = Field(None, description=SUBDATASET_DESCRIPTION)


class CreateCogParams(BaseModel):
    source: str = Field(min_length=1, description="local path or storage URI of the input raster")
    target_crs: str | None = Field(None, description="reproject to this CRS (EPSG:xxxx, WKT, PROJ string)")
    compression: str | None = Field(None, description=f"one of {', '.join(COMPRESSIONS)}; default DEFLATE")
    resampling: str | None = Field(None, description=f"one of {', '.join(RESAMPLINGS)}; default per data")
    output_key: str | None = Field(None, description="key in the silver zone; default cogs/<stem>-<fingerprint>.tif")
    subdataset: str | None = Field(None, description=SUBDATASET_DESCRIPTION)
    gcp_method: str | None = Field(None, description="GCP-georeferenced input: 'polynomial' (default) or 'tps' "
                                                     "(thin-plate spline)")


class MosaicParams(BaseModel):
    cogs: list[str] = Field(min_length=1, description="storage URIs (or paths) of the COGs, first wins on overlap")
    name: str = Field(min_length=1, description="file name of the outputs: silver://mosaics/<name>.json and .vrt")
    quadkey_zoom: int | None = Field(None, ge=0, le=30, description="MosaicJSON quadkey zoom; default its minzoom")


class ListSourcesParams(BaseModel):
    prefix: str = Field(min_length=1, description="a folder, or a storage prefix such as bronze://scenes/")


class TileSchemeParams(BaseModel):
    source: str = Field(min_length=1, description="local path or storage URI of the input raster")
    target_crs: str | None = Field(None, description="reproject to this CRS; None keeps the source's")
    tile_size: int = Field(DEFAULT_TILE_SIZE, ge=256, le=65536, multiple_of=256, description="tile side, pixels")
    compression: str | None = Field(None, description=f"one of {', '.join(COMPRESSIONS)}; default DEFLATE")
    resampling: str | None = Field(None, description=f"one of {', '.join(RESAMPLINGS)}; default per data")


class Grid(BaseModel):
    """The output pixel grid: CRS (WKT), affine transform (a, b, c, d, e, f) and size."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int


class TileWindow(BaseModel):
    key: str  # r<row>c<col>, zero-padded so keys sort in grid order
    row: int
    col: int
    col_off: int
    row_off: int
    width: int
    height: int


class ExtractTileParams(BaseModel):
    source: str = Field(min_length=1)
    grid: Grid
    reproject: bool
    resampling: str
    tile: TileWindow
    output_uri: str = Field(min_length=1, description="where the intermediate GeoTIFF goes (silver://...)")


class RemoveIntermediatesParams(BaseModel):
    uri: str = Field(min_length=1, description="a folder under silver://tiles/ to delete")


class ProcessingChoice(BaseModel):
    """How process_raster treats this raster: one COG (``single``) or tiles + mosaic (``tiled``), and why."""

    path: str  # "single" or "tiled"
    reason: str
    threshold_mb: float
    measured_mb: float  # the larger of the file's size and its uncompressed pixel size


class RasterSummary(BaseModel):
    """What a valid raster looks like; NaN nodata is reported as the string "nan" so results stay plain JSON."""

    source: str
    path: str
    size_bytes: int
    driver: str
    crs: str  # "EPSG:<code>" when the CRS matches an EPSG code, else WKT
    epsg: int | None
    width: int
    height: int
    count: int
    dtypes: list[str]
    nodata: float | str | None
    bounds: tuple[float, float, float, float]
    bounds_wgs84: tuple[float, float, float, float]
    resolution: tuple[float, float]
    block_shapes: list[tuple[int, int]]
    tiled: bool
    has_colormap: bool
    overview_count: int
    is_cog: bool
    cog_errors: list[str] = []
    cog_warnings: list[str] = []
    processing: ProcessingChoice | None = None
    subdataset: str | None = None  # the container's subdataset this describes
    gcp_count: int = 0  # > 0: georeferenced by ground control points (warped by them when converted)


def source_name(source: str, storage: Storage) -> str:
    """What GDAL opens for `source`: the local file (checked as resolve_source does), or ``/vsis3/…``/``/vsiaz/…``
    for an object in S3 or Azure, checked to exist first (InvalidInput: no such object, no such bucket, access
    denied). The object is read in place, never downloaded whole."""
    if storage.is_remote(source):
        storage.stat(source)
        return storage.gdal_path(source)
    return str(resolve_source(source, storage))


def resolve_source(source: str, storage: Storage) -> Path:
    """The local file behind `source`, or InvalidInput when there is no such file."""
    path = storage.local_path(source)  # StorageError is an InvalidInput already
    if not path.exists():
        raise InvalidInput(f"raster {source!r} not found: no file at {path}", field="source")
    if not path.is_file():
        raise InvalidInput(f"raster {source!r} is not a file ({path} is a directory?)", field="source")
    return path
