"""Task ``container.mosaic``: the collection's mosaic (MosaicJSON + VRT) over every raster a sync scope processed.

The rasters are the ledger's entries of the scope that have a STAC item (vector files have none): the COG geomill
wrote, or the object itself when it was a COG catalogued in place, in key order (the first wins where they
overlap). ``raster.mosaic``'s handler writes ``silver://mosaics/<collection id>.json`` and ``.vrt``, replacing the
previous ones; when the rasters do not share CRS, band count and data types (or one cannot be read) there is no
mosaic and the result says why (``skipped``): a sync of unrelated rasters is not a failed sync.
"""

from __future__ import annotations

import logging

from geomill.domain import InvalidInput
from geomill.engine.context import TaskContext
from geomill.tasks.container.diff import LEDGER_PAGE
from geomill.tasks.container.models import ContainerMosaicParams, ContainerMosaicResult
from geomill.tasks.raster.models import MosaicParams
from geomill.tasks.raster.mosaic import create_mosaic

logger = logging.getLogger(__name__)


def scope_rasters(ctx: TaskContext, scope: str) -> list[str]:
    """The URIs of the scope's rasters as catalogued (their COGs), in key order."""
    cogs: list[str] = []
    after = ""
    while page := ctx.ledger.processed_range(scope, after, None, LEDGER_PAGE):
        cogs += [entry.cog_uri or entry.uri for entry in page if entry.item_id]
        after = page[-1].key
    return cogs


def mosaic_collection(params: ContainerMosaicParams, ctx: TaskContext) -> ContainerMosaicResult:
    """Handler of ``container.mosaic``."""
    cogs = scope_rasters(ctx, params.scope)
    if not cogs:
        return ContainerMosaicResult(rasters=0, skipped="no rasters in the collection")
    try:
        made = create_mosaic(MosaicParams(cogs=cogs, name=params.collection_id), ctx)
    except InvalidInput as exc:
        logger.info("no mosaic for the collection", extra={"task_id": ctx.task_id, "reason": str(exc)})
        return ContainerMosaicResult(rasters=len(cogs), skipped=str(exc))
    return ContainerMosaicResult(rasters=len(cogs), mosaicjson_uri=made.mosaicjson_uri, vrt_uri=made.vrt_uri,
                                 bounds=made.bounds, crs=made.crs)
