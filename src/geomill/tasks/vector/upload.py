"""Task ``vector.upload``: one GeoParquet chunk into the vector sink's staging (PostGIS COPY, or GeoPackage).

Idempotent per chunk: a re-run replaces the chunk's own rows, in the same transaction (PostGIS) or under the
same file lock (GeoPackage). Memory is bounded by the chunk size.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from geomill.domain import InvalidInput, TaskError
from geomill.engine.context import TaskContext
from geomill.tasks.vector.geometry import promote, z_empties
from geomill.tasks.vector.models import LoadTarget, UploadParams, UploadResult
from geomill.tasks.vector.naming import GEOMETRY_COLUMN

logger = logging.getLogger(__name__)


def chunk_wkb(table: pa.Table, target: LoadTarget) -> pa.Array:
    """The chunk's geometries as little-endian WKB of the target type: as prepared when nothing must change,
    else promoted to multi and/or given the target's dimension through shapely."""
    column = table.column(GEOMETRY_COLUMN)
    if not target.convert:
        return column.combine_chunks()
    geoms = promote(shapely.from_wkb(column.to_numpy(zero_copy_only=False)), target.geometry_type)
    geoms = shapely.force_3d(geoms) if target.has_z else shapely.force_2d(geoms)
    wkb = shapely.to_wkb(geoms, byte_order=1, flavor="iso")
    return pa.array(z_empties(wkb, geoms) if target.has_z else wkb, type=pa.binary())


def _discard_after_cancel(target: LoadTarget, ctx: TaskContext) -> None:
    """A cancelled job never reaches finalize: its staging table goes now (best effort; a re-run replaces it)."""
    try:
        ctx.vector_sink.drop_staging(target)
    except Exception:
        logger.warning("could not drop the staging of a cancelled load", exc_info=True,
                       extra={"job_id": ctx.job_id, "task_id": ctx.task_id})


def _check_backend(planned: str, ctx: TaskContext) -> None:
    """The load was prepared for one backend; a worker with another sink must not write half of it elsewhere."""
    if ctx.vector_sink.backend != planned:
        raise TaskError(f"this load was prepared for {planned}, but this worker's vector sink is "
                        f"{ctx.vector_sink.backend}")


def read_chunk(params: UploadParams, ctx: TaskContext) -> pa.Table:
    """The chunk's rows, from the local silver folder or (silver in S3/Azure) one GET of the whole chunk: memory
    holds the compressed chunk and its table, both bounded by ``chunk_rows``; nothing touches local disk."""
    uri = params.chunk.uri
    if ctx.storage.is_remote(uri):
        try:
            data = ctx.storage.read_bytes(uri)
        except InvalidInput as exc:
            raise InvalidInput(f"chunk {uri} is missing: run the job again ({exc})", field="chunk") from None
        table = pq.read_table(pa.BufferReader(data))
    else:
        path = ctx.storage.local_path(uri)
        if not path.is_file():
            raise InvalidInput(f"chunk {uri} is missing: run the job again", field="chunk")
        table = pq.read_table(path)
    if table.num_rows != params.chunk.rows:
        raise TaskError(f"chunk {params.chunk.uri} has {table.num_rows} rows, prepare wrote {params.chunk.rows}")
    return table


def upload_chunk(params: UploadParams, ctx: TaskContext) -> UploadResult:
    """Handler of ``vector.upload``."""
    target = params.target
    table = read_chunk(params, ctx)
    wkb = chunk_wkb(table, target)
    index = table.column_names.index(GEOMETRY_COLUMN)
    if ctx.cancelled:
        _discard_after_cancel(target, ctx)
        raise TaskError("job cancelled before the chunk was loaded (staging dropped)")
    _check_backend(target.backend, ctx)
    rows = ctx.vector_sink.write_chunk(target, params.chunk.index, table.set_column(index, GEOMETRY_COLUMN, wkb))
    ctx.progress(1.0, f"{rows} rows loaded")
    return UploadResult(table=f"{target.schema_}.{target.table}", chunk=params.chunk.index, rows=rows)
