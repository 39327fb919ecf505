"""Task ``stac.create_item``: describe a COG as a STAC item and add it to the static catalog in silver.

The item is made by rio-stac (projection and raster extensions, bbox and geometry in EPSG:4326), validated
offline against the core and extension schemas before anything is written, then added under the catalog lock.
Its datetime is deterministic: the raster's acquisition or TIFF datetime tag when it has one, else the
modification time of the source file (else of the COG).

A COG in a remote silver zone (S3, Azure) is read in place; its asset href is the object's URI, or the public
https base (GEOMILL_SILVER_PUBLIC_URL) when one is set, so a tile server on another machine can read it. The static
catalog stays in the local data folder (pgSTAC is the shared catalog).
"""

from __future__ import annotations

import logging
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pystac
import rasterio.errors
from pydantic import BaseModel
from rasterio._err import CPLE_BaseError
from rasterio.io import DatasetReader
from rio_stac import create_stac_item

from geomill.catalog.base import CATALOG_KEY
from geomill.catalog.static import StaticCatalog, prepare_item
from geomill.catalog.validation import StacValidationFailed, validate_item_dict
from geomill.domain import InvalidInput, TaskError
from geomill.engine.context import Storage, TaskContext
from geomill.storage.base import ZONES
from geomill.tasks.raster.gdal import gdal_env
from geomill.tasks.raster.validate import (
    check_georeferenced,
    open_raster,
    ordered_bounds,
    source_name,
    wgs84_bounds,
)
from geomill.tasks.stac.models import CreateItemParams

logger = logging.getLogger(__name__)

ASSET_KEY = "data"
TIFF_DATETIME_FORMAT = "%Y:%m:%d %H:%M:%S"


class ItemResult(BaseModel):
    item_id: str
    item_uri: str
    item_path: str
    collection_path: str
    catalog_path: str
    catalog_backend: str = "static"  # "pgstac+static" on PostgreSQL
    bbox: list[float]
    datetime: str
    stac_extensions: list[str]


def _parse_tag(value: str | None) -> datetime | None:
    """A TIFF (``YYYY:MM:DD HH:MM:SS``) or ISO datetime tag as UTC, or None."""
    if not value:
        return None
    for parse in (lambda v: datetime.strptime(v, TIFF_DATETIME_FORMAT), datetime.fromisoformat):
        try:
            parsed = parse(value.strip())
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).replace(microsecond=0)


def item_datetime(ds: DatasetReader, source: str, storage: Storage, cog_uri: str | None = None) -> datetime:
    """Acquisition/TIFF datetime tag, else the source file's (or object's) mtime, else the COG's mtime."""
    tagged = _parse_tag(ds.get_tag_item("ACQUISITIONDATETIME", "IMAGERY")) or _parse_tag(
        ds.get_tag_item("TIFFTAG_DATETIME")
    )
    if tagged:
        return tagged
    for uri in (source, cog_uri):
        if not uri:
            continue
        try:
            if storage.is_remote(uri):
                return storage.stat(uri).mtime.astimezone(UTC).replace(microsecond=0)
            path = storage.local_path(uri)
        except InvalidInput:
            continue
        if path.is_file():
            return _mtime(path)
    return _mtime(Path(ds.name))


def asset_href(cog_uri: str, cog_path: Path, item_path: Path) -> str:
    """Relative to the item for files in a storage zone (the catalog moves with them), else absolute."""
    if cog_uri.split("://", 1)[0] in ZONES and "://" in cog_uri:
        return os.path.relpath(cog_path, item_path.parent)
    return str(cog_path)


def build_item(ds: DatasetReader, item_id: str, href: str, when: datetime) -> dict[str, Any]:
    """A STAC item dict for the open COG `ds`, with its one asset at `href` (rio-stac, then mended: see
    `mend_item`)."""
    def make(**geographic: Any) -> dict[str, Any]:
        item = create_stac_item(
            ds, input_datetime=when, id=item_id, asset_name=ASSET_KEY, asset_roles=["data"],
            asset_media_type=pystac.MediaType.COG, asset_href=href, with_proj=True, with_raster=True,
            geom_densify_pts=21, **geographic,
        )
        return item.to_dict(include_self_link=False, transform_hrefs=False)

    try:
        return mend_item(make(), ds, item_id)
    except (SystemError, rasterio.errors.RasterioError, CPLE_BaseError):
        # the footprint's edge does not transform (points in space): rio-stac's bbox in the raster's own CRS,
        # replaced by the WGS84 bounds of the pixels that do transform
        return mend_item(make(geographic_crs=ds.crs), ds, item_id, footprint_from_pixels=True)


