"""Vector tasks: ``vector.prepare``, ``vector.upload`` and ``vector.finalize`` (PostGIS, or GeoPackage embedded)."""

from __future__ import annotations

from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy
from geomill.tasks.vector import finalize, models, prepare, upload

QUEUE = "vector-tasks"


def register(registry: Registry) -> None:
    """Register the vector task types."""
    registry.register_task_type(TaskType(
        name=prepare.TASK_NAME, handler=prepare.prepare_vector, params_model=prepare.PrepareVectorParams,
        result_model=models.PrepareResult, queue=QUEUE, timeout_seconds=6 * 3600.0,
        retry=RetryPolicy(max_attempts=3), description="read a vector source in batches, clean it, write "
        "GeoParquet chunks and an empty staging table",
    ))
    registry.register_task_type(TaskType(
        name=upload.TASK_NAME, handler=upload.upload_chunk, params_model=models.UploadParams,
        result_model=models.UploadResult, queue=QUEUE, timeout_seconds=3600.0,
        retry=RetryPolicy(max_attempts=3), description="COPY one GeoParquet chunk into the staging table",
    ))
    registry.register_task_type(TaskType(
        name=finalize.TASK_NAME, handler=finalize.finalize_vector, params_model=models.FinalizeParams,
        result_model=models.FinalizeResult, queue=QUEUE, timeout_seconds=6 * 3600.0,
        retry=RetryPolicy(max_attempts=3), description="swap staging into the final table, index, catalog it",
    ))
