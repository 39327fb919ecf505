"""Task ``stac.create_collection``: one STAC collection with an item per COG, and the mosaic as collection assets.

Items are built exactly as ``stac.create_item`` builds them (:func:`build_item`, :func:`item_datetime`); the
collection's extent is the union of its items' bboxes and datetimes, and the MosaicJSON and the VRT of
``raster.mosaic`` (when given) are its assets ``mosaicjson`` and ``vrt``. Every document is validated offline
before anything is written. Writes go through the catalog protocol (static catalog, or pgSTAC plus the static copy
on PostgreSQL) as upserts: running the task again replaces the collection and its items, never duplicates them.

COGs and mosaics in a remote silver zone (S3, Azure) are read in place; their hrefs are what another machine
follows (``storage.href``: the object's URI, the public base URL + key, or a signed URL). The static catalog stays
in the local data folder even then (it is written with file locks and renames; pgSTAC is the shared catalog).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pystac
import rasterio
from pydantic import BaseModel

from geomill.catalog.base import CATALOG_KEY
from geomill.catalog.static import StaticCatalog, check_id, prepare_item
from geomill.catalog.validation import StacValidationFailed, validate_item_dict
from geomill.domain import InvalidInput, TaskError
from geomill.engine.context import TaskContext
from geomill.storage.base import ZONES
from geomill.tasks.raster.gdal import gdal_env
from geomill.tasks.raster.mosaic import NO_FOLDER_LISTING
from geomill.tasks.raster.validate import check_georeferenced, open_raster, source_name
from geomill.tasks.stac.item import asset_href, build_item, item_datetime
from geomill.tasks.stac.models import CollectionItemSpec, CreateCollectionParams, MosaicRef

logger = logging.getLogger(__name__)

MOSAICJSON_ASSET = "mosaicjson"
VRT_ASSET = "vrt"
VRT_MEDIA_TYPE = "application/xml"  # GDAL VRT has no registered media type; it is an XML document


class CollectionResult(BaseModel):
    collection_id: str
    item_ids: list[str]
    collection_path: str
    item_count: int
    bbox: list[float]
    backend: str


def _check_valid(doc: dict[str, Any], where: Path) -> None:
    """A document we built that does not validate is our bug, not the input's fault."""
    try:
        validate_item_dict(doc, href=str(where))
    except StacValidationFailed as exc:
        raise TaskError(f"generated STAC {doc.get('type', 'document')} {doc['id']} is invalid: {exc}") from exc


def item_ids(specs: list[CollectionItemSpec]) -> list[str]:
    """Each item's id (given, else the COG's stem); InvalidInput on an unsafe or repeated id."""
    ids = [check_id(s.item_id or Path(s.cog_uri.split("://", 1)[-1]).stem, "item id") for s in specs]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InvalidInput(f"item ids must be unique in a collection; repeated: {', '.join(repeated)}", field="items")
    return ids


def build_collection_item(spec: CollectionItemSpec, item_id: str, collection_id: str, ctx: TaskContext,
                          static: StaticCatalog) -> dict[str, Any]:
    """The validated STAC item for one COG, its asset href relative to the item's file in the static catalog (a
    local COG) or what another machine follows (a COG in S3/Azure: storage.href)."""
    storage = ctx.storage
    cog_name = source_name(spec.cog_uri, storage)
    item_path = static.item_path(collection_id, item_id)
    href = (storage.href(spec.cog_uri) if storage.is_remote(spec.cog_uri)
            else asset_href(spec.cog_uri, Path(cog_name), item_path))
    with open_raster(cog_name, spec.cog_uri) as ds:
        check_georeferenced(ds, spec.cog_uri)
        when = item_datetime(ds, spec.source, storage, spec.cog_uri)
        doc = build_item(ds, item_id, href, when)
    doc = prepare_item(doc, collection_id)
    _check_valid(doc, item_path)
    return doc


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def items_extent(items: list[dict[str, Any]]) -> pystac.Extent:
    """The union of the items' bboxes and time spans."""
    boxes = [(b[0], b[1], b[3], b[4]) if len(b) == 6 else tuple(b) for b in (i["bbox"] for i in items)]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    props = [i["properties"] for i in items]
    starts = [_parse(p.get("start_datetime") or p["datetime"]) for p in props]
    ends = [_parse(p.get("end_datetime") or p["datetime"]) for p in props]
    return pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(starts), max(ends)]]))


