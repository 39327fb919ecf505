"""Task ``vector.finalize``: staging into place (if_exists), indexes, ANALYZE, catalog row, STAC item.

A failed upload stage reaches this task too (the stage tolerates failures so that this task runs): it then drops
the staging table or file and fails with the upload's error, so nothing half-loaded remains.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pystac
from pyproj import Transformer

from geomill.catalog.base import CATALOG_KEY, check_id
from geomill.catalog.validation import StacValidationFailed, validate_item_dict
from geomill.domain import InvalidInput, TaskError
from geomill.engine.context import FinalTable, TaskContext
from geomill.tasks.vector.models import FinalizeParams, FinalizeResult, VectorLoad
from geomill.tasks.vector.naming import GEOMETRY_COLUMN

logger = logging.getLogger(__name__)

COLLECTION_ID = "geomill-vectors"
PROJ_V11 = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"


def bbox_to_wgs84(bbox: list[float], srid: int) -> list[float]:
    """The bbox in EPSG:4326 (lon/lat), densified so curved edges are covered."""
    if not bbox:
        return []
    if srid == 4326:
        return [float(v) for v in bbox]
    transformer = Transformer.from_crs(f"EPSG:{srid}", "EPSG:4326", always_xy=True)
    west, south, east, north = bbox
    return list(transformer.transform_bounds(west, south, east, north, densify_pts=21))


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
    ctx.vector_sink.drop_staging(target)
    expected = params.load.feature_count
    detail = "; ".join(params.upload_errors[:3]) or f"{params.uploaded_rows} of {expected} rows were uploaded"
    raise InvalidInput(f"loading {params.load.source!r} into {target.schema_}.{target.table} failed, nothing was "
                       f"changed (staging dropped): {detail}", field="source")


def _swap(params: FinalizeParams, ctx: TaskContext) -> tuple[FinalTable, str]:
    """The sink swaps staging into place; returns what is there and the STAC asset href."""
    load, target = params.load, params.load.target
    if ctx.vector_sink.backend != target.backend:
        raise TaskError(f"this load was prepared for {target.backend}, but this worker's vector sink is "
                        f"{ctx.vector_sink.backend}")
    final = ctx.vector_sink.swap_into_place(load, lambda b: bbox_to_wgs84(b, target.srid))
    if final.path is not None:  # a file beside the catalog: relative to the item, so both move together
        item_folder = (ctx.storage.local_path(f"silver://{CATALOG_KEY}") / COLLECTION_ID
                       / f"{target.schema_}.{target.table}")
        return final, os.path.relpath(final.path, item_folder)
    return final, final.url or final.location


def finalize_vector(params: FinalizeParams, ctx: TaskContext) -> FinalizeResult:
    """Handler of ``vector.finalize``."""
    load, target = params.load, params.load.target
    if params.upload_errors or params.uploaded_rows != load.feature_count:
        _fail_uploads(params, ctx)
    final, href = _swap(params, ctx)
    count, bbox, location, media_type = final.count, final.bbox, final.location, final.media_type
    ctx.progress(0.8, f"{location}: {count} features")
    wgs84 = bbox_to_wgs84(bbox, target.srid)
    item = build_item(load, count, wgs84, href, media_type, f"{target.geometry_type} table {location}")
    try:
        validate_item_dict(item)
    except StacValidationFailed as exc:
        raise TaskError(f"generated STAC item {item['id']} is invalid: {exc}") from exc
    ctx.catalog.upsert_items([item], COLLECTION_ID)
    ctx.progress(1.0, "STAC item written")
    return FinalizeResult(schema_name=target.schema_, table=target.table, backend=target.backend,
                          location=location, feature_count=count, geometry_type=target.geometry_type,
                          srid=target.srid, bbox=bbox, bbox_wgs84=wgs84, repaired=load.repaired,
                          linearized=load.linearized,
                          item_id=item["id"], collection_id=COLLECTION_ID)
