"""Task ``vector.upload``: one GeoParquet chunk into the staging table (COPY) or staging GeoPackage.

Idempotent per chunk: a re-run replaces the chunk's own rows, in the same transaction (PostGIS) or under the
same file lock (GeoPackage). Memory is bounded by the chunk size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from geomill.domain import InvalidInput, TaskError
from geomill.engine.context import TaskContext
from geomill.tasks.vector import geopackage, postgis
from geomill.tasks.vector.geometry import promote, wkb_to_ewkb_hex
from geomill.tasks.vector.models import LoadTarget, UploadParams, UploadResult
from geomill.tasks.vector.naming import GEOMETRY_COLUMN

logger = logging.getLogger(__name__)

TASK_NAME = "vector.upload"
COPY_SLICE_ROWS = 10_000


def chunk_wkb(table: pa.Table, target: LoadTarget) -> pa.Array:
    """The chunk's geometries as little-endian WKB of the target type: as prepared when nothing must change,
    else promoted to multi and/or given the target's dimension through shapely."""
    column = table.column(GEOMETRY_COLUMN)
    if not target.convert:
        return column.combine_chunks()
    geoms = promote(shapely.from_wkb(column.to_numpy(zero_copy_only=False)), target.geometry_type)
    geoms = shapely.force_3d(geoms) if target.has_z else shapely.force_2d(geoms)
    return pa.array(shapely.to_wkb(geoms, byte_order=1, flavor="iso"), type=pa.binary())


def ewkb_hex(wkb: pa.Array, srid: int) -> pa.Array:
    """Hex EWKB for COPY: by array arithmetic, or through shapely for WKB that is not little-endian."""
    hexed = wkb_to_ewkb_hex(wkb, srid)
    if hexed is None:
        geoms = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
        hexed = wkb_to_ewkb_hex(pa.array(shapely.to_wkb(geoms, byte_order=1, flavor="iso"), type=pa.binary()), srid)
    return hexed


def _hex_slices(table: pa.Table, index: int, srid: int) -> Iterator[pa.Table]:
    """The chunk in slices with geometries as hex EWKB: the text form exists for one slice at a time."""
    for offset in range(0, table.num_rows, COPY_SLICE_ROWS):
        piece = table.slice(offset, COPY_SLICE_ROWS)
        yield piece.set_column(index, GEOMETRY_COLUMN, ewkb_hex(piece.column(index).combine_chunks(), srid))


def _discard_after_cancel(target: LoadTarget, ctx: TaskContext) -> None:
    """A cancelled job never reaches finalize: its staging table goes now (best effort; a re-run replaces it)."""
    from geomill.tasks.vector.finalize import discard_staging

    try:
        discard_staging(target, ctx)
    except Exception:  # noqa: BLE001 - the cancel itself must not fail on a busy table
        logger.warning("could not drop the staging of a cancelled load", exc_info=True,
                       extra={"job_id": ctx.job_id, "task_id": ctx.task_id})


def read_chunk(params: UploadParams, ctx: TaskContext) -> pa.Table:
    path = ctx.storage.local_path(params.chunk.uri)
    if not path.is_file():
        raise InvalidInput(f"chunk {params.chunk.uri} is missing: run the job again", field="chunk")
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
    if target.backend == "postgis":
        table = table.set_column(index, GEOMETRY_COLUMN, wkb)
        with postgis.connect(ctx.database_url) as conn:  # type: ignore[arg-type]
            rows = postgis.copy_chunk(conn, target, params.chunk.index, table.column_names,
                                      _hex_slices(table, index, target.srid))
    else:
        table = table.set_column(index, GEOMETRY_COLUMN, wkb)
        rows = geopackage.append_chunk(Path(target.staging), target, table)
    ctx.progress(1.0, f"{rows} rows loaded")
    return UploadResult(table=f"{target.schema_}.{target.table}", chunk=params.chunk.index, rows=rows)
