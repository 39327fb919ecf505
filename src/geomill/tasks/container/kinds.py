"""What kind of file an object is, from its name: what a container inventory reports and a sync acts on."""

from __future__ import annotations

from pathlib import PurePosixPath

from geomill.tasks.raster.sources import RASTER_EXTENSIONS

RASTER = "raster"
VECTOR = "vector"
ARCHIVE = "archive"
SIDECAR = "sidecar"
OTHER = "other"
KINDS = (RASTER, VECTOR, ARCHIVE, SIDECAR, OTHER)

# unambiguous vector formats (.json, .csv and .parquet are not: most such files hold no geometry)
VECTOR_EXTENSIONS = frozenset({".shp", ".gpkg", ".geojson", ".geojsonl", ".geojsons", ".fgb", ".geoparquet", ".kml",
                               ".kmz", ".gml", ".tab"})
ARCHIVE_EXTENSIONS = frozenset({".zip", ".tar", ".gz", ".tgz", ".7z"})
# files that only describe another one (a shapefile's parts, GDAL's side files, world files)
SIDECAR_EXTENSIONS = frozenset({".dbf", ".shx", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".ovr", ".msk", ".aux",
                                ".tfw", ".tifw", ".jgw", ".pgw", ".wld", ".xml", ".qmd"})


def extension(key: str) -> str:
    """The lower-cased last suffix of `key` (``.aux.xml`` counts as ``.xml``), or ``""``."""
    return PurePosixPath(key).suffix.lower()


def is_hidden(key: str) -> bool:
    return any(part.startswith(".") for part in PurePosixPath(key).parts)


def kind_of(key: str) -> str:
    """``raster``, ``vector``, ``archive``, ``sidecar`` or ``other``, by the key's extension. Hidden files (a part
    starting with ``.``) are ``other``: nothing a person uploaded on purpose."""
    if is_hidden(key):
        return OTHER
    ext = extension(key)
    if ext in RASTER_EXTENSIONS:
        return RASTER
    if ext in VECTOR_EXTENSIONS:
        return VECTOR
    if ext in ARCHIVE_EXTENSIONS:
        return ARCHIVE
    if ext in SIDECAR_EXTENSIONS:
        return SIDECAR
    return OTHER


def is_loadable_vector(key: str, kind: str) -> bool:
    """A file a sync with vector loading loads: a vector file, or a .zip archive (a zipped shapefile, ...)."""
    return kind == VECTOR or (kind == ARCHIVE and extension(key) == ".zip")


def normalize_extensions(values: list[str] | None) -> list[str] | None:
    """``["TIF", ".jp2"]`` → ``[".jp2", ".tif"]`` (None stays None: no filter)."""
    if values is None:
        return None
    out = sorted({("." + v.strip().lstrip(".")).lower() for v in values if v.strip().lstrip(".")})
    if not out:
        raise ValueError("extensions is empty; leave it out to keep every file")
    return out


SNIFF_BYTES = 16
# leading bytes of the formats a sync can use, for files whose name says nothing (no or an unknown extension)
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", RASTER), (b"MM\x00*", RASTER), (b"II+\x00", RASTER), (b"MM\x00+", RASTER),  # TIFF, BigTIFF
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", RASTER),  # JPEG 2000
    (b"\x89HDF\r\n\x1a\n", RASTER), (b"CDF\x01", RASTER), (b"CDF\x02", RASTER),  # HDF5 / netCDF-4, netCDF-3
    (b"SQLite format 3\x00", VECTOR),  # GeoPackage (or another SQLite file: opening it tells)
    (b"\x00\x00\x27\x0a", VECTOR),  # shapefile (file code 9994)
    (b"PK\x03\x04", ARCHIVE),
)


def kind_of_bytes(head: bytes) -> str | None:
    """The kind the first bytes of a file give, or None when they match no known format."""
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)
