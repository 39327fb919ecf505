"""Tasks ``container.catalog_file`` and ``container.sync_file``: a raster catalogued where it is, or made a COG first.

``catalog_file`` describes an existing raster as a STAC item without rewriting it: the item's asset href is the
object's own URI (or the zone's public base URL), read in place through /vsis3/ or /vsiaz/. ``sync_file`` takes one
object a sync found new or changed: a vector file (when the sync loads vectors) is loaded into the vector sink
(tasks/container/vectors.py), a COG (and no target_crs) is catalogued in place as ``catalog_file`` does, any
other raster goes through ``raster.create_cog`` and ``stac.create_item`` (the same handlers, called here); then the
ledger records the version processed, so the next sync skips it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pystac
import rasterio

from geomill.catalog.base import CATALOG_KEY, check_id
from geomill.catalog.static import StaticCatalog, prepare_item
from geomill.catalog.validation import StacValidationFailed, validate_item_dict
from geomill.domain import TaskError
from geomill.engine.context import LedgerEntry, TaskContext
from geomill.tasks.container.diff import read_lines
from geomill.tasks.container.kinds import is_loadable_vector
from geomill.tasks.container.models import CatalogFileParams, CatalogFileResult, SyncFileParams, SyncFileResult
from geomill.tasks.container.vectors import load_vector
from geomill.tasks.raster.cog import create_cog
from geomill.tasks.raster.cogcheck import validate_cog
from geomill.tasks.raster.gdal import gdal_env
from geomill.tasks.raster.models import CreateCogParams, source_name
from geomill.tasks.raster.validate import check_georeferenced, open_raster
from geomill.tasks.stac.item import ASSET_KEY, build_item, create_item, item_datetime
from geomill.tasks.stac.models import CreateItemParams

logger = logging.getLogger(__name__)

GEOTIFF_SUFFIXES = (".tif", ".tiff", ".gtif")


def sidecar_options(uri: str, ctx: TaskContext) -> dict[str, str]:
    """GDAL looks for a raster's side-car files (.aux.xml, .ovr, world files) on open, by listing its folder or,
    with GDAL_DISABLE_READDIR_ON_OPEN=TRUE, by probing each name. In object storage either costs requests: the
    listing of a container folder of thousands of objects took 10-25 s per small raster on moto, the probes 7 s per
    open on Azurite. So a remote raster is opened as the only file of its folder (EMPTY_DIR): its side-car files
    are not read. A local one is opened as GDAL does by default."""
    return {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"} if ctx.storage.is_remote(uri) else {}


def item_id_for(key: str) -> str:
    """A STAC item id for an object key, stable and unique in a collection: the key without its extension made
    safe, plus 8 hex digits of the key's hash (``a/b.tif`` and ``a_b.tif`` must not share an item)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(PurePosixPath(key).with_suffix(""))).strip("._-") or "raster"
    return f"{stem[:180]}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _is_cog(name: str) -> bool:
    try:
        valid, errors, _ = validate_cog(name)
    except Exception:  # rio-cogeo raises plain exceptions on what it cannot read: not a COG
        return False
    return bool(valid and not errors)


def catalog_in_place(ctx: TaskContext, uri: str, item_id: str, collection_id: str) -> tuple[dict[str, Any], bool]:
    """Build, validate and upsert the STAC item of the raster `uri` (asset href: the object itself); returns the
    item and whether the raster is a COG (else the asset's media type is plain GeoTIFF, or none)."""
    static = StaticCatalog(ctx.storage.local_mirror(f"silver://{CATALOG_KEY}"))
    item_id = check_id(item_id, "item id")
    item_path = static.item_path(collection_id, item_id)
    name = source_name(uri, ctx.storage)
    href = ctx.storage.href(uri)
    with gdal_env(ctx):
        with open_raster(name, uri) as ds:
            check_georeferenced(ds, uri)
            doc = build_item(ds, item_id, href, item_datetime(ds, uri, ctx.storage))
        is_cog = _is_cog(name)
    if not is_cog:
        asset = doc["assets"][ASSET_KEY]
        if uri.lower().endswith(GEOTIFF_SUFFIXES):
            asset["type"] = pystac.MediaType.GEOTIFF
        else:
            asset.pop("type", None)
    doc = prepare_item(doc, collection_id)
    try:
        validate_item_dict(doc, href=str(item_path))
    except StacValidationFailed as exc:
        raise TaskError(f"generated STAC item {item_id} is invalid: {exc}") from exc
    ctx.catalog.upsert_items([doc], collection_id)
    return doc, is_cog


