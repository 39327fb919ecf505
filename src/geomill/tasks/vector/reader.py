"""Reading one layer as a stream of Arrow batches (pyogrio), with its CRS resolved and its geometries found.

Geometries come from the layer's geometry column, or for a CSV without one from x/y (lon/lat) columns or a WKT
column, named by parameters or detected from common names. Batches are bounded, so memory does not grow with the
file (GDAL's GeoJSON driver streams too).
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyogrio
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError, FieldError, GeometryError
from pyproj import CRS
from pyproj.exceptions import CRSError

from geomill.domain import InvalidInput
from geomill.tasks.vector.naming import detect_wkt_column, detect_xy_columns, is_lonlat
from geomill.tasks.vector.sources import SourceLayer

CSV_OPTIONS = {"AUTODETECT_TYPE": "YES", "EMPTY_STRING_AS_NULL": "YES", "KEEP_GEOM_COLUMNS": "NO"}
GDAL_GEOMETRY_NAMES = ("wkb_geometry", "geometry", "geom")
CURVE_TYPES = {8, 9, 10, 11, 12, 13, 14}  # CircularString, CompoundCurve, CurvePolygon, MultiCurve, MultiSurface...
SURFACE_TYPES = {15: "PolyhedralSurface", 16: "TIN", 17: "Triangle"}


LONLAT_DRIVERS = ("TopoJSON",)


def _driver(layer: SourceLayer) -> str | None:
    try:
        return str(pyogrio.read_info(layer.path, layer=layer.layer)["driver"])
    except (DataSourceError, DataLayerError):
        return None


@dataclass(frozen=True)
class CsvGeometry:
    """Where a CSV's geometries are: x and y columns, or a WKT column."""

    x: str | None = None
    y: str | None = None
    wkt: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    crs: str | None
    encoding: str | None
    x_column: str | None
    y_column: str | None
    wkt_column: str | None
    batch_rows: int


@dataclass(frozen=True)
class LayerInfo:
    """What is known of a layer once it is open: its CRS and EPSG code, attribute names, where geometries are."""

    crs: CRS
    srid: int
    attributes: list[str]
    geometry_column: str | None
    csv: CsvGeometry | None


def parse_crs(value: str, label: str, field: str = "crs") -> tuple[CRS, int]:
    """A CRS and its EPSG code (PostGIS needs one); refusals name the source and the value."""
    try:
        crs = CRS.from_user_input(value)
    except CRSError as exc:
        raise InvalidInput(f"CRS {value!r} of {label} is not a CRS PROJ knows: {exc}", field=field) from exc
    epsg = crs.to_epsg(min_confidence=70)
    if epsg is None:
        raise InvalidInput(f"the CRS of {label} matches no EPSG code ({crs.name}); give crs=EPSG:<code>",
                           field=field)
    return crs, epsg


def _csv_geometry(names: list[str], options: ReadOptions, label: str) -> CsvGeometry:
    if options.wkt_column:
        if options.wkt_column not in names:
            raise InvalidInput(f"wkt_column {options.wkt_column!r} is not a column of {label} "
                               f"(columns: {', '.join(names)})", field="wkt_column")
        return CsvGeometry(wkt=options.wkt_column)
    if options.x_column or options.y_column:
        for field, name in (("x_column", options.x_column), ("y_column", options.y_column)):
            if not name or name not in names:
                raise InvalidInput(f"{field} {name!r} is not a column of {label} (columns: {', '.join(names)}); "
                                   "give both x_column and y_column", field=field)
        return CsvGeometry(x=options.x_column, y=options.y_column)
    xy = detect_xy_columns(names)
    if xy:
        return CsvGeometry(x=xy[0], y=xy[1])
    wkt = detect_wkt_column(names)
    if wkt:
        return CsvGeometry(wkt=wkt)
    raise InvalidInput(f"{label} has no geometry column: no lon/lat or x/y columns and no WKT column were found "
                       f"(columns: {', '.join(names)}); give x_column and y_column, or wkt_column", field="source")


