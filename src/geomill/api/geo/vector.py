"""Vector outputs for maps: a PostGIS table geomill loaded as Mapbox vector tiles (ST_AsMVT) at
/tiles/vector/{table}/{z}/{x}/{y}.pbf, and a GeoPackage layer as GeoJSON at /tiles/features (bbox filter, a bounded
feature count). Only tables listed in geomill's vector catalog table are served; identifiers are quoted by
psycopg.sql (sinks/postgis_sql.py), never pasted into SQL."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from geomill.api.geo.sources import local_source
from geomill.domain import InvalidInput, NotFound

MVT_MEDIA = "application/vnd.mapbox-vector-tile"
MAX_TILE_FEATURES = 20_000
MAX_FEATURES = 10_000
DEFAULT_SCHEMA = "geo"  # process_vector's default schema
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

router = APIRouter(prefix="/tiles", tags=["tiles"])


def _table_name(value: str) -> tuple[str, str]:
    """`table` or `schema.table` (plain identifiers only) as (schema, table)."""
    schema, _, table = value.rpartition(".")
    schema = schema or DEFAULT_SCHEMA
    if not (_NAME.match(schema) and _NAME.match(table)):
        raise InvalidInput(f"table {value!r}: give table or schema.table (letters, digits, '_')", field="table")
    return schema, table


@router.get("/vector/{table}/{z}/{x}/{y}.pbf", summary="A PostGIS table geomill loaded, as a Mapbox vector tile",
            response_class=Response, responses={200: {"content": {MVT_MEDIA: {}}}})
def vector_tile(request: Request, table: str, z: int = Path(ge=0, le=24), x: int = Path(ge=0),
                y: int = Path(ge=0)) -> Response:
    if x >= 2**z or y >= 2**z:
        raise NotFound(f"tile {z}/{x}/{y} is outside the WebMercatorQuad grid")
    schema, name = _table_name(table)
    resources = request.app.state.runtime.resources
    if resources.vector_sink.backend != "postgis":
        raise NotFound("vector tiles are served on PostgreSQL deployments (GeoPackage layers: /tiles/features)")
    from geomill.sinks import postgis_sql as q

    with resources.vector_sink.pool.connection() as conn:
        if not q.loaded_table(conn, schema, name):
            raise NotFound(f"no table {schema}.{name} loaded by geomill")
        data = q.mvt_tile(conn, schema, name, (z, x, y), MAX_TILE_FEATURES)
    return Response(data, media_type=MVT_MEDIA)


@router.get("/features", summary="A GeoPackage layer as GeoJSON (WGS84), bbox-filtered and bounded")
def features(request: Request, url: str = Query(..., description="the GeoPackage: a zone URI or a local file"),
             layer: str | None = Query(None, description="default: the first layer"),
             bbox: str | None = Query(None, description="minx,miny,maxx,maxy in WGS84"),
             limit: int = Query(1000, ge=1, le=MAX_FEATURES)) -> Response:
    path = local_source(request, url)
    return Response(json.dumps(read_features(path, layer, _bbox(bbox), limit)), media_type="application/geo+json")


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise InvalidInput(f"bbox {text!r} is not minx,miny,maxx,maxy", field="bbox")
    return values[0], values[1], values[2], values[3]


def read_features(path: str, layer: str | None, bbox: tuple[float, float, float, float] | None,
                  limit: int) -> dict[str, Any]:
    """At most `limit` features of `layer` (inside `bbox`, WGS84) as a GeoJSON FeatureCollection in WGS84."""
    import pyogrio
    import shapely
    from pyproj import CRS, Transformer

    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception as exc:  # pyogrio's DataSourceError / DataLayerError: the caller named a wrong file or layer
        raise InvalidInput(f"cannot read layer {layer!r} of {path!r}: {exc}", field="layer") from None
    crs = CRS.from_user_input(info["crs"]) if info.get("crs") else CRS.from_epsg(4326)
    to_wgs84 = Transformer.from_crs(crs, 4326, always_xy=True)
    query_box = None
    if bbox is not None:
        back = Transformer.from_crs(4326, crs, always_xy=True)
        query_box = back.transform_bounds(*bbox)
    _, fids, wkb, fields = pyogrio.raw.read(path, layer=layer, bbox=query_box, max_features=limit,
                                            return_fids=True)
    names = list(info["fields"])
    geoms = shapely.transform(shapely.from_wkb(wkb), lambda xy: _pairs(to_wgs84, xy))
    feats = []
    for i, geom in enumerate(geoms):
        props = {n: _plain(fields[k][i]) for k, n in enumerate(names)}
        feats.append({"type": "Feature", "id": int(fids[i]), "properties": props,
                      "geometry": json.loads(shapely.to_geojson(geom)) if geom is not None else None})
    return {"type": "FeatureCollection", "features": feats, "numberReturned": len(feats)}


def _pairs(transformer: Any, xy: Any) -> Any:
    import numpy as np

    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def _plain(value: Any) -> Any:
    """A JSON value for a numpy scalar or datetime."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
