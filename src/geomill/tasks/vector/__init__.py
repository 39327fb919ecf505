"""Vector task types ``vector.prepare``, ``vector.upload`` and ``vector.finalize`` (into the worker's vector sink:
PostGIS, or GeoPackage embedded), declared by reference: no pyogrio or pyarrow until a worker runs one."""

from __future__ import annotations

from geomill.engine.registry import Registry, TaskType
from geomill.engine.retry import RetryPolicy

QUEUE = "vector-tasks"
_P = "geomill.tasks.vector"

PREPARE = TaskType(
    name="vector.prepare", handler=f"{_P}.prepare:prepare_vector", params_model=f"{_P}.models:PrepareVectorParams",
    result_model=f"{_P}.models:PrepareResult", queue=QUEUE, timeout_seconds=6 * 3600.0,
    retry=RetryPolicy(max_attempts=3),
    description="read a vector source in batches, clean it, write GeoParquet chunks and an empty staging table",
)
UPLOAD = TaskType(
    name="vector.upload", handler=f"{_P}.upload:upload_chunk", params_model=f"{_P}.models:UploadParams",
    result_model=f"{_P}.models:UploadResult", queue=QUEUE, timeout_seconds=3600.0,
    retry=RetryPolicy(max_attempts=3), description="COPY one GeoParquet chunk into the staging table",
)
FINALIZE = TaskType(
    name="vector.finalize", handler=f"{_P}.finalize:finalize_vector", params_model=f"{_P}.models:FinalizeParams",
    result_model=f"{_P}.models:FinalizeResult", queue=QUEUE, timeout_seconds=6 * 3600.0,
    retry=RetryPolicy(max_attempts=3), description="swap staging into the final table, index, catalog it",
)
TASK_TYPES = (PREPARE, UPLOAD, FINALIZE)


def register(registry: Registry) -> None:
    """Register the vector task types."""
    for task_type in TASK_TYPES:
        registry.register_task_type(task_type)