def _layer_info(meta: dict[str, Any], schema: pa.Schema, layer: SourceLayer, options: ReadOptions) -> LayerInfo:
    names = [n for n in schema.names]
    geometry_column = meta.get("geometry_name") or next((n for n in GDAL_GEOMETRY_NAMES if n in names), None)
    has_geometry = meta.get("geometry_type") is not None and geometry_column in names
    csv = None
    if not has_geometry:
        if not layer.is_csv:
            raise InvalidInput(f"{layer.label} has no geometry column: it is a table without geometries",
                               field="source")
        csv = _csv_geometry(names, options, layer.label)
        geometry_column = None
    crs_text = options.crs or meta.get("crs")
    if not crs_text and csv is not None and csv.x and is_lonlat(csv.x, csv.y or ""):
        crs_text = "EPSG:4326"  # columns named lon/lat: WGS84 longitude/latitude
    if not crs_text and csv is None and _driver(layer) in LONLAT_DRIVERS:
        crs_text = "EPSG:4326"  # TopoJSON: WGS84 longitude/latitude (GDAL reports no CRS for it)
    if not crs_text:
        raise InvalidInput(f"the CRS of {layer.label} is unknown (no .prj or CRS in the file); give it with "
                           "crs=EPSG:<code>", field="crs")
    crs, srid = parse_crs(crs_text, layer.label)
    skip = {geometry_column} | ({csv.x, csv.y, csv.wkt} if csv else set())
    attributes = [n for n in names if n not in skip]
    return LayerInfo(crs, srid, attributes, geometry_column, csv)


