"""Container jobs: ``list_container`` (inventory), ``sync_container`` (inventory → diff → one task per new or changed
raster or vector file → the collection's mosaic), ``catalog_file`` (a STAC item for an existing raster, catalogued
where it is).

``sync_container`` stages: list the source into manifest parts (one task, streamed) → diff each part against the
ledger of what earlier syncs of the same scope processed (one task per part) → one ``container.sync_file`` task per
new or changed raster, or vector file with ``load_vectors`` (planned from the diff results' change lists, which
name files, not objects, so the planner never holds the objects) → one ``container.mosaic`` task when rasters
changed or were removed. The scope is the collection plus the source, its filters, the COG options and (when
loading vectors) the vector schema: another collection or other options make a sync of their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import Field, field_validator

from geomill.catalog.base import check_id
from geomill.domain import FailurePolicy, StageSpec, TaskSpec, canonical_json
from geomill.domain.models import FinishedStage
from geomill.engine.registry import JobType, Registry
from geomill.jobs.raster import CogOptions, _as_value_error
from geomill.jobs.results import stage, stage_result, stage_results
from geomill.tasks.container import CATALOG_FILE, DIFF, LIST, MOSAIC, SYNC_FILE
from geomill.tasks.container.models import (
    DEFAULT_PART_SIZE,
    CatalogFileParams,
    ContainerFilter,
    ContainerMosaicParams,
    DiffPartParams,
    ListContainerParams,
)
from geomill.tasks.stac.models import DEFAULT_COLLECTION
from geomill.tasks.vector.models import check_identifier

DELETED_SHOWN = 1000  # deleted objects named in a sync's result (all are counted)


class SyncContainerParams(ContainerFilter, CogOptions):
    collection_id: str = Field(DEFAULT_COLLECTION, description="the STAC collection the items go to")
    part_size: int = Field(DEFAULT_PART_SIZE, ge=1, le=1_000_000, description="objects per manifest part (and "
                                                                              "per diff task)")
    remove_deleted: bool = Field(False, description="remove the STAC item (and the COG geomill made) of an object "
                                                    "deleted from the source since the last sync")
    load_vectors: bool = Field(False, description="also load each new or changed vector file (GeoJSON, "
                                                  "GeoPackage, FlatGeobuf, zipped shapefile, any .zip...) into "
                                                  "vector_schema, replacing its tables")
    vector_schema: str = Field("geo", description="with load_vectors: the PostgreSQL schema (GeoPackage folder) "
                                                  "the tables go to, named from the file names")
    mosaic: bool = Field(True, description="when rasters changed: refresh the collection's mosaic (MosaicJSON + "
                                           "VRT) over all its rasters, if they are compatible")

    @field_validator("vector_schema")
    @classmethod
    def _safe_schema(cls, value: str) -> str:
        return check_identifier(value, "vector_schema")

    @field_validator("collection_id")
    @classmethod
    def _safe_collection_id(cls, value: str) -> str:
        return str(_as_value_error(lambda v: check_id(v or "", "collection id"), value))


class CatalogFileJobParams(CatalogFileParams):
    @field_validator("collection_id", "item_id")
    @classmethod
    def _safe_ids(cls, value: str | None) -> str | None:
        return None if value is None else _as_value_error(lambda v: check_id(v or "", "id"), value)


def scope_of(params: SyncContainerParams) -> str:
    """The ledger scope of a sync: its collection and a digest of the source, filters and COG options (and the
    vector schema when vectors are loaded: a sync without them keeps the scope it always had)."""
    named = {k: getattr(params, k) for k in ("source", "pattern", "extensions", "sniff", "target_crs",
                                             "compression", "resampling")}
    if params.load_vectors:
        named["vector_schema"] = params.vector_schema
    return f"{params.collection_id}:{hashlib.sha256(canonical_json(named).encode()).hexdigest()[:16]}"


def _listing(params: ContainerFilter, part_size: int) -> ListContainerParams:
    return ListContainerParams(source=params.source, pattern=params.pattern, extensions=params.extensions,
                               sniff=params.sniff, part_size=part_size)


# ------------------------------------------------------------------------------------------------ list_container


def plan_list(params: ListContainerParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [LIST.spec("list", params)]


def finalize_list(params: ListContainerParams, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    """The manifest: ``{"source", "object_uri", "manifest_uri", "parts": [{uri, count, bytes, first_key,
    last_key}], "objects", "bytes", "kinds"}``."""
    return stage_result(stages, "list", "list") or {"source": params.source, "parts": [], "objects": 0}


# ------------------------------------------------------------------------------------------------ sync_container


def plan_sync_list(params: SyncContainerParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [LIST.spec("list", _listing(params, params.part_size))]


def plan_diff(params: SyncContainerParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """One diff per manifest part over its key range (the previous part's last key, its own last key]; the last
    part's range is open above and the first's below, so deleted keys past either end are found. An empty
    listing gets one diff over the whole range: everything processed before was deleted."""
    manifest = stage_result(previous, "list", "list")
    if manifest is None:
        return []
    parts = manifest["parts"] or [None]
    specs = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        specs.append(DIFF.spec(f"diff-{i:05d}", DiffPartParams(
            scope=scope_of(params), collection_id=params.collection_id, part=i,
            part_uri=part["uri"] if part else None, after=parts[i - 1]["last_key"] if i else None,
            upto=None if last or part is None else part["last_key"], remove_deleted=params.remove_deleted,
            vectors=params.load_vectors)))
    return specs


def plan_sync_files(params: SyncContainerParams, previous: Sequence[FinishedStage]) -> Iterator[TaskSpec]:
    """One task per line of the diffs' change lists (a generator: the orchestrator inserts it in chunks)."""
    diffs = stage_results(previous, "diff")
    common = {"scope": scope_of(params), "collection_id": params.collection_id, "target_crs": params.target_crs,
              "compression": params.compression, "resampling": params.resampling,
              "vector_schema": params.vector_schema if params.load_vectors else None}
    for key in sorted(diffs):
        part = diffs[key]["part"]
        for n, changes in enumerate(diffs[key]["changes"]):
            for index in range(changes["count"]):
                yield SYNC_FILE.spec(f"file-{part:05d}-{n:04d}-{index:03d}",
                                     {"changes_uri": changes["uri"], "index": index, **common})


def plan_mosaic(params: SyncContainerParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """One task when the sync changed the collection's rasters (some new or changed, or items removed)."""
    diffs = stage_results(previous, "diff").values()
    if not params.mosaic or not any(d.get("rasters", 0) or d["removed"] for d in diffs):
        return []
    return [MOSAIC.spec("mosaic", ContainerMosaicParams(scope=scope_of(params), collection_id=params.collection_id))]


def finalize_sync(params: SyncContainerParams, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    """Counts of the listing, the diff and the processing, the deleted objects (the first DELETED_SHOWN) and the
    mosaic (None: not refreshed; ``skipped``: the reason there is none)."""
    manifest = stage_result(stages, "list", "list") or {}
    diffs = [stage_results(stages, "diff")[k] for k in sorted(stage_results(stages, "diff"))]
    synced = stage(stages, "sync")
    totals = {name: sum(d[name] for d in diffs) for name in ("geospatial", "new", "changed", "unchanged",
                                                               "deleted", "removed")}
    deleted = [uri for d in diffs for uri in d["deleted_uris"]][:DELETED_SHOWN]
    return {
        "source": params.source, "collection_id": params.collection_id, "scope": scope_of(params),
        "manifest": {k: manifest.get(k) for k in ("object_uri", "manifest_uri", "objects", "bytes", "kinds")}
                    | {"parts": len(manifest.get("parts", []))},
        **totals, "planned": totals["new"] + totals["changed"],
        "synced": synced.completed_count if synced else 0, "failed": synced.failed_count if synced else 0,
        "deleted_objects": deleted, "remove_deleted": params.remove_deleted, "load_vectors": params.load_vectors,
        "mosaic": stage_result(stages, "mosaic", "mosaic"),
    }


# ------------------------------------------------------------------------------------------------ catalog_file


def plan_catalog(params: CatalogFileJobParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [CATALOG_FILE.spec("catalog", CatalogFileParams.model_validate(params.model_dump()))]


def finalize_catalog(params: CatalogFileJobParams, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    return stage_result(stages, "catalog", "catalog") or {"source": params.source}


def register(registry: Registry) -> None:
    """Register ``list_container``, ``sync_container`` and ``catalog_file``."""
    registry.register_job_type(JobType(
        name="list_container",
        description="An inventory of a container or prefix (key, size, etag, mtime, kind), filtered by glob or "
                    "extension, as JSON lines manifest parts in silver.",
        params_model=ListContainerParams,
        stages=(StageSpec("list", plan_list, description="list the source into manifest parts, streamed"),),
        finalize=finalize_list,
    ))
    registry.register_job_type(JobType(
        name="sync_container",
        description="Inventory a container, diff it (by etag) against what earlier syncs processed, and process "
                    "each new or changed raster (catalogued in place when a COG, else COG + STAC item) and, with "
                    "load_vectors, vector file (loaded into PostGIS); then refresh the collection's mosaic.",
        params_model=SyncContainerParams,
        stages=(
            StageSpec("list", plan_sync_list, description="list the source into manifest parts, streamed"),
            StageSpec("diff", plan_diff, description="each part against the ledger: new, changed, deleted"),
            StageSpec("sync", plan_sync_files, failure_policy=FailurePolicy.TOLERATE,
                      description="one task per new or changed raster or vector file (a file that fails is "
                                  "counted, and tried again by the next sync)"),
            StageSpec("mosaic", plan_mosaic, description="the collection's MosaicJSON + VRT over all its rasters, "
                                                         "when they are compatible"),
        ),
        finalize=finalize_sync,
    ))
    registry.register_job_type(JobType(
        name="catalog_file",
        description="A STAC item for an existing raster (a COG), catalogued where it is, without rewriting it.",
        params_model=CatalogFileJobParams,
        stages=(StageSpec("catalog", plan_catalog, description="describe the raster as a STAC item in place"),),
        finalize=finalize_catalog,
    ))
