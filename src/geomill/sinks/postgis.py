"""The PostGIS vector sink: staging tables, COPY per chunk, the swap into place, the catalog table, all on a small
bounded pool (sinks.pool). Its SQL and DDL are in sinks/postgis_sql.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from psycopg.types.json import Jsonb

from geomill.domain import InvalidInput, TaskError
from geomill.engine.context import FinalTable
from geomill.sinks import GEOMETRY_COLUMN
from geomill.sinks import postgis_sql as q
from geomill.sinks.ewkb import ewkb_hex
from geomill.sinks.pool import ResourcePool

COPY_SLICE_ROWS = 10_000  # rows turned into hex EWKB text at a time: bounds the memory of one COPY


def public_database_url(url: str) -> str:
    """The database URL without user or password (it goes into a STAC item)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{host}{port}{parts.path}"


def _hex_slices(table: pa.Table, index: int, srid: int) -> Iterator[pa.Table]:
    """The chunk in slices with geometries as hex EWKB: the text form exists for one slice at a time."""
    for offset in range(0, table.num_rows, COPY_SLICE_ROWS):
        piece = table.slice(offset, COPY_SLICE_ROWS)
        yield piece.set_column(index, GEOMETRY_COLUMN, ewkb_hex(piece.column(index).combine_chunks(), srid))


def _catalog_values(load: Any) -> dict[str, Any]:
    target = load.target
    return {"table_name": target.table, "geometry_column": GEOMETRY_COLUMN, "geometry_type": target.geometry_type,
            "srid": target.srid, "source": load.source, "layer": load.layer,
            "columns": Jsonb([c.model_dump() for c in target.columns]), "repaired_geometries": load.repaired,
            "load_key": target.key}


class PostgisSink:
    """``VectorSink`` on PostGIS: ``<schema>.<table>`` plus the ``<schema>.geomill_vector_catalog`` row."""

    backend = "postgis"

    def __init__(self, pool: ResourcePool) -> None:
        self.pool = pool

    def staging_name(self, key: str, schema: str, table: str) -> str:
        return f"_geomill_stage_{key}"

    def prepare(self, schema: str) -> None:
        with self.pool.connection() as conn:
            q.prepare_database(conn, schema)

    def refuse_existing(self, schema: str, table: str, if_exists: str) -> None:
        with self.pool.connection() as conn:
            q.refuse_existing(conn, schema, table, if_exists)

    def create_staging(self, target: Any, chunk_schema: Any) -> None:
        with self.pool.connection() as conn:
            q.create_staging(conn, target)

    def write_chunk(self, target: Any, chunk_index: int, table: pa.Table) -> int:
        index = table.column_names.index(GEOMETRY_COLUMN)
        with self.pool.connection() as conn:
            return q.copy_chunk(conn, target, chunk_index, table.column_names,
                                _hex_slices(table, index, target.srid))

    def drop_staging(self, target: Any) -> None:
        with self.pool.connection() as conn:
            q.drop_staging(conn, target)

    def swap_into_place(self, load: Any, to_wgs84: Callable[[list[float]], list[float]]) -> FinalTable:
        target = load.target
        with self.pool.connection() as conn:
            loaded = q.loaded_rows(conn, target)
            if loaded is None:  # a re-run after the swap committed: the catalog row says what is there
                row = q.catalog_row(conn, target.schema_, target.table)
                if row is None or row["load_key"] != target.key:
                    raise InvalidInput(f"staging table of {target.schema_}.{target.table} is missing: run the job "
                                       "again", field="source")
                count, bbox = row["feature_count"], list(row["bbox"] or [])
            elif loaded != load.feature_count:
                raise TaskError(f"staging of {target.schema_}.{target.table} holds {loaded} rows, expected "
                                f"{load.feature_count}")
            else:
                count, bbox = q.swap_into_place(conn, target, _catalog_values(load), to_wgs84,
                                                (load.feature_count, load.bbox))
        location = f"{target.schema_}.{target.table}"
        return FinalTable(count=count, bbox=bbox, location=location,
                          url=f"{public_database_url(self.pool.url)}?table={location}")