def _box(bounds: tuple[float, float, float, float]) -> dict[str, Any]:
    w, s, e, n = bounds
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def mend_item(doc: dict[str, Any], ds: DatasetReader, item_id: str, *,
              footprint_from_pixels: bool = False) -> dict[str, Any]:
    """What rio-stac gets wrong for some inputs: ``proj:bbox`` of a south-up grid (min > max), a footprint whose
    corners do not transform to WGS84 (geostationary: inf), WKT1 in ``proj:wkt2`` for a CRS without EPSG code,
    and meaningless statistics (null mean, a histogram of nothing) for a band without a valid pixel."""
    props = doc["properties"]
    native = ordered_bounds(ds)
    if "proj:bbox" in props:
        props["proj:bbox"] = list(native)
        props["proj:geometry"] = _box(native)
    if props.get("proj:wkt2"):
        props["proj:wkt2"] = ds.crs.to_wkt(version="WKT2_2019")
    bbox = doc.get("bbox") or []
    if footprint_from_pixels or len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
        footprint = wgs84_bounds(ds, item_id)
        doc["bbox"] = list(footprint)
        doc["geometry"] = _box(footprint)
    for asset in doc.get("assets", {}).values():
        for band in asset.get("raster:bands", []):
            if band.get("statistics", {}).get("valid_percent") == 0:
                band["statistics"] = {"valid_percent": 0.0}
                band.pop("histogram", None)
    return doc


def _check_valid(doc: dict[str, Any], where: Path) -> None:
    """An item we built that does not validate is our bug, not the input's fault."""
    try:
        validate_item_dict(doc, href=str(where))
    except StacValidationFailed as exc:
        raise TaskError(f"generated STAC item {doc['id']} is invalid: {exc}") from exc


def create_item(params: CreateItemParams, ctx: TaskContext) -> ItemResult:
    """Handler of ``stac.create_item``."""
    # asset hrefs are relative to the static catalog for local files; it stays local when silver is remote
    static = StaticCatalog(ctx.storage.local_mirror(f"silver://{CATALOG_KEY}"))
    cog_name = source_name(params.cog_uri, ctx.storage)
    remote = ctx.storage.is_remote(params.cog_uri)
    item_id = params.item_id or Path(cog_name).stem
    item_path = static.item_path(params.collection_id, item_id)
    href = ctx.storage.href(params.cog_uri) if remote else asset_href(params.cog_uri, Path(cog_name), item_path)
    with gdal_env(ctx), open_raster(cog_name, params.cog_uri) as ds:
        check_georeferenced(ds, params.cog_uri)
        when = item_datetime(ds, params.source, ctx.storage, params.cog_uri)
        doc = build_item(ds, item_id, href, when)
    doc = prepare_item(doc, params.collection_id)
    _check_valid(doc, item_path)
    catalog = ctx.catalog
    catalog.upsert_items([doc], params.collection_id)
    ctx.progress(1.0, f"STAC item written ({catalog.backend})")
    item_key = item_path.relative_to(static.root).as_posix()
    return ItemResult(
        item_id=item_id,
        item_uri=(str(item_path) if ctx.storage.is_remote("silver://") else
                  ctx.storage.uri_for("silver", f"{CATALOG_KEY}/{item_key}")),
        item_path=str(item_path), collection_path=str(static.collection_path(params.collection_id)),
        catalog_path=str(static.catalog_path), catalog_backend=catalog.backend,
        bbox=list(doc["bbox"]), datetime=doc["properties"]["datetime"],
        stac_extensions=list(doc.get("stac_extensions", [])),
    )