def catalog_file(params: CatalogFileParams, ctx: TaskContext) -> CatalogFileResult:
    """Handler of ``container.catalog_file``."""
    item_id = params.item_id or Path(params.source.split("://", 1)[-1]).stem
    with rasterio.Env(**sidecar_options(params.source, ctx)):
        doc, is_cog = catalog_in_place(ctx, params.source, item_id, params.collection_id)
    static = StaticCatalog(ctx.storage.local_mirror(f"silver://{CATALOG_KEY}"))
    ctx.progress(1.0, f"STAC item {item_id} written ({ctx.catalog.backend})")
    return CatalogFileResult(
        source=params.source, item_id=item_id, collection_id=params.collection_id,
        href=doc["assets"][ASSET_KEY]["href"], is_cog=is_cog, bbox=list(doc["bbox"]),
        datetime=doc["properties"]["datetime"], item_path=str(static.item_path(params.collection_id, item_id)),
        catalog_backend=ctx.catalog.backend)


def sync_file(params: SyncFileParams, ctx: TaskContext) -> SyncFileResult:
    """Handler of ``container.sync_file``."""
    lines = read_lines(ctx, params.changes_uri)
    if params.index >= len(lines):
        raise TaskError(f"{params.changes_uri} has {len(lines)} lines, not {params.index + 1}")
    change = lines[params.index]
    if params.vector_schema and is_loadable_vector(change["key"], change["kind"]):
        return _sync_vector(params, ctx, change)
    uri, item_id = change["uri"], item_id_for(change["key"])
    cog_uri: str | None = None
    with gdal_env(ctx), rasterio.Env(**sidecar_options(uri, ctx)):  # also for the handlers called (Envs nest)
        in_place = params.target_crs is None and _is_cog(source_name(uri, ctx.storage))
        if in_place:
            doc, _ = catalog_in_place(ctx, uri, item_id, params.collection_id)
            href = doc["assets"][ASSET_KEY]["href"]
        else:
            cog = create_cog(CreateCogParams(source=uri, target_crs=params.target_crs,
                                             compression=params.compression, resampling=params.resampling), ctx)
            cog_uri = cog.cog_uri
            create_item(CreateItemParams(cog_uri=cog.cog_uri, source=uri, item_id=item_id,
                                         collection_id=params.collection_id), ctx)
            href = ctx.storage.href(cog.cog_uri)
    ctx.ledger.record_processed(params.scope, LedgerEntry(change["key"], uri, change["version"], item_id, cog_uri),
                                ctx.job_id)
    logger.info("container object synced", extra={"task_id": ctx.task_id, "uri": uri, "in_place": in_place})
    return SyncFileResult(key=change["key"], uri=uri, version=change["version"],
                          action="catalog" if in_place else "cog", item_id=item_id, cog_uri=cog_uri, href=href)


def _sync_vector(params: SyncFileParams, ctx: TaskContext, change: dict[str, Any]) -> SyncFileResult:
    """A vector file loaded (its tables replaced), then recorded in the ledger: with no item id and no COG, so
    ``remove_deleted`` forgets it without touching the raster collection (its tables are kept)."""
    assert params.vector_schema is not None
    uri = change["uri"]
    tables = load_vector(uri, params.vector_schema, ctx)
    ctx.ledger.record_processed(params.scope, LedgerEntry(change["key"], uri, change["version"]), ctx.job_id)
    logger.info("container vector file loaded", extra={"task_id": ctx.task_id, "uri": uri,
                                                       "tables": [t.location for t in tables]})
    return SyncFileResult(key=change["key"], uri=uri, version=change["version"], action="load",
                          item_id=tables[0].item_id, cog_uri=None, href=tables[0].location,
                          tables=[t.location for t in tables], rows=sum(t.feature_count for t in tables))
