"""Cleaned features as GeoParquet chunks of a fixed number of rows, written batch by batch (bounded memory).

Each chunk is written to a temporary name and renamed when complete, so a chunk file that exists is whole. When
silver is in object storage, each complete chunk is uploaded (one atomic put) and its local file deleted.
Columns: ``fid`` (1..n within the output, deterministic), the safe-named attributes, ``geom`` (ISO WKB).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from geomill.engine.context import Storage
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
    path: Path  # <folder>/<output>/chunk-00000.parquet (gone once published to object storage)
    rows: int
    first_fid: int
    size_bytes: int

    @property
    def key(self) -> str:
        """``<output>/chunk-00000.parquet``: the chunk's key below its load's folder."""
        return f"{self.path.parent.name}/{self.path.name}"


ChunkPublisher = Callable[[Path], None]


@contextmanager
def chunk_folder(storage: Storage, key: str) -> Iterator[tuple[Path, ChunkPublisher | None]]:
    """Where a load's chunks are written: ``silver/vector/<key>`` when silver is local; when it is remote, a private
    scratch folder, each chunk uploaded to ``silver://vector/<key>/…`` as soon as it is complete and deleted
    (local disk: one chunk), the folder removed on exit."""
    base = f"silver://vector/{key}"
    if not storage.is_remote(base):
        yield storage.local_path(base), None
        return
    folder = storage.scratch_dir() / f"vector-{uuid.uuid4().hex}"

    def publish(path: Path) -> None:
        storage.put_file(path, f"{base}/{path.relative_to(folder).as_posix()}")
        path.unlink()
    try:
        yield folder, publish
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def drop_stale_chunks(storage: Storage, key: str, keep: set[str]) -> None:
    """Remote chunks of this key an earlier, longer run left (a local ChunkWriter removes its own)."""
    base = f"silver://vector/{key}/"
    if not storage.is_remote(base):
        return
    prefix = storage.object_uri(base)
    for batch in storage.list(base, pattern="*/chunk-*.parquet"):
        for stale in (o for o in batch if o.uri.removeprefix(prefix) not in keep):
            storage.delete(stale.uri)



class ChunkWriter:
    """Appends cleaned tables and rolls over to a new chunk file every `chunk_rows` rows."""

    def __init__(self, folder: Path, chunk_rows: int, crs_projjson: dict[str, Any] | None,
                 publish: ChunkPublisher | None = None) -> None:
        self.folder = folder
        self.publish = publish
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
        self.chunks.append(ChunkFile(index, final, self._rows_in_chunk, self._rows - self._rows_in_chunk + 1,
                                     final.stat().st_size))
        if self.publish is not None:
            self.publish(final)
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