def _numbers(batch: pa.RecordBatch, name: str, label: str) -> np.ndarray:
    column = batch.column(name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        try:
            column = pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            bad = next((v for v in column.to_pylist() if v is not None and not _is_number(v)), None)
            raise InvalidInput(f"coordinate column {name!r} of {label} is not numeric (e.g. value {bad!r}); "
                               "x/y columns must hold numbers", field="source") from exc
    return column.to_numpy(zero_copy_only=False).astype("float64")


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _wkb_type(wkb: bytes | None) -> int | None:
    """The base OGC type code of an (ISO or EWKB) WKB value: 8-12 are curves, 15 PolyhedralSurface, 16 TIN."""
    if not wkb or len(wkb) < 5:
        return None
    code = int.from_bytes(wkb[1:5], "little" if wkb[0] == 1 else "big")
    return (code & 0x0FFFFFFF) % 1000


def linearize(wkb: np.ndarray, label: str) -> np.ndarray:
    """Curved geometries (CircularString, CompoundCurve, CurvePolygon, MultiCurve, MultiSurface, and collections
    holding them) made linear by GDAL (``OGR_G_GetLinearGeometry``, one vertex every ``OGR_ARC_STEPSIZE`` degrees of
    arc, 4 by default): written to an in-memory GeoPackage and read back with pyogrio, which linearizes on read."""
    path = f"/vsimem/geomill-linearize-{uuid.uuid4().hex}.gpkg"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pyogrio.raw.write(path, wkb, [], [], driver="GPKG", geometry_type="Unknown", crs="EPSG:4326")
            _, _, linear, _ = pyogrio.raw.read(path)
    except (DataSourceError, DataLayerError, GeometryError, FieldError) as exc:
        raise InvalidInput(f"{label} has geometries GDAL cannot linearize: {exc}", field="source") from exc
    finally:
        with suppress(Exception):
            pyogrio.vsi_unlink(path)
    return np.asarray(linear, dtype=object)


def _from_wkb(wkb: np.ndarray, label: str) -> tuple[np.ndarray, int]:
    """Shapely geometries of WKB values, curves linearized (counted); TIN / PolyhedralSurface refused."""
    try:
        return shapely.from_wkb(wkb), 0
    except (NotImplementedError, shapely.errors.GEOSException):
        pass  # some rows are curved, TINs or damaged: find which
    kinds = np.array([_wkb_type(v) for v in wkb], dtype=object)
    surfaces = np.isin(kinds, list(SURFACE_TYPES))
    if surfaces.any():
        kind = SURFACE_TYPES[int(kinds[surfaces][0])]
        raise InvalidInput(f"{label} holds {kind} geometries ({int(surfaces.sum())} in one batch): geomill does not "
                           "load TIN or PolyhedralSurface (3D surface meshes); convert them to MultiPolygon first "
                           "(e.g. ogr2ogr -nlt MULTIPOLYGON)", field="source")
    curved = np.zeros(len(wkb), dtype=bool)
    geoms = np.empty(len(wkb), dtype=object)
    for i, value in enumerate(wkb):
        try:
            geoms[i] = shapely.from_wkb(value)
        except NotImplementedError:
            curved[i] = True  # shapely/GEOS 3.13+ parse curves but shapely cannot represent them
        except shapely.errors.GEOSException as exc:
            if kinds[i] not in CURVE_TYPES and kinds[i] != 7:
                raise InvalidInput(f"{label} has a geometry that is not valid WKB (row {i} of a batch): {exc}",
                                   field="source") from exc
            curved[i] = True
    if curved.any():
        linear = shapely.from_wkb(linearize(wkb[curved], label))
        geoms[curved] = linear
    return geoms, int(curved.sum())


def batch_geometries(batch: pa.RecordBatch, info: LayerInfo, label: str) -> tuple[np.ndarray, int]:
    """The batch's geometries as a shapely array (None where a feature has none), and how many were linearized."""
    if info.geometry_column is not None:
        return _from_wkb(batch.column(info.geometry_column).to_numpy(zero_copy_only=False), label)
    csv = info.csv
    assert csv is not None
    if csv.wkt:
        text = batch.column(csv.wkt).cast(pa.string()).to_numpy(zero_copy_only=False)
        try:
            return shapely.from_wkt(text, on_invalid="raise"), 0
        except NotImplementedError as exc:
            raise InvalidInput(f"column {csv.wkt!r} of {label} holds curved WKT, which geomill reads only from a "
                               "geometry column (GDAL's CSV WKT column)", field="source") from exc
        except shapely.errors.GEOSException as exc:
            raise InvalidInput(f"column {csv.wkt!r} of {label} holds text that is not WKT: {exc}",
                               field="source") from exc
    xs, ys = _numbers(batch, csv.x, label), _numbers(batch, csv.y, label)  # type: ignore[arg-type]
    geoms = np.asarray(shapely.points(xs, ys), dtype=object)
    geoms[np.isnan(xs) | np.isnan(ys)] = None
    return geoms, 0


def _geoparquet_info(path: str, label: str, options: ReadOptions) -> tuple[LayerInfo, pa.Schema]:
    """GeoParquet's ``geo`` metadata: the primary WKB column and its CRS (absent = OGC:CRS84, per the spec)."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InvalidInput(f"{label} is not a readable Parquet file: {exc}", field="source") from exc
    raw = (schema.metadata or {}).get(b"geo")
    if raw is None:
        raise InvalidInput(f"{label} has no geometry column: it is Parquet without GeoParquet 'geo' metadata",
                           field="source")
    geo = json.loads(raw)
    column = geo.get("primary_column")
    spec = geo.get("columns", {}).get(column, {})
    if column not in schema.names or spec.get("encoding", "WKB").upper() != "WKB":
        raise InvalidInput(f"{label}: geometry column {column!r} is missing or not WKB-encoded "
                           f"({spec.get('encoding')}); only WKB GeoParquet is read", field="source")
    crs_text = options.crs
    if crs_text is None and "crs" not in spec:
        crs_text = "OGC:CRS84"
    elif crs_text is None and spec["crs"] is not None:
        crs_text = json.dumps(spec["crs"])
    if not crs_text:
        raise InvalidInput(f"the CRS of {label} is unknown (its 'geo' metadata says crs: null); give it with "
                           "crs=EPSG:<code>", field="crs")
    crs, srid = parse_crs(crs_text, label)
    return LayerInfo(crs, srid, [n for n in schema.names if n != column], column, None), schema


@contextmanager
def _open_geoparquet(layer: SourceLayer, options: ReadOptions) -> Iterator[tuple[LayerInfo, Iterator]]:
    info, _ = _geoparquet_info(layer.path, layer.label, options)
    with pq.ParquetFile(layer.path) as pf:
        yield info, pf.iter_batches(batch_size=options.batch_rows)


@contextmanager
def open_layer(layer: SourceLayer, options: ReadOptions) -> Iterator[tuple[LayerInfo, pa.RecordBatchReader]]:
    """The layer's info and a reader of bounded batches; GDAL refusing the file becomes InvalidInput."""
    if layer.is_parquet:
        with _open_geoparquet(layer, options) as opened:
            yield opened
        return
    extra = CSV_OPTIONS if layer.is_csv else {}
    try:
        with pyogrio.open_arrow(layer.path, layer=layer.layer, encoding=options.encoding, use_pyarrow=True,
                                batch_size=options.batch_rows, **extra) as (meta, reader):
            yield _layer_info(meta, reader.schema, layer, options), reader
    except (DataSourceError, DataLayerError) as exc:
        raise InvalidInput(f"{layer.label} cannot be read by GDAL, or it is damaged: {exc}",
                           field="source") from exc
