"""Embedded mode (no PostgreSQL): the same load into a GeoPackage in silver instead of a PostGIS table.

``silver://vector/<schema>/<table>.gpkg`` holds layer ``<table>`` (fid primary key, attributes, ``geom`` with
GeoPackage's R-tree index). A load goes into a staging GeoPackage beside the chunks first; upload tasks append
their chunk under an exclusive file lock (GeoPackage allows one writer), replacing their own fid range, so a
re-run never duplicates. Finalize moves the result over the final file with one rename (``os.replace``): a
reader sees the old file or the new one, never half of either.

When silver is in object storage (S3, Azure Blob), the staging GeoPackage stays in the local data folder (embedded
mode is one machine: SQLite's database and file locks are local anyway) and finalize publishes it with one atomic
put (``append``: the final object is fetched to scratch, the rows added, and the result put back); the local staging
folder is removed afterwards.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyogrio

from geomill.domain import InvalidInput
from geomill.engine.context import FinalTable
from geomill.sinks import FID_COLUMN, GEOMETRY_COLUMN

OGR_TYPES = {"POINT": "Point", "LINESTRING": "LineString", "POLYGON": "Polygon", "MULTIPOINT": "MultiPoint",
             "MULTILINESTRING": "MultiLineString", "MULTIPOLYGON": "MultiPolygon",
             "GEOMETRYCOLLECTION": "GeometryCollection", "GEOMETRY": "Unknown"}


def ogr_type(geometry_type: str) -> str:
    """``MULTIPOLYGONZ`` -> ``MultiPolygon Z`` (the names pyogrio writes)."""
    z = geometry_type.endswith("Z") and geometry_type != "GEOMETRYZ" or geometry_type == "GEOMETRYZ"
    base = OGR_TYPES[geometry_type[:-1] if z else geometry_type]
    return f"{base} Z" if z and base != "Unknown" else base


def final_key(schema: str, table: str) -> str:
    return f"vector/{schema}/{table}.gpkg"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside `path`, held across processes while one writer changes the GeoPackage."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write(table: pa.Table, path: Path, load: Any, append: bool) -> None:
    pyogrio.write_arrow(table, str(path), layer=load.table, driver="GPKG", geometry_name=GEOMETRY_COLUMN,
                        geometry_type=ogr_type(load.geometry_type), crs=f"EPSG:{load.srid}", append=append)


def create_staging(path: Path, load: Any, schema: pa.Schema) -> None:
    """A new, empty staging GeoPackage with the layer's columns."""
    with locked(path):
        path.unlink(missing_ok=True)
        _write(schema.empty_table(), path, load, append=False)


def append_chunk(path: Path, load: Any, table: pa.Table) -> int:
    """Replace the rows of this chunk's fid range in the staging GeoPackage by `table` (fid, attributes, geom)."""
    fids = table.column(FID_COLUMN)
    first, last = fids[0].as_py(), fids[-1].as_py()
    with locked(path):
        con = sqlite3.connect(path)
        try:
            with con:
                con.execute(f'DELETE FROM "{load.table}" WHERE fid BETWEEN ? AND ?', (first, last))
        finally:
            con.close()
        _write(table, path, load, append=True)
    return table.num_rows


def _rows(path: Path | str, table: str) -> tuple[int, list[float]]:
    info = pyogrio.read_info(str(path), layer=table, force_feature_count=True, force_total_bounds=True)
    bounds = info.get("total_bounds")
    return int(info["features"]), list(bounds) if bounds is not None else []


def _max_fid(path: Path, table: str) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute(f'SELECT coalesce(max(fid), 0) FROM "{table}"').fetchone()[0]
    finally:
        con.close()


def _append_into(final: Path, staging: Path, load: Any, work: Path) -> None:
    """A copy of the final GeoPackage with the staging rows added (fids after its largest), then renamed over it."""
    _check_appendable(final, load, final.name)
    shutil.copyfile(final, work)
    _append_rows(work, staging, load)


def _check_appendable(final: Path, load: Any, name: str) -> None:
    info = pyogrio.read_info(str(final), layer=load.table)
    if info["geometry_type"] != ogr_type(load.geometry_type) and info["geometry_type"] != "Unknown":
        raise InvalidInput(f"cannot append to {name}: it holds {info['geometry_type']}, the source has "
                           f"{ogr_type(load.geometry_type)}", field="if_exists")
    missing = [c.name for c in load.columns if c.name not in set(info["fields"])]
    if missing:
        raise InvalidInput(f"cannot append to {name}: it has no column(s) {', '.join(missing)}",
                           field="if_exists")


def _append_rows(work: Path, staging: Path, load: Any) -> None:
    """The staging rows appended to the GeoPackage `work`, their fids after its largest."""
    offset = _max_fid(work, load.table)
    with pyogrio.open_arrow(str(staging), layer=load.table, use_pyarrow=True, return_fids=True,
                            batch_size=50_000) as (meta, reader):
        for batch in reader:
            table = pa.Table.from_batches([batch])
            fid_name = meta.get("fid_column") or "OGC_FID"
            fids = pc.add(table.column(fid_name), offset)
            geom_name = meta.get("geometry_name") or "wkb_geometry"
            table = table.drop_columns([fid_name]).rename_columns(
                [GEOMETRY_COLUMN if n == geom_name else n for n in table.drop_columns([fid_name]).column_names])
            _write(table.add_column(0, FID_COLUMN, fids), work, load, append=True)


