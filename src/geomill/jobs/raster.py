"""Job type ``process_raster``: validate a raster, make it a COG, describe the COG as a STAC item.

Inputs larger than ``GEOMILL_LARGE_RASTER_THRESHOLD_MB`` take the tiled path instead (the worker running the
validate task decides and records why): tiling scheme, tile extraction, a COG per tile, a mosaic, a STAC collection.
The job's stages are the union of both paths; a stage of the path not taken plans no task and completes at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from geomill.domain import InvalidInput, StageSpec, TaskSpec
from geomill.domain.models import FinishedStage
from geomill.engine.registry import JobType, Registry
from geomill.jobs import raster_tiling as tiling
from geomill.jobs.results import stage_result
from geomill.tasks.raster import CREATE_COG, VALIDATE
from geomill.tasks.raster.models import (
    COMPRESSIONS,
    DEFAULT_TILE_SIZE,
    RESAMPLINGS,
    CreateCogParams,
    ValidateRasterParams,
    normalize_compression,
    normalize_resampling,
    parse_crs,
)
from geomill.tasks.stac import CREATE_ITEM
from geomill.tasks.stac.models import CreateItemParams

JOB_NAME = "process_raster"
SUMMARY_FIELDS = ("driver", "crs", "epsg", "width", "height", "count", "dtypes", "nodata", "size_bytes",
                  "bounds_wgs84", "resolution", "is_cog")


def _as_value_error(check: Callable[[str | None], Any], value: str | None) -> Any:
    """Run a check that raises InvalidInput and re-raise as ValueError, which pydantic reports as a field error."""
    try:
        return check(value)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


class CogOptions(BaseModel):
    """The COG options every raster job takes, checked when the job is submitted."""

    target_crs: str | None = Field(None, description="reproject to this CRS (EPSG:xxxx, WKT, PROJ string)")
    compression: str | None = Field(None, description=f"one of {', '.join(COMPRESSIONS)}; default DEFLATE")
    resampling: str | None = Field(
        None, description=f"one of {', '.join(RESAMPLINGS)}; default nearest for palette rasters, else average"
    )

    @field_validator("compression")
    @classmethod
    def _known_compression(cls, value: str | None) -> str | None:
        return _as_value_error(normalize_compression, value)

    @field_validator("resampling")
    @classmethod
    def _known_resampling(cls, value: str | None) -> str | None:
        return _as_value_error(normalize_resampling, value)

    @field_validator("target_crs")
    @classmethod
    def _parsable_crs(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        _as_value_error(parse_crs, value)
        return value.strip()


class ProcessRasterParams(CogOptions):
    source: str = Field(min_length=1, description="local path or storage URI of the raster (e.g. bronze://in.tif)",
                        json_schema_extra={"x-geomill-file": True})
    tile_size: int = Field(DEFAULT_TILE_SIZE, ge=256, le=65536, multiple_of=256,
                           description="tile side in pixels when the raster is processed tiled")
    subdataset: str | None = Field(None, description="the subdataset of a container (netCDF variable, HDF5 "
                                                     "dataset) to process, by name; a container is refused "
                                                     "without it, listing its subdatasets")
    gcp_method: Literal["polynomial", "tps"] | None = Field(
        None, description="a raster georeferenced by GCPs only is warped by them: polynomial (default) or tps "
                          "(thin-plate spline)")

    always_tiled: ClassVar[bool] = False  # process_large_raster: tiled whatever the size


def plan_validate(params: ProcessRasterParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [VALIDATE.spec("validate", ValidateRasterParams(source=params.source, subdataset=params.subdataset))]


def plan_create_cog(params: ProcessRasterParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """One COG of the whole raster; on the tiled path, one COG per extracted tile."""
    if tiling.is_tiled(params, previous):
        return tiling.plan_tile_cogs(params, previous)
    checked = stage_result(previous, "validate", "validate")
    if checked is None:
        return []
    return [CREATE_COG.spec("create_cog", CreateCogParams(
        source=checked["source"], target_crs=params.target_crs,
        compression=params.compression, resampling=params.resampling,
        subdataset=params.subdataset, gcp_method=params.gcp_method,
    ), size_bytes=checked.get("size_bytes"))]  # a big input routes to long-tasks


def plan_stac(params: ProcessRasterParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """A STAC item for the COG; on the tiled path, a collection with an item per tile."""
    if tiling.is_tiled(params, previous):
        return tiling.plan_collection(params, previous)
    cog = stage_result(previous, "create_cog", "create_cog")
    if cog is None:
        return []
    return [CREATE_ITEM.spec("stac_item", CreateItemParams(cog_uri=cog["cog_uri"], source=params.source))]


def finalize(params: ProcessRasterParams, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    """``{"source", "path", "reason", "outputs": [...]}``; single path: one output (cog_*, stac_item_*, bbox,
    validate); tiled path: ``outputs`` empty and ``tiled`` = {tiling, tiles, mosaic, collection}."""
    decided = tiling.processing_choice(params, stages)
    choice: dict[str, str | None] = (dict(decided) if decided is not None
                                     else {"path": None, "reason": "the raster was not validated"})
    checked = stage_result(stages, "validate", "validate") or {}
    if choice["path"] == "tiled":
        return {"source": params.source, **choice, "outputs": [],
                "validate": {k: checked[k] for k in SUMMARY_FIELDS if k in checked},
                "tiled": tiling.tiled_outcome(params, stages)}
    cog = stage_result(stages, "create_cog", "create_cog")
    item = stage_result(stages, "stac_item", "stac_item") or {}
    outputs = []
    if cog is not None:
        outputs.append({
            "cog_uri": cog["cog_uri"], "cog_path": cog["path"], "size_bytes": cog["size_bytes"],
            "reused": cog["reused"], "valid": cog["valid"], "crs": cog["crs"], "warnings": cog.get("warnings", []),
            "stac_item_uri": item.get("item_uri"), "stac_item_path": item.get("item_path"),
            "bbox": item.get("bbox"),
            "validate": {k: checked[k] for k in SUMMARY_FIELDS if k in checked},
        })
    return {"source": params.source, **choice, "outputs": outputs}


STAGES = (
    StageSpec("validate", plan_validate, description="open the raster, check it, choose single or tiled processing"),
    StageSpec("tile_scheme", tiling.plan_tile_scheme, description="tiled: cut the output grid into tiles"),
    StageSpec("extract_tiles", tiling.plan_extract_tiles,
              description="tiled: write each tile (reprojected if asked) as a GeoTIFF in silver, on long-tasks"),
    StageSpec("create_cog", plan_create_cog, description="write a Cloud-Optimized GeoTIFF (per tile when tiled)"),
    StageSpec("mosaic", tiling.plan_mosaic,
              description="tiled: a MosaicJSON and a GDAL VRT over the tile COGs; delete the intermediate tiles"),
    StageSpec("stac_item", plan_stac,
              description="catalog the COG as a STAC item (tiled: a collection with an item per tile)"),
)


def register(registry: Registry) -> None:
    """Register the ``process_raster`` job type."""
    registry.register_job_type(JobType(
        name=JOB_NAME,
        description="Validate a raster, convert it to a COG (optionally reprojected), and catalog it in STAC; "
                    "rasters above GEOMILL_LARGE_RASTER_THRESHOLD_MB are processed tiled.",
        params_model=ProcessRasterParams,
        stages=STAGES,
        finalize=finalize,
    ))
