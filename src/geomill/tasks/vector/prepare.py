"""Task ``vector.prepare``: read the source in bounded batches, clean it, write GeoParquet chunks, make staging.

Cleaning: the CRS must be known (or given), invalid geometries are repaired with ``make_valid`` (counted), mixed
geometry types are promoted to multi or split into one output per family, attribute names become safe SQL
identifiers (the mapping is reported). The result lists each output's chunks; the upload stage is planned from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geomill.domain import InvalidInput, TaskError
from geomill.engine.context import ObjectInfo, TaskContext
from geomill.tasks.vector.chunks import (
    ChunkPublisher,
    ChunkWriter,
    chunk_folder,
    drop_stale_chunks,
    normalize_column,
    pg_type,
)
from geomill.tasks.vector.geometry import (
    drop_m,
    family_masks,
    needs_conversion,
    repair,
    target_type,
    to_wkb_column,
)
from geomill.tasks.vector.models import (
    Backend,
    ChunkRef,
    ColumnSpec,
    LoadTarget,
    PrepareResult,
    PrepareVectorParams,
    VectorLoad,
    VectorOptions,
)
from geomill.tasks.vector.naming import check_identifier, safe_columns, safe_name, table_name_from
from geomill.tasks.vector.reader import LayerInfo, ReadOptions, batch_geometries, open_layer
from geomill.tasks.vector.sources import ALL_LAYERS, SourceFile, SourceLayer, find_layers, open_source

logger = logging.getLogger(__name__)

MAX_BATCH_ROWS = 5_000  # features per read batch: memory is bounded by this, not by the file
FAMILY_SUFFIX = {"point": "points", "line": "lines", "polygon": "polygons", "collection": "collections"}
READ_ERRORS = (OSError, pa.ArrowInvalid)


def chunk_rows_for(params: VectorOptions, ctx: TaskContext) -> int:
    if params.chunk_rows:
        return params.chunk_rows
    return ctx.limits.vector_chunk_rows


def load_key(params: VectorOptions, index: int, source: ObjectInfo | None = None) -> str:
    """Deterministic key of one layer's load: the same parameters give the same chunks and staging names. For an
    object in S3/Azure, `source` adds its size and etag: a changed object gets new chunk names, so an upload of an
    earlier run never loads chunks of another version."""
    doc: dict[str, object] = {"p": params.model_dump(mode="json"), "i": index}
    if source is not None:
        doc["src"] = {"size": source.size, "etag": source.etag or source.mtime.isoformat()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def base_tables(params: VectorOptions, layers: list[SourceLayer]) -> list[str]:
    """One table name per layer: `table` (or the file name), suffixed by the layer name when there are several."""
    base = params.table or table_name_from(Path(params.source.rsplit("/", 1)[-1]).stem)
    if len(layers) == 1:
        return [check_identifier(base, "table")]
    return [check_identifier(f"{base}_{safe_name(layer.layer or str(i))}"[:63], "table")
            for i, layer in enumerate(layers)]


def _batches(reader: pa.RecordBatchReader, label: str, ctx: TaskContext) -> Iterator[pa.RecordBatch]:
    """The reader's batches; a read failure mid-file is the file's fault (truncated, malformed)."""
    iterator = iter(reader)
    while True:
        if ctx.cancelled:
            raise TaskError("job cancelled while preparing the vector data")
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except READ_ERRORS as exc:
            raise InvalidInput(f"{label} could not be read to the end (damaged or malformed?): {exc}",
                               field="source") from exc
        if batch.num_rows:
            yield batch


class LayerPreparer:
    """Cleans one layer's batches into one ChunkWriter (promote) or one per geometry family (split)."""

    def __init__(self, folder: Path, chunk_rows: int, info: LayerInfo, split: bool,
                 publish: ChunkPublisher | None = None) -> None:
        self.folder, self.chunk_rows, self.info, self.split = folder, chunk_rows, info, split
        self.publish = publish
        self.mapping = safe_columns(info.attributes)
        self.writers: dict[str, ChunkWriter] = {}
        self.crs_json = info.crs.to_json_dict()
        self.rewrite = False

    def writer(self, name: str) -> ChunkWriter:
        if name not in self.writers:
            self.writers[name] = ChunkWriter(self.folder / name, self.chunk_rows, self.crs_json, self.publish)
        return self.writers[name]

    def clean(self, batch: pa.RecordBatch, label: str) -> tuple[np.ndarray, int, int]:
        """Parse (curves linearized) and repair a batch's geometries: (geoms, repaired, linearized)."""
        geoms, linearized = batch_geometries(batch, self.info, label)
        geoms, measured = drop_m(geoms)
        geoms, repaired = repair(geoms)
        self.rewrite = measured > 0  # the WKB read must be written anew
        return geoms, repaired, linearized

    def add(self, batch: pa.RecordBatch, cleaned: tuple[np.ndarray, int, int]) -> None:
        geoms, repaired, linearized = cleaned
        names = [self.mapping[n] for n in self.info.attributes]
        arrays = [normalize_column(batch.column(n)) for n in self.info.attributes]
        if not self.split:
            reuse = not (repaired or linearized or self.rewrite) and self.info.geometry_column is not None
            wkb = batch.column(self.info.geometry_column) if reuse else to_wkb_column(geoms)
            self._write("all", names, arrays, wkb, geoms, repaired, linearized)
            return
        for family, mask in family_masks(geoms).items():
            keep = pa.array(mask)
            self._write(family, names, [pc.filter(a, keep) for a in arrays], to_wkb_column(geoms[mask]),
                        geoms[mask], repaired, linearized)
            repaired = linearized = 0  # counted once per batch

    def _write(self, name: str, names: list[str], arrays: list, wkb: pa.Array, geoms: np.ndarray,
               repaired: int, linearized: int = 0) -> None:
        writer = self.writer(name)
        writer.write(pa.Table.from_arrays([*arrays, wkb.cast(pa.binary())], names=[*names, "geom"]))
        writer.stats.add(geoms, repaired)
        writer.stats.linearized += linearized

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


