"""Job type ``process_vector``: a vector file into PostGIS (or a GeoPackage in embedded mode), cataloged in STAC.

Stages: prepare (one task: read in batches, clean, GeoParquet chunks, staging table) -> upload (one task per
chunk, in parallel, COPY into staging) -> finalize (one task per output table: swap into place, indexes,
catalog row, STAC item). The upload stage tolerates failures so that finalize always runs: it drops the staging
table and fails the job when an upload failed, so a failed job leaves nothing half-loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geomill.domain import FailurePolicy, StageSpec, TaskSpec
from geomill.domain.models import FinishedStage
from geomill.engine.registry import JobType, Registry
from geomill.jobs.results import stage_errors, stage_result, stage_results
from geomill.tasks.vector import FINALIZE, PREPARE, UPLOAD
from geomill.tasks.vector.models import FinalizeParams, UploadParams, VectorLoad, VectorOptions

JOB_NAME = "process_vector"


class ProcessVectorParams(VectorOptions):
    pass


def _loads(previous: Sequence[FinishedStage]) -> list[VectorLoad]:
    result = stage_result(previous, "prepare", "prepare")
    return [VectorLoad.model_validate(doc) for doc in result["loads"]] if result else []


def plan_prepare(params: ProcessVectorParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    return [PREPARE.spec("prepare", params)]  # the job's parameters are the prepare task's


def plan_upload(params: ProcessVectorParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """One task per chunk of every output."""
    return [UPLOAD.spec(f"{i}-{chunk.index:05d}", UploadParams(target=load.target, chunk=chunk),
                        size_bytes=chunk.size_bytes)
            for i, load in enumerate(_loads(previous)) for chunk in load.chunks]


def plan_finalize(params: ProcessVectorParams, previous: Sequence[FinishedStage]) -> list[TaskSpec]:
    """One task per output, told how many rows its uploads loaded and what failed."""
    results, errors = stage_results(previous, "upload"), stage_errors(previous, "upload")
    plan = []
    for i, load in enumerate(_loads(previous)):
        prefix = f"{i}-"
        rows = sum(r.get("rows", 0) for k, r in results.items() if k.startswith(prefix))
        failed = [f"chunk {k}: {e.get('type')}: {e.get('message')}" for k, e in sorted(errors.items())
                  if k.startswith(prefix)]
        plan.append(FINALIZE.spec(f"finalize-{i}", FinalizeParams(load=load, uploaded_rows=rows,
                                                                  upload_errors=failed)))
    return plan


def finalize(params: ProcessVectorParams, stages: Sequence[FinishedStage]) -> dict[str, Any]:
    """``{"source", "tables": [finalize results], "column_mapping", "repaired", "linearized", "skipped_layers", "chunks"}``."""
    prepare = stage_result(stages, "prepare", "prepare") or {}
    done = stage_results(stages, "finalize")
    tables = [done[k] for k in sorted(done)]
    return {"source": params.source, "tables": tables, "column_mapping": prepare.get("column_mapping", {}),
            "repaired": sum(t.get("repaired", 0) for t in tables),
            "linearized": sum(t.get("linearized", 0) for t in tables),
            "skipped_layers": prepare.get("skipped_layers", []),
            "chunks": sum(len(ld.get("chunks", [])) for ld in prepare.get("loads", []))}


STAGES = (
    StageSpec("prepare", plan_prepare, description="read the source in batches, clean it, write GeoParquet chunks"),
    StageSpec("upload", plan_upload, failure_policy=FailurePolicy.TOLERATE,
              description="COPY each chunk into a staging table (in parallel); failures reach finalize"),
    StageSpec("finalize", plan_finalize, description="swap staging into place, index, catalog, STAC item"),
)


def register(registry: Registry) -> None:
    """Register the ``process_vector`` job type."""
    registry.register_job_type(JobType(
        name=JOB_NAME,
        description="Load a vector file (Shapefile, GeoPackage, GeoJSON, FlatGeobuf, GeoParquet, KML, CSV, zipped) "
                    "into PostGIS (GeoPackage in embedded mode), cleaned and indexed, and catalog it in STAC.",
        params_model=ProcessVectorParams,
        stages=STAGES,
        finalize=finalize,
    ))