def _zone_href(uri: str, ctx: TaskContext, collection_path: Path) -> str:
    """Relative to the collection file for local files in a storage zone (they move together), else absolute; an
    object in S3/Azure: storage.href (its URI, the public base URL + key, or a signed URL)."""
    if ctx.storage.is_remote(uri):
        return ctx.storage.href(uri)
    path = ctx.storage.local_path(uri)
    if "://" in uri and uri.split("://", 1)[0] in ZONES:
        return os.path.relpath(path, collection_path.parent)
    return str(path)


def mosaic_assets(mosaic: MosaicRef, ctx: TaskContext, collection_path: Path) -> dict[str, pystac.Asset]:
    return {
        MOSAICJSON_ASSET: pystac.Asset(
            _zone_href(mosaic.mosaicjson_uri, ctx, collection_path), title="MosaicJSON of the collection's COGs",
            media_type=pystac.MediaType.JSON, roles=["mosaic"],
        ),
        VRT_ASSET: pystac.Asset(
            _zone_href(mosaic.vrt_uri, ctx, collection_path), title="GDAL VRT reading the whole mosaic as one raster",
            media_type=VRT_MEDIA_TYPE, roles=["mosaic"],
        ),
    }


def build_collection(params: CreateCollectionParams, items: list[dict[str, Any]], ctx: TaskContext,
                     static: StaticCatalog) -> dict[str, Any]:
    """The validated collection document, with root/parent links as the static catalog writes them."""
    path = static.collection_path(params.collection_id)
    collection = pystac.Collection(
        id=params.collection_id, title=params.title or params.collection_id,
        description=params.description or f"Rasters processed by geomill ({params.collection_id})",
        license="other", extent=items_extent(items),
    )
    for key, asset in (mosaic_assets(params.mosaic, ctx, path) if params.mosaic else {}).items():
        collection.add_asset(key, asset)
    doc = collection.to_dict(include_self_link=False, transform_hrefs=False)
    doc["links"] = [
        {"rel": "root", "href": "../catalog.json", "type": pystac.MediaType.JSON},
        {"rel": "parent", "href": "../catalog.json", "type": pystac.MediaType.JSON},
    ]
    _check_valid(doc, path)
    return doc


def create_collection(params: CreateCollectionParams, ctx: TaskContext) -> CollectionResult:
    """Handler of ``stac.create_collection``."""
    collection_id = check_id(params.collection_id, "collection id")
    static = StaticCatalog(ctx.storage.local_mirror(f"silver://{CATALOG_KEY}"))  # local even when silver is remote
    ids = item_ids(params.items)
    items = []
    with gdal_env(ctx), rasterio.Env(**NO_FOLDER_LISTING):
        for n, (spec, item_id) in enumerate(zip(params.items, ids, strict=True), start=1):
            if ctx.cancelled:
                raise TaskError("cancelled while describing the COGs")
            items.append(build_collection_item(spec, item_id, collection_id, ctx, static))
            if n % 50 == 0 or n == len(ids):
                ctx.progress(0.8 * n / len(ids), f"{n} of {len(ids)} items described")
    collection = build_collection(params, items, ctx, static)
    catalog = ctx.catalog
    ref = catalog.upsert_collection(collection)
    catalog.upsert_items(items, collection_id)
    ctx.progress(1.0, f"collection {collection_id} with {len(items)} items written ({catalog.backend})")
    logger.info("stac collection written", extra={"task_id": ctx.task_id, "collection_id": collection_id,
                                                   "count": len(items)})
    bbox = collection["extent"]["spatial"]["bbox"][0]
    return CollectionResult(
        collection_id=collection_id, item_ids=ids,
        collection_path=ref.static_path or str(static.collection_path(collection_id)),
        item_count=len(items), bbox=list(bbox), backend=catalog.backend,
    )