def _prepare_layer(layer: SourceLayer, params: PrepareVectorParams, key: str, ctx: TaskContext,
                   chunk_rows: int) -> tuple[LayerPreparer, dict[str, list]]:
    options = ReadOptions(params.crs, params.encoding, params.x_column, params.y_column, params.wkt_column,
                          min(chunk_rows, MAX_BATCH_ROWS))
    with open_layer(layer, options) as (info, reader), chunk_folder(ctx.storage, key) as (folder, publish):
        preparer = LayerPreparer(folder, chunk_rows, info, params.geometry_mode == "split", publish)
        try:
            for batch in _batches(reader, layer.label, ctx):
                preparer.add(batch, preparer.clean(batch, layer.label))
        except BaseException:
            preparer.abort()
            raise
        outputs = {name: writer.close() for name, writer in preparer.writers.items()}
    drop_stale_chunks(ctx.storage, key, {c.key for chunks in outputs.values() for c in chunks})
    return preparer, outputs


def _source_datetime(info: ObjectInfo) -> str:
    when = info.mtime.astimezone(UTC).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")


def _load(params: PrepareVectorParams, ctx: TaskContext, opened: tuple[SourceLayer, SourceFile, str],
          preparer: LayerPreparer, name: str, chunks: list, table: str, key: str) -> VectorLoad:
    """The load of one output; `opened` is (layer, source, the key of the layer's chunk folder)."""
    layer, source, folder_key = opened
    writer = preparer.writers[name]
    assert writer.schema is not None
    types = {f.name: f.type for f in writer.schema}
    columns = [ColumnSpec(name=safe, source=src, pg_type=pg_type(types[safe]))
               for src, safe in preparer.mapping.items()]
    sink = ctx.vector_sink
    target = LoadTarget(key=key, backend=cast(Backend, sink.backend), schema_=params.schema_, table=table,
                        staging=sink.staging_name(key, params.schema_, table),
                        if_exists=params.if_exists, geometry_type=target_type(writer.stats), srid=preparer.info.srid,
                        has_z=writer.stats.has_z, convert=needs_conversion(writer.stats), columns=columns)
    refs = [ChunkRef(index=c.index, uri=ctx.storage.uri_for("silver", f"vector/{folder_key}/{c.key}"),
                     rows=c.rows, first_fid=c.first_fid, size_bytes=c.size_bytes) for c in chunks]
    stats = writer.stats
    return VectorLoad(target=target, source=params.source, layer=layer.layer, chunks=refs,
                      feature_count=stats.rows, bbox=stats.bounds or [], repaired=stats.repaired,
                      linearized=stats.linearized,
                      null_geometries=stats.nulls, source_datetime=_source_datetime(source.info))


def prepare_vector(params: PrepareVectorParams, ctx: TaskContext) -> PrepareResult:
    """Handler of ``vector.prepare``."""
    chunk_rows = chunk_rows_for(params, ctx)
    with open_source(params.source, ctx.storage) as opened:
        layers = find_layers(params.source, opened, params.layer)
        tables = base_tables(params, layers)
        sink = ctx.vector_sink
        sink.prepare(params.schema_)
        for table in tables:
            sink.refuse_existing(params.schema_, table, params.if_exists)
        return _prepare_layers(params, ctx, (opened, layers), tables, chunk_rows)


def _prepare_layers(params: PrepareVectorParams, ctx: TaskContext, source: tuple[SourceFile, list[SourceLayer]],
                    tables: list[str], chunk_rows: int) -> PrepareResult:
    """Each layer's chunks and its staging (one per output when split)."""
    sink = ctx.vector_sink
    loads: list[VectorLoad] = []
    mapping: dict[str, dict[str, str]] = {}
    skipped: list[str] = []
    opened, layers = source
    for index, (layer, table) in enumerate(zip(layers, tables, strict=True)):
        ctx.progress(index / len(layers), f"reading {layer.label}")
        key = load_key(params, index, opened.info if opened.remote else None)
        preparer, outputs = _prepare_layer(layer, params, key, ctx, chunk_rows)
        if not outputs:
            if params.layer != ALL_LAYERS or len(layers) == 1:
                raise InvalidInput(f"{layer.label} has no features", field="source")
            skipped.append(layer.layer or table)  # layer='*': an empty layer is skipped and reported
            continue
        mapping[layer.layer or table] = {k: v for k, v in preparer.mapping.items() if k != v}
        for name, chunks in sorted(outputs.items()):
            out_table = table if name == "all" else check_identifier(
                f"{table[:50]}_{FAMILY_SUFFIX[name]}", "table")
            out_key = key if name == "all" else hashlib.sha256(f"{key}:{name}".encode()).hexdigest()[:16]
            if name != "all":
                sink.refuse_existing(params.schema_, out_table, params.if_exists)
            load = _load(params, ctx, (layer, opened, key), preparer, name, chunks, out_table, out_key)
            sink.create_staging(load.target, preparer.writers[name].schema)
            loads.append(load)
    if not loads:
        raise InvalidInput(f"every layer of {params.source!r} is empty ({', '.join(skipped)})", field="source")
    ctx.progress(1.0, f"{sum(ld.feature_count for ld in loads)} features in "
                      f"{sum(len(ld.chunks) for ld in loads)} chunks")
    return PrepareResult(loads=loads, column_mapping=mapping, skipped_layers=skipped)

