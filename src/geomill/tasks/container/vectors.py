"""One vector file a sync found new or changed, loaded in-process by the ``process_vector`` handlers.

prepare (GeoParquet chunks + staging) → upload of each chunk, one after the other → finalize (swap into place,
indexes, STAC item in ``geomill-vectors``), all inside the one ``container.sync_file`` task: a sync plans one task
per file whatever its size, and the ledger records the file only once its tables are in place. The load is
``if_exists=replace`` (a changed file replaces its tables' rows), every layer (``layer='*'``: a GeoPackage of
several layers gives ``<table>_<layer>`` tables), the table named from the file name (tasks/vector/naming.py).
A failed upload drops the staging, so a failed file leaves its previous tables as they were; a retry of the task
prepares again (the chunk keys follow the object's etag) and replaces.
"""

from __future__ import annotations

from geomill.engine.context import TaskContext
from geomill.tasks.vector.finalize import finalize_vector
from geomill.tasks.vector.models import FinalizeParams, FinalizeResult, PrepareVectorParams, UploadParams
from geomill.tasks.vector.prepare import prepare_vector
from geomill.tasks.vector.sources import ALL_LAYERS
from geomill.tasks.vector.upload import upload_chunk


def load_vector(uri: str, schema: str, ctx: TaskContext) -> list[FinalizeResult]:
    """Load `uri` into `schema` (replacing its tables); returns one finalize result per table."""
    prepared = prepare_vector(PrepareVectorParams(source=uri, schema_=schema, if_exists="replace",
                                                  layer=ALL_LAYERS), ctx)
    done = []
    for load in prepared.loads:
        try:
            rows = sum(upload_chunk(UploadParams(target=load.target, chunk=chunk), ctx).rows
                       for chunk in load.chunks)
        except BaseException:
            ctx.vector_sink.drop_staging(load.target)
            raise
        done.append(finalize_vector(FinalizeParams(load=load, uploaded_rows=rows), ctx))
    return done
