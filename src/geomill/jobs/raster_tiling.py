"""Stage plans of the tiled raster path, shared by ``process_raster`` (large inputs) and ``process_large_raster``.

tile_scheme (1 task) -> extract_tiles (1 per tile, long-tasks) -> COG per tile (raster.create_cog, 1 per tile)
-> mosaic (raster.mosaic, fan-in; beside it, the intermediate tiles are deleted) -> STAC collection + an item per
tile (stac.create_collection, fan-in). Each plan returns no task when the job is not on the tiled path, so the
stage completes at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geomill.domain import TaskSpec
from geomill.domain.models import FinishedStage
from geomill.jobs.results import stage_result, stage_results
from geomill.tasks.raster import CREATE_COG, EXTRACT_TILE, MOSAIC, REMOVE_INTERMEDIATES, TILE_SCHEME
from geomill.tasks.raster.models import (
    CreateCogParams,
    ExtractTileParams,
    MosaicParams,
    RemoveIntermediatesParams,
    TileSchemeParams,
    cog_key,
    extract_uri,
)
from geomill.tasks.stac import CREATE_COLLECTION
from geomill.tasks.stac.models import CollectionItemSpec, CreateCollectionParams, MosaicRef


def processing_choice(params: Any, previous: Sequence[FinishedStage]) -> dict[str, str] | None:
    """``{"path": "tiled"|"single", "reason"}``: forced by the job type, else what the validate task decided."""
    checked = stage_result(previous, "validate", "validate")
    if checked is None:
        return None
    if getattr(params, "always_tiled", False):
        return {"path": "tiled", "reason": "process_large_raster always processes its input as tiles"}
    decided = checked.get("processing") or {"path": "single", "reason": "the validate result made no choice"}
    return {"path": decided["path"], "reason": decided["reason"]}


def is_tiled(params: Any, previous: Sequence[FinishedStage]) -> bool:
    choice = processing_choice(params, previous)
    return choice is not None and choice["path"] == "tiled"


def _scheme(params: Any, previous: Sequence[FinishedStage]) -> dict[str, Any] | None:
    return stage_result(previous, "tile_scheme", "tile_scheme") if is_tiled(params, previous) else None


def plan_tile_scheme(params: Any, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    if not is_tiled(params, previous):
        return []
    checked = stage_result(previous, "validate", "validate")
    assert checked is not None  # is_tiled read it
    return [TILE_SCHEME.spec("tile_scheme", TileSchemeParams(
        source=checked["source"], target_crs=params.target_crs, tile_size=params.tile_size,
        compression=params.compression, resampling=params.resampling,
    ))]


def plan_extract_tiles(params: Any, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """One task per tile; the task type's queue is long-tasks."""
    scheme = _scheme(params, previous)
    if scheme is None:
        return []
    return [EXTRACT_TILE.spec(tile["key"], ExtractTileParams(
        source=scheme["source"], grid=scheme["grid"], reproject=scheme["reproject"],
        resampling=scheme["resampling"], tile=tile, output_uri=extract_uri(scheme["name"], tile["key"]),
    )) for tile in scheme["tiles"]]


def plan_tile_cogs(params: Any, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """A COG per extracted tile, with raster.create_cog (a tile bigger than the long threshold goes long)."""
    scheme = _scheme(params, previous)
    if scheme is None:
        return []
    extracted = stage_results(previous, "extract_tiles")
    return [CREATE_COG.spec(key, CreateCogParams(
        source=tile["uri"], compression=scheme["compression"], resampling=scheme["resampling"],
        output_key=cog_key(scheme["name"], key),
    ), size_bytes=tile["size_bytes"]) for key, tile in sorted(extracted.items())]


def _tile_cogs(previous: Sequence[FinishedStage]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(stage_results(previous, "create_cog").items())


def plan_mosaic(params: Any, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """The mosaic over the tile COGs, and (in parallel: the COGs no longer need them) the intermediates' removal."""
    scheme = _scheme(params, previous)
    if scheme is None:
        return []
    cogs = [cog["cog_uri"] for _, cog in _tile_cogs(previous)]
    folder = extract_uri(scheme["name"], "x").rsplit("/", 1)[0]
    return [MOSAIC.spec("mosaic", MosaicParams(cogs=cogs, name=scheme["name"], quadkey_zoom=None)),
            REMOVE_INTERMEDIATES.spec("cleanup", RemoveIntermediatesParams(uri=folder))]


def plan_collection(params: Any, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """One STAC collection named after the scheme, an item per tile COG, the mosaic as collection assets."""
    scheme = _scheme(params, previous)
    if scheme is None:
        return []
    name = scheme["name"]
    items = [CollectionItemSpec(cog_uri=cog["cog_uri"], source=params.source, item_id=f"{name}-{key}")
             for key, cog in _tile_cogs(previous)]
    mosaic = stage_result(previous, "mosaic", "mosaic")
    return [CREATE_COLLECTION.spec("stac_collection", CreateCollectionParams(
        collection_id=name, title=f"{params.source} in {len(items)} tiles",
        description=f"Tiles of {params.source} ({scheme['grid']['width']}x{scheme['grid']['height']} pixels, "
                    f"{scheme['tile_size']} px tiles{', reprojected' if scheme['reproject'] else ''}), made by "
                    "geomill's tiled raster path.",
        items=items, mosaic=MosaicRef.model_validate(mosaic) if mosaic else None,
    ))]


def tiled_outcome(params: Any, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    """The tiled part of the job's result: grid, tiles, tile COGs, mosaic and collection."""
    scheme = stage_result(stages, "tile_scheme", "tile_scheme") or {}
    collection = stage_result(stages, "stac_item", "stac_collection")
    return {
        "tiling": {k: scheme.get(k) for k in ("name", "grid", "tile_size", "buffer", "rows", "cols", "reproject")},
        "tiles": [{"key": key, "cog_uri": cog["cog_uri"], "cog_path": cog["path"], "size_bytes": cog["size_bytes"],
                   "valid": cog["valid"], "reused": cog["reused"]} for key, cog in _tile_cogs(stages)],
        "mosaic": stage_result(stages, "mosaic", "mosaic"),
        "collection": collection,
        "intermediates_removed": stage_result(stages, "mosaic", "cleanup"),
    }
