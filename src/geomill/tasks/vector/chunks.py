"""Cleaned features as GeoParquet chunks of a fixed number of rows, written batch by batch (bounded memory).

Each chunk is written to a temporary name and renamed when complete, so a chunk file that exists is whole.
Columns: ``fid`` (1..n within the output, deterministic), the safe-named attributes, ``geom`` (ISO WKB).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from geomill.tasks.vector.geometry import GeometryStats
from geomill.tasks.vector.naming import FID_COLUMN, GEOMETRY_COLUMN

CHUNK_NAME = "chunk-{:05d}.parquet"


def normalize_column(column: pa.ChunkedArray | pa.Array) -> pa.Array | pa.ChunkedArray:
    """An attribute column in a type every target takes (PostgreSQL via CSV COPY, GeoPackage): numbers, text,
    booleans, dates and times stay; dictionaries are decoded; anything else (lists, structs, binary) becomes text."""
    t = column.type
    if pa.types.is_dictionary(t):
        return normalize_column(column.cast(t.value_type))
    if pa.types.is_boolean(t) or pa.types.is_floating(t) and t.bit_width >= 32:
        return column
    if pa.types.is_integer(t):
        if pa.types.is_unsigned_integer(t) or t.bit_width < 16:
            return column.cast(pa.int64() if t.bit_width >= 32 else pa.int32())
        return column
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return column.cast(pa.float64())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return column.cast(pa.string())
    if pa.types.is_date(t):
        return column.cast(pa.date32())
    if pa.types.is_timestamp(t) or pa.types.is_time(t):
        return column
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.array([None if v is None else v.hex() for v in column.to_pylist()], type=pa.string())
    return pa.array([None if v is None else json.dumps(v, default=str) for v in column.to_pylist()], type=pa.string())


def geo_metadata(crs_projjson: dict[str, Any] | None) -> dict[bytes, bytes]:
    """GeoParquet 1.1 file metadata for a WKB ``geom`` column (types left open: chunks may mix singles and multis)."""
    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": []}
    if crs_projjson is not None:
        column["crs"] = crs_projjson
    doc = {"version": "1.1.0", "primary_column": GEOMETRY_COLUMN, "columns": {GEOMETRY_COLUMN: column}}
    return {b"geo": json.dumps(doc).encode()}


@dataclass(frozen=True)
class ChunkFile:
    index: int
    path: Path
    rows: int
    first_fid: int


class ChunkWriter:
    """Appends cleaned tables and rolls over to a new chunk file every `chunk_rows` rows."""

    def __init__(self, folder: Path, chunk_rows: int, crs_projjson: dict[str, Any] | None) -> None:
        self.folder = folder
        self.chunk_rows = chunk_rows
        self.metadata = geo_metadata(crs_projjson)
        self.stats = GeometryStats()
        self.chunks: list[ChunkFile] = []
        self.schema: pa.Schema | None = None
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_chunk = 0
        self._rows = 0
        folder.mkdir(parents=True, exist_ok=True)

    def _tmp(self, index: int) -> Path:
        return self.folder / f".{CHUNK_NAME.format(index)}.tmp"

    def _open(self, schema: pa.Schema) -> None:
        index = len(self.chunks)
        attributes = [n for n in schema.names if n != GEOMETRY_COLUMN]  # WKB is unique per row: no dictionary
        self._writer = pq.ParquetWriter(self._tmp(index), schema.with_metadata(self.metadata), compression="zstd",
                                        use_dictionary=attributes)
        self._rows_in_chunk = 0

    def _close_chunk(self) -> None:
        assert self._writer is not None
        self._writer.close()
        index = len(self.chunks)
        final = self.folder / CHUNK_NAME.format(index)
        os.replace(self._tmp(index), final)
        self.chunks.append(ChunkFile(index, final, self._rows_in_chunk, self._rows - self._rows_in_chunk + 1))
        self._writer = None

    def write(self, table: pa.Table) -> None:
        """Append `table` (attributes + ``geom``), giving each row its fid."""
        fids = pa.array(range(self._rows + 1, self._rows + table.num_rows + 1), type=pa.int64())
        table = table.add_column(0, FID_COLUMN, fids)
        if self.schema is None:
            self.schema = table.schema
        table = table.cast(self.schema)
        offset = 0
        while offset < table.num_rows:
            if self._writer is None:
                self._open(self.schema)
            take = min(self.chunk_rows - self._rows_in_chunk, table.num_rows - offset)
            self._writer.write_table(table.slice(offset, take))  # type: ignore[union-attr]
            offset += take
            self._rows_in_chunk += take
            self._rows += take
            if self._rows_in_chunk >= self.chunk_rows:
                self._close_chunk()

    def close(self) -> list[ChunkFile]:
        """Finish the last chunk; remove chunk files a previous, longer run left beyond the new last one."""
        if self._writer is not None:
            self._close_chunk()
        keep = {c.path.name for c in self.chunks}
        for stale in self.folder.glob("chunk-*.parquet"):
            if stale.name not in keep:
                stale.unlink()
        return self.chunks

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._tmp(len(self.chunks)).unlink(missing_ok=True)
            self._writer = None


_PG_TYPES: tuple[tuple[Callable[[pa.DataType], bool], str], ...] = (  # first match wins: int16 before integer
    (pa.types.is_boolean, "boolean"), (pa.types.is_int16, "smallint"), (pa.types.is_int32, "integer"),
    (pa.types.is_integer, "bigint"), (pa.types.is_float32, "real"), (pa.types.is_floating, "double precision"),
    (pa.types.is_date, "date"), (pa.types.is_time, "time"),
)


def pg_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type for a normalized Arrow attribute type (chunks.normalize_column)."""
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    return next((name for matches, name in _PG_TYPES if matches(arrow_type)), "text")
