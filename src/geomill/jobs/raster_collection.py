"""Job type ``process_raster_collection``: N rasters -> N COGs, one MosaicJSON + VRT, one STAC collection.

Stages: list the files under ``source_prefix`` (no task when ``sources`` is given) -> validate each (fan-out) ->
check they are compatible and make a COG of each (fan-out; the check is the plan of this stage, so an
incompatible set fails the job with an InvalidInput naming the odd rasters before any COG is written) -> mosaic
(fan-in) -> STAC collection with an item per COG (fan-in).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from pydantic import Field, field_validator, model_validator

from geomill.catalog.base import check_id
from geomill.domain import StageSpec, TaskSpec, canonical_json
from geomill.domain.models import FinishedStage
from geomill.engine.registry import JobType, Registry
from geomill.jobs.raster import SUMMARY_FIELDS, CogOptions, _as_value_error
from geomill.jobs.results import stage_result, stage_results
from geomill.tasks.raster import CREATE_COG, LIST_SOURCES, MOSAIC, VALIDATE
from geomill.tasks.raster.compat import Shape
from geomill.tasks.raster.compat import check_compatible as check_shapes
from geomill.tasks.raster.models import (
    CreateCogParams,
    ListSourcesParams,
    MosaicParams,
    ValidateRasterParams,
    parse_crs,
)
from geomill.tasks.stac import CREATE_COLLECTION
from geomill.tasks.stac.models import CollectionItemSpec, CreateCollectionParams, MosaicRef

JOB_NAME = "process_raster_collection"
MAX_ID = 200


class ProcessRasterCollectionParams(CogOptions):
    sources: list[str] | None = Field(None, min_length=1, description="local paths or storage URIs of the rasters",
                                      json_schema_extra={"x-geomill-file": True})
    source_prefix: str | None = Field(
        None, min_length=1, description="a folder or storage prefix (e.g. bronze://scenes/): every raster file in it",
        json_schema_extra={"x-geomill-file": True},
    )
    collection_id: str | None = Field(None, description="STAC collection id; default derived from the sources")

    @field_validator("collection_id")
    @classmethod
    def _safe_collection_id(cls, value: str | None) -> str | None:
        return None if value is None else _as_value_error(lambda v: check_id(v or "", "collection id"), value)

    @field_validator("sources")
    @classmethod
    def _distinct_sources(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            repeated = sorted(s for s, n in Counter(value).items() if n > 1)
            if repeated:
                raise ValueError(f"sources are listed more than once: {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _one_way_to_name_sources(self) -> ProcessRasterCollectionParams:
        if (self.sources is None) == (self.source_prefix is None):
            raise ValueError("give exactly one of sources (a list of rasters) or source_prefix (a folder or prefix)")
        return self


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")


def collection_id_for(params: ProcessRasterCollectionParams) -> str:
    """The given id, else ``<prefix name>-<hash>`` or ``rasters-<hash>``: the same sources, the same collection."""
    if params.collection_id:
        return params.collection_id
    named = params.source_prefix or canonical_json(params.sources)
    digest = hashlib.sha256(named.encode()).hexdigest()[:10]
    stem = _slug(PurePosixPath(params.source_prefix.split("://", 1)[-1]).name) if params.source_prefix else ""
    return f"{(stem or 'rasters')[:MAX_ID - 11]}-{digest}"


def item_ids_for(sources: Sequence[str]) -> list[str]:
    """One STAC item id per source: its file stem, made safe; a repeated stem gets ``-<n>`` (n = its position)."""
    stems = [(_slug(PurePosixPath(s.split("://", 1)[-1]).stem) or "raster")[:MAX_ID - 7] for s in sources]
    counts = Counter(stems)
    return [stem if counts[stem] == 1 else f"{stem}-{i:05d}" for i, stem in enumerate(stems)]


def _key(stage: str, index: int) -> str:
    return f"{stage}-{index:05d}"


def source_list(params: ProcessRasterCollectionParams, previous: Sequence[FinishedStage]) -> list[str]:
    """The sources as given, or as listed by the first stage."""
    if params.sources is not None:
        return list(params.sources)
    listed = stage_result(previous, "list_sources", "list")
    return list(listed["sources"]) if listed else []


# ------------------------------------------------------------------------------------------------ compatibility


def _crs_key(summary: dict[str, Any]) -> str:
    return f"EPSG:{summary['epsg']}" if summary.get("epsg") else summary["crs"]


def shape_of(summary: dict[str, Any], target: Any) -> Shape:
    """The mosaic-relevant shape of a validated raster; `target` is the parsed target CRS (None: kept)."""
    reprojected = target is not None and parse_crs(summary["crs"]) != target
    return Shape(
        crs=None if target is not None else _crs_key(summary), count=summary["count"],
        dtypes=tuple(summary["dtypes"]), alpha_added=reprojected and summary.get("nodata") is None,
    )


def check_compatible(sources: Sequence[str], summaries: Sequence[dict[str, Any]], target_crs: str | None) -> None:
    """InvalidInput naming every raster that differs from the majority (the first seen wins a tie), and how."""
    target = parse_crs(target_crs)
    hint = "" if target_crs else " (or give target_crs to reproject them all to one CRS)"
    check_shapes(sources, [shape_of(s, target) for s in summaries], field="sources",
                 what="A collection's rasters", hint=hint)


# ------------------------------------------------------------------------------------------------ stages


def plan_list_sources(params: ProcessRasterCollectionParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    if params.source_prefix is None:
        return []
    return [LIST_SOURCES.spec("list", ListSourcesParams(prefix=params.source_prefix))]


def plan_validate(params: ProcessRasterCollectionParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [VALIDATE.spec(_key("validate", i), ValidateRasterParams(source=s))
            for i, s in enumerate(source_list(params, previous))]


def plan_create_cogs(params: ProcessRasterCollectionParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """Check the validated rasters are compatible, then one COG task per raster, big ones routed to long-tasks."""
    sources = source_list(params, previous)
    validated = stage_results(previous, "validate")
    found = [validated.get(_key("validate", i)) for i in range(len(sources))]
    summaries = [s for s in found if s is not None]
    if not sources or len(summaries) != len(found):
        return []  # a failed validation has already failed the job
    check_compatible(sources, summaries, params.target_crs)
    return [CREATE_COG.spec(_key("cog", i), CreateCogParams(
        source=summary["source"], target_crs=params.target_crs,
        compression=params.compression, resampling=params.resampling,
    ), size_bytes=summary.get("size_bytes")) for i, summary in enumerate(summaries)]


def _cogs(previous: Sequence[FinishedStage], count: int) -> list[dict[str, Any]] | None:
    done = stage_results(previous, "create_cog")
    found = [done.get(_key("cog", i)) for i in range(count)]
    cogs = [c for c in found if c is not None]
    return cogs if cogs and len(cogs) == len(found) else None


def plan_mosaic(params: ProcessRasterCollectionParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    cogs = _cogs(previous, len(source_list(params, previous)))
    if cogs is None:
        return []
    return [MOSAIC.spec("mosaic", MosaicParams(cogs=[c["cog_uri"] for c in cogs], name=collection_id_for(params),
                                               quadkey_zoom=None))]


def plan_collection(params: ProcessRasterCollectionParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    sources = source_list(params, previous)
    cogs = _cogs(previous, len(sources))
    mosaic = stage_result(previous, "mosaic", "mosaic")
    if cogs is None or mosaic is None:
        return []
    items = [CollectionItemSpec(cog_uri=c["cog_uri"], source=s, item_id=i)
             for c, s, i in zip(cogs, sources, item_ids_for(sources), strict=True)]
    return [CREATE_COLLECTION.spec("collection", CreateCollectionParams(
        collection_id=collection_id_for(params), items=items, mosaic=MosaicRef.model_validate(mosaic)))]


def finalize(params: ProcessRasterCollectionParams, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    """``{"collection_id", "items", "item_count", "mosaic": {...}, "catalog_backend", "outputs": [per source]}``."""
    sources = source_list(params, stages)
    validated = stage_results(stages, "validate")
    cogs = _cogs(stages, len(sources)) or []
    mosaic = stage_result(stages, "mosaic", "mosaic") or {}
    collection = stage_result(stages, "collection", "collection") or {}
    outputs = []
    # strict=False: when the COGs did not all complete, `cogs` is empty and there are no outputs
    for i, (source, cog, item_id) in enumerate(zip(sources, cogs, item_ids_for(sources), strict=False)):
        checked = validated.get(_key("validate", i)) or {}
        outputs.append({
            "source": source, "cog_uri": cog["cog_uri"], "cog_path": cog["path"], "size_bytes": cog["size_bytes"],
            "reused": cog["reused"], "valid": cog["valid"], "crs": cog["crs"], "item_id": item_id,
            "validate": {k: checked[k] for k in SUMMARY_FIELDS if k in checked},
        })
    return {
        "collection_id": collection.get("collection_id", collection_id_for(params)),
        "items": collection.get("item_ids", []), "item_count": collection.get("item_count", 0),
        "collection_path": collection.get("collection_path"), "bbox": collection.get("bbox"),
        "catalog_backend": collection.get("backend"),
        "mosaic": {k: mosaic.get(k) for k in ("mosaicjson_uri", "mosaicjson_path", "vrt_uri", "vrt_path", "bounds")},
        "outputs": outputs,
    }


STAGES = (
    StageSpec("list_sources", plan_list_sources, description="list the raster files under source_prefix"),
    StageSpec("validate", plan_validate, description="open each raster and check it is readable and georeferenced"),
    StageSpec("create_cog", plan_create_cogs,
              description="check the rasters are compatible (CRS, bands, data type), then a COG of each"),
    StageSpec("mosaic", plan_mosaic, description="a MosaicJSON and a GDAL VRT over the COGs"),
    StageSpec("collection", plan_collection, description="a STAC collection with an item per COG, upserted"),
)


def register(registry: Registry) -> None:
    """Register the ``process_raster_collection`` job type."""
    registry.register_job_type(JobType(
        name=JOB_NAME,
        description="Validate N compatible rasters, make a COG of each, mosaic them (MosaicJSON + VRT) and catalog "
                    "them as one STAC collection.",
        params_model=ProcessRasterCollectionParams,
        stages=STAGES,
        finalize=finalize,
    ))