def swap_into_place(final: Path, load: Any) -> tuple[int, list[float]]:
    """Staging becomes the final GeoPackage (or is appended to it); returns (feature count, bbox)."""
    staging = Path(load.staging)
    final.parent.mkdir(parents=True, exist_ok=True)
    with locked(final):
        if not staging.exists():
            if final.exists():
                return _rows(final, load.table)  # a re-run after the swap: already in place
            raise InvalidInput(f"staging GeoPackage {staging} is missing: run the job again", field="source")
        if final.exists() and load.if_exists == "fail":
            raise InvalidInput(f"{final} (table {load.schema_}.{load.table}) already exists; give "
                               "if_exists=replace or if_exists=append", field="if_exists")
        if final.exists() and load.if_exists == "append":
            work = final.with_name(f".{final.stem}.{load.key}.tmp.gpkg")
            try:
                _append_into(final, staging, load, work)
                os.replace(work, final)
            finally:
                work.unlink(missing_ok=True)
            staging.unlink()
        else:
            os.replace(staging, final)
        return _rows(final, load.table)


def refuse_existing(final: Path, schema: str, table: str, if_exists: str) -> None:
    if if_exists == "fail" and final.exists():
        raise InvalidInput(f"{final} (table {schema}.{table}) already exists; give if_exists=replace or "
                           "if_exists=append", field="if_exists")


class GeoPackageSink:
    """``VectorSink`` in embedded mode: ``silver://vector/<schema>/<table>.gpkg``, staged beside the chunks."""

    backend = "geopackage"
    media_type = "application/geopackage+sqlite3"

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def _final(self, schema: str, table: str) -> Path:
        return self.storage.local_path(f"silver://{final_key(schema, table)}")

    def _remote(self) -> bool:
        return bool(self.storage.is_remote("silver://vector"))

    def staging_name(self, key: str, schema: str, table: str) -> str:
        """Beside the chunks in a local silver; in the local data folder's silver/ when silver is remote."""
        return str(self.storage.local_mirror(f"silver://vector/{key}/{table}.staging.gpkg"))

    def prepare(self, schema: str) -> None:
        """Nothing to set up: folders are made as files are written."""

    def refuse_existing(self, schema: str, table: str, if_exists: str) -> None:
        if not self._remote():
            refuse_existing(self._final(schema, table), schema, table, if_exists)
            return
        uri = f"silver://{final_key(schema, table)}"
        if if_exists == "fail" and self.storage.exists(uri):
            raise InvalidInput(f"{self.storage.object_uri(uri)} (table {schema}.{table}) already exists; give "
                               "if_exists=replace or if_exists=append", field="if_exists")

    def create_staging(self, target: Any, chunk_schema: pa.Schema) -> None:
        create_staging(Path(target.staging), target, chunk_schema)

    def write_chunk(self, target: Any, chunk_index: int, table: pa.Table) -> int:
        return append_chunk(Path(target.staging), target, table)

    def drop_staging(self, target: Any) -> None:
        Path(target.staging).unlink(missing_ok=True)

    def swap_into_place(self, load: Any, to_wgs84: Callable[[list[float]], list[float]]) -> FinalTable:
        target = load.target
        key = final_key(target.schema_, target.table)
        if self._remote():
            count, bbox = self._publish(target, f"silver://{key}")
            return FinalTable(count=count, bbox=bbox, location=self.storage.uri_for("silver", key),
                              url=self.storage.href(f"silver://{key}"), media_type=self.media_type)
        final = self.storage.local_path(f"silver://{key}")
        count, bbox = swap_into_place(final, target)
        return FinalTable(count=count, bbox=bbox, location=self.storage.uri_for("silver", key), path=final,
                          media_type=self.media_type)

    def _publish(self, target: Any, uri: str) -> tuple[int, list[float]]:
        """Remote silver: the staging GeoPackage (or the final object with the staging rows appended) put under
        `uri` in one atomic put; then the local staging folder goes. Returns (feature count, bbox)."""
        staging = Path(target.staging)
        with locked(self.storage.local_mirror(uri)):  # embedded mode is one machine: a local lock suffices
            exists = self.storage.exists(uri)
            if not staging.exists() and not exists:
                raise InvalidInput(f"staging GeoPackage {staging} is missing: run the job again", field="source")
            if staging.exists() and exists and target.if_exists == "fail":
                raise InvalidInput(f"{self.storage.object_uri(uri)} (table {target.schema_}.{target.table}) already "
                                   "exists; give if_exists=replace or if_exists=append", field="if_exists")
            folder = self.storage.scratch_dir() / f"vector-{uuid.uuid4().hex}"
            try:
                if not staging.exists():  # a re-run after the swap: count what is there (fetched: see above)
                    return _rows(self.storage.fetch(uri, folder / "final.gpkg"), target.table)
                work = staging
                if exists and target.if_exists == "append":
                    work = self.storage.fetch(uri, folder / "final.gpkg")
                    _check_appendable(work, target, self.storage.object_uri(uri))
                    _append_rows(work, staging, target)
                rows = _rows(work, target.table)
                self.storage.put_file(work, uri)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(staging.parent, ignore_errors=True)  # the load's local folder: staging and its lock
            return rows
