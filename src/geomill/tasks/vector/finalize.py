"""Task ``vector.finalize``: staging into place (if_exists), indexes, ANALYZE, catalog row, STAC item.

A failed upload stage reaches this task too (the stage tolerates failures so that this task runs): it then drops
the staging table or file and fails with the upload's error, so nothing half-loaded remains.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pystac
from pyproj import Transformer

from geomill.catalog.base import CATALOG_KEY, open_catalog
from geomill.catalog.static import check_id
from geomill.catalog.validation import StacValidationFailed, validate_item_dict
from geomill.domain import InvalidInput, TaskError
from geomill.engine.context import TaskContext
from geomill.tasks.vector import geopackage, postgis
from geomill.tasks.vector.models import FinalizeParams, FinalizeResult, LoadTarget, VectorLoad
from geomill.tasks.vector.naming import GEOMETRY_COLUMN

logger = logging.getLogger(__name__)

TASK_NAME = "vector.finalize"
COLLECTION_ID = "geomill-vectors"
PROJ_V11 = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
GPKG_MEDIA_TYPE = "application/geopackage+sqlite3"


def bbox_to_wgs84(bbox: list[float], srid: int) -> list[float]:
    """The bbox in EPSG:4326 (lon/lat), densified so curved edges are covered."""
    if not bbox:
        return []
    if srid == 4326:
        return [float(v) for v in bbox]
    transformer = Transformer.from_crs(f"EPSG:{srid}", "EPSG:4326", always_xy=True)
    return list(transformer.transform_bounds(*bbox, densify_pts=21))


def public_database_url(url: str) -> str:
    """The database URL without user or password (it goes into a STAC item)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{host}{port}{parts.path}"


def build_item(load: VectorLoad, count: int, bbox_wgs84: list[float], href: str, media_type: str | None,
               title: str) -> dict[str, Any]:
    """A STAC item for the loaded table: its footprint (bbox) in EPSG:4326, the table as its one asset."""
    target = load.target
    item_id = check_id(f"{target.schema_}.{target.table}", "item id")
    west, south, east, north = bbox_wgs84 or [0.0, 0.0, 0.0, 0.0]
    geometry = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north],
                                                    [west, south]]]}
    item = pystac.Item(id=item_id, geometry=geometry, bbox=[west, south, east, north],
                       datetime=pystac.utils.str_to_datetime(load.source_datetime),
                       properties={"title": title, "proj:epsg": target.srid,
                                   "geomill:feature_count": count, "geomill:geometry_type": target.geometry_type,
                                   "geomill:geometry_column": GEOMETRY_COLUMN, "geomill:source": load.source,
                                   "geomill:repaired_geometries": load.repaired,
                                   "geomill:columns": {c.name: c.pg_type for c in target.columns}},
                       stac_extensions=[PROJ_V11])
    item.add_asset("data", pystac.Asset(href=href, media_type=media_type, roles=["data"], title=title))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def _fail_uploads(params: FinalizeParams, ctx: TaskContext) -> None:
    """Uploads failed or went missing: drop staging, then fail with what went wrong."""
    target = params.load.target
    discard_staging(target, ctx)
    expected = params.load.feature_count
    detail = "; ".join(params.upload_errors[:3]) or f"{params.uploaded_rows} of {expected} rows were uploaded"
    raise InvalidInput(f"loading {params.load.source!r} into {target.schema_}.{target.table} failed, nothing was "
                       f"changed (staging dropped): {detail}", field="source")


def discard_staging(target: LoadTarget, ctx: TaskContext) -> None:
    if target.backend == "postgis":
        with postgis.connect(ctx.database_url) as conn:  # type: ignore[arg-type]
            postgis.drop_staging(conn, target)
    else:
        Path(target.staging).unlink(missing_ok=True)


def _catalog_values(load: VectorLoad) -> dict[str, Any]:
    from psycopg.types.json import Jsonb

    target = load.target
    return {"table_name": target.table, "geometry_column": GEOMETRY_COLUMN, "geometry_type": target.geometry_type,
            "srid": target.srid, "source": load.source, "layer": load.layer,
            "columns": Jsonb([c.model_dump() for c in target.columns]), "repaired_geometries": load.repaired,
            "load_key": target.key}


def _finalize_postgis(params: FinalizeParams, ctx: TaskContext) -> tuple[int, list[float], str, str]:
    load, target = params.load, params.load.target
    with postgis.connect(ctx.database_url) as conn:  # type: ignore[arg-type]
        loaded = postgis.loaded_rows(conn, target)
        if loaded is None:  # a re-run after the swap committed: the catalog row says what is there
            row = postgis.catalog_row(conn, target.schema_, target.table)
            if row is None or row["load_key"] != target.key:
                raise InvalidInput(f"staging table of {target.schema_}.{target.table} is missing: run the job "
                                   "again", field="source")
            count, bbox = row["feature_count"], list(row["bbox"] or [])
        elif loaded != load.feature_count:
            raise TaskError(f"staging of {target.schema_}.{target.table} holds {loaded} rows, expected "
                            f"{load.feature_count}")
        else:
            count, bbox = postgis.swap_into_place(conn, target, _catalog_values(load),
                                                  lambda b: bbox_to_wgs84(b, target.srid),
                                                  (load.feature_count, load.bbox))
    href = f"{public_database_url(ctx.database_url or '')}?table={target.schema_}.{target.table}"
    return count, bbox, href, f"{target.schema_}.{target.table}"


def _finalize_geopackage(params: FinalizeParams, ctx: TaskContext) -> tuple[int, list[float], str, str]:
    target = params.load.target
    key = geopackage.final_key(target.schema_, target.table)
    final = ctx.storage.local_path(f"silver://{key}")
    count, bbox = geopackage.swap_into_place(final, target)
    item_folder = ctx.storage.local_path(f"silver://{CATALOG_KEY}") / COLLECTION_ID / f"{target.schema_}.{target.table}"
    return count, bbox, os.path.relpath(final, item_folder), ctx.storage.uri_for("silver", key)


def finalize_vector(params: FinalizeParams, ctx: TaskContext) -> FinalizeResult:
    """Handler of ``vector.finalize``."""
    load, target = params.load, params.load.target
    if params.upload_errors or params.uploaded_rows != load.feature_count:
        _fail_uploads(params, ctx)
    if target.backend == "postgis":
        count, bbox, href, location = _finalize_postgis(params, ctx)
        media_type = None
    else:
        count, bbox, href, location = _finalize_geopackage(params, ctx)
        media_type = GPKG_MEDIA_TYPE
    ctx.progress(0.8, f"{location}: {count} features")
    wgs84 = bbox_to_wgs84(bbox, target.srid)
    item = build_item(load, count, wgs84, href, media_type, f"{target.geometry_type} table {location}")
    try:
        validate_item_dict(item)
    except StacValidationFailed as exc:
        raise TaskError(f"generated STAC item {item['id']} is invalid: {exc}") from exc
    open_catalog(ctx.storage, ctx.database_url).upsert_items([item], COLLECTION_ID)
    ctx.progress(1.0, "STAC item written")
    return FinalizeResult(schema_name=target.schema_, table=target.table, backend=target.backend,
                          location=location, feature_count=count, geometry_type=target.geometry_type,
                          srid=target.srid, bbox=bbox, bbox_wgs84=wgs84, repaired=load.repaired,
                          item_id=item["id"], collection_id=COLLECTION_ID)
