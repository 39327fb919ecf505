"""The SQL of the PostGIS sink: target checks, a staging table, COPY per chunk, the swap into place.

Every identifier was checked against a strict pattern (naming.check_identifier) AND is quoted here with
``psycopg.sql.Identifier``; no value is ever formatted into SQL text.

Layout: the final table ``<schema>.<table>`` has ``fid bigint PRIMARY KEY``, the attributes, and
``geom geometry(<TYPE>, <srid>)`` with a GiST index; ``<schema>.geomill_vector_catalog`` has one row per table.
A load goes into ``<schema>._geomill_stage_<key>`` first (a ``_geomill_chunk`` column lets a re-run of one chunk
replace its own rows) and reaches the final name in one transaction, so a failed load never shows half a table.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from geomill.domain import InvalidInput
from geomill.sinks import CHUNK_COLUMN, FID_COLUMN, GEOMETRY_COLUMN

CATALOG_TABLE = "geomill_vector_catalog"
_SETUP_LOCK = 7_400_113  # advisory lock key: one process at a time creates the extension, schema, catalog table

CATALOG_DDL = """CREATE TABLE IF NOT EXISTS {catalog} (
    table_name text PRIMARY KEY,
    geometry_column text NOT NULL,
    geometry_type text NOT NULL,
    srid integer NOT NULL,
    feature_count bigint NOT NULL,
    bbox double precision[],
    bbox_wgs84 double precision[],
    source text NOT NULL,
    layer text,
    columns jsonb NOT NULL,
    repaired_geometries bigint NOT NULL DEFAULT 0,
    load_key text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
)"""


def _first(row: tuple[Any, ...] | None) -> Any:
    """The first column of a row an aggregate or RETURNING always yields."""
    assert row is not None
    return row[0]


def prepare_database(conn: psycopg.Connection, schema: str) -> None:
    """PostGIS, the target schema and its catalog table exist afterwards (created once, under an advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
        if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone():
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL(CATALOG_DDL).format(catalog=sql.Identifier(schema, CATALOG_TABLE)))


def table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s", (schema, table))
    return row.fetchone() is not None


def refuse_existing(conn: psycopg.Connection, schema: str, table: str, if_exists: str) -> None:
    if if_exists == "fail" and table_exists(conn, schema, table):
        raise InvalidInput(f"table {schema}.{table} already exists; give if_exists=replace or if_exists=append",
                           field="if_exists")


def _chunks_table(load: Any) -> sql.Identifier:
    return sql.Identifier(load.schema_, f"{load.staging}_chunks")


def create_staging(conn: psycopg.Connection, load: Any) -> None:
    """(Re)create the empty staging table of `load` (a LoadTarget) and its table of loaded chunks."""
    staging = sql.Identifier(load.schema_, load.staging)
    columns = [sql.SQL("{} bigint NOT NULL").format(sql.Identifier(FID_COLUMN))]
    columns += [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type)) for c in load.columns]
    columns.append(sql.SQL("{} geometry({}, {})").format(
        sql.Identifier(GEOMETRY_COLUMN), sql.SQL(load.geometry_type), sql.Literal(load.srid)))
    columns.append(sql.SQL("{} integer NOT NULL").format(sql.Identifier(CHUNK_COLUMN)))
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(staging, _chunks_table(load)))
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(staging, sql.SQL(", ").join(columns)))
        conn.execute(sql.SQL("CREATE TABLE {} (chunk integer PRIMARY KEY, rows bigint NOT NULL)").format(
            _chunks_table(load)))


def drop_staging(conn: psycopg.Connection, load: Any) -> None:
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '30s'")
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
            sql.Identifier(load.schema_, load.staging), _chunks_table(load)))


def copy_chunk(conn: psycopg.Connection, load: Any, chunk_index: int, names: list[str],
               slices: Iterable[pa.Table]) -> int:
    """Load chunk `chunk_index` (tables of fid, attributes, geom as hex EWKB) into staging, in one transaction.

    The chunk's row in ``<staging>_chunks`` serializes attempts on the same chunk (a fenced, late attempt waits
    for the primary key) and says whether an earlier attempt committed: only then are its rows deleted first,
    so the common case costs no scan of the staging table."""
    staging = sql.Identifier(load.schema_, load.staging)
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        staging, sql.SQL(", ").join(sql.Identifier(n) for n in [*names, CHUNK_COLUMN]))
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("INSERT INTO {} (chunk, rows) VALUES (%s, -1) ON CONFLICT (chunk) DO UPDATE "
                            "SET rows = -1 RETURNING (xmax = 0) AS inserted").format(_chunks_table(load)),
                    (chunk_index,))
        if not _first(cur.fetchone()):
            cur.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(staging, sql.Identifier(CHUNK_COLUMN)),
                        (chunk_index,))
        sent = 0
        with cur.copy(statement) as copy:
            for table in slices:
                table = table.append_column(CHUNK_COLUMN, pa.array(np.full(table.num_rows, chunk_index, np.int32)))
                buffer = io.BytesIO()
                pacsv.write_csv(table, buffer, options)
                copy.write(buffer.getbuffer())
                sent += table.num_rows
        rows = cur.rowcount if cur.rowcount >= 0 else sent
        cur.execute(sql.SQL("UPDATE {} SET rows = %s WHERE chunk = %s").format(_chunks_table(load)),
                    (rows, chunk_index))
        return rows


def loaded_rows(conn: psycopg.Connection, load: Any) -> int | None:
    """Rows the committed chunks loaded into staging, or None when staging is gone (already swapped)."""
    if not table_exists(conn, load.schema_, f"{load.staging}_chunks"):
        return None
    return _first(conn.execute(sql.SQL("SELECT coalesce(sum(rows), 0) FROM {}").format(_chunks_table(load))).fetchone())


def _index_names(table: str) -> tuple[str, str]:
    return f"{table[:55]}_pkey", f"{table[:50]}_geom_gist"


def _swap_in(conn: psycopg.Connection, load: Any) -> None:
    """Indexes built on the staging table, then (replace) the old table dropped and staging renamed over it."""
    schema, table, staging = load.schema_, load.table, load.staging
    pkey, gist = _index_names(table)
    tmp_pkey, tmp_gist = f"{staging}_pkey", f"{staging}_gist"
    st = sql.Identifier(schema, staging)
    conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(st, sql.Identifier(CHUNK_COLUMN)))
    conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
        st, sql.Identifier(tmp_pkey), sql.Identifier(FID_COLUMN)))
    conn.execute(sql.SQL("CREATE INDEX {} ON {} USING gist ({})").format(
        sql.Identifier(tmp_gist), st, sql.Identifier(GEOMETRY_COLUMN)))
    if table_exists(conn, schema, table):
        if load.if_exists != "replace":
            raise InvalidInput(f"table {schema}.{table} already exists (it appeared while this job ran); give "
                               "if_exists=replace or if_exists=append", field="if_exists")
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(st, sql.Identifier(table)))
    conn.execute(sql.SQL("DROP TABLE {}").format(_chunks_table(load)))
    for old, new in ((tmp_pkey, pkey), (tmp_gist, gist)):
        conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(schema, old), sql.Identifier(new)))


def _geometry_column(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, int] | None:
    row = conn.execute("SELECT type, srid FROM geometry_columns WHERE f_table_schema = %s AND f_table_name = %s "
                       "AND f_geometry_column = %s", (schema, table, GEOMETRY_COLUMN)).fetchone()
    return (row[0], row[1]) if row else None


def _append(conn: psycopg.Connection, load: Any) -> None:
    """Rows of the staging table added to the existing table (fids continue after its largest), staging dropped."""
    schema, table = load.schema_, load.table
    target = sql.Identifier(schema, table)
    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
    existing = _geometry_column(conn, schema, table)
    if existing is None:
        raise InvalidInput(f"cannot append to {schema}.{table}: it has no {GEOMETRY_COLUMN!r} geometry column",
                           field="if_exists")
    gtype, srid = existing
    if srid != load.srid or gtype.upper() not in (load.geometry_type.upper(), "GEOMETRY"):
        raise InvalidInput(f"cannot append to {schema}.{table}: it holds {gtype} in SRID {srid}, the source has "
                           f"{load.geometry_type} in SRID {load.srid}", field="if_exists")
    have = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                                       "AND table_name = %s", (schema, table))}
    missing = [c.name for c in load.columns if c.name not in have]
    if missing:
        raise InvalidInput(f"cannot append to {schema}.{table}: it has no column(s) {', '.join(missing)}",
                           field="if_exists")
    names = [c.name for c in load.columns] + [GEOMETRY_COLUMN]
    cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    offset = _first(conn.execute(sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
        sql.Identifier(FID_COLUMN), target)).fetchone())
    conn.execute(sql.SQL("INSERT INTO {} ({}, {}) SELECT {} + %s, {} FROM {}").format(
        target, sql.Identifier(FID_COLUMN), cols, sql.Identifier(FID_COLUMN), cols,
        sql.Identifier(schema, load.staging)), (offset,))
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, load.staging)))
    conn.execute(sql.SQL("DROP TABLE {}").format(_chunks_table(load)))


def upsert_catalog_row(conn: psycopg.Connection, load: Any, values: dict[str, Any]) -> None:
    names = list(values)
    conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (table_name) DO UPDATE SET {}, "
                         "loaded_at = now()").format(
        sql.Identifier(load.schema_, CATALOG_TABLE), sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
        sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in names[1:])),
        list(values.values()))


def catalog_row(conn: psycopg.Connection, schema: str, table: str) -> dict[str, Any] | None:
    cur = conn.execute(sql.SQL("SELECT * FROM {} WHERE table_name = %s").format(
        sql.Identifier(schema, CATALOG_TABLE)), (table,))
    row = cur.fetchone()
    return dict(zip([d.name for d in cur.description or []], row, strict=True)) if row else None


def swap_into_place(conn: psycopg.Connection, load: Any, catalog_values: dict[str, Any],
                    to_wgs84: Callable[[list[float]], list[float] | None],
                    loaded: tuple[int, list[float]]) -> tuple[int, list[float]]:
    """One transaction: staging becomes (or is appended to) the final table, the catalog row is written, ANALYZE.
    `loaded` is (rows, bbox) of the staging table, known from prepare; returns the table's count and bbox."""
    schema, table = load.schema_, load.table
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{schema}.{table}",))
        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        target = sql.Identifier(schema, table)
        count, bbox = loaded
        if load.if_exists == "append" and table_exists(conn, schema, table):
            _append(conn, load)
            row = conn.execute(sql.SQL(
                "SELECT n, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                "(SELECT count(*) AS n, ST_Extent({}) AS e FROM {}) s").format(
                    sql.Identifier(GEOMETRY_COLUMN), target)).fetchone()
            assert row is not None  # an aggregate always yields a row
            count, xmin, ymin, xmax, ymax = row
            bbox = [xmin, ymin, xmax, ymax] if xmin is not None else []
        else:
            _swap_in(conn, load)
        conn.execute(sql.SQL("ANALYZE {}").format(target))
        upsert_catalog_row(conn, load, {**catalog_values, "feature_count": count, "bbox": bbox or None,
                                        "bbox_wgs84": to_wgs84(bbox) if bbox else None})
    return count, bbox


def column_types(conn: psycopg.Connection, schema: str, table: str) -> Sequence[tuple[str, str]]:
    return conn.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                        "AND table_name = %s ORDER BY ordinal_position", (schema, table)).fetchall()


# -- reads for the tile endpoints (api/geo/vector.py) --------------------------------------------------------------

def loaded_table(conn: psycopg.Connection, schema: str, table: str) -> bool:
    """Whether geomill loaded `schema.table` (a row in the schema's catalog table): the only tables served as tiles."""
    if not table_exists(conn, schema, CATALOG_TABLE):
        return False
    row = conn.execute(sql.SQL("SELECT 1 FROM {} WHERE table_name = %s").format(
        sql.Identifier(schema, CATALOG_TABLE)), (table,)).fetchone()
    return row is not None and table_exists(conn, schema, table)


def mvt_tile(conn: psycopg.Connection, schema: str, table: str, tile: tuple[int, int, int], limit: int) -> bytes:
    """One Mapbox vector tile (layer named after the table) of `schema.table` in WebMercatorQuad tile (z, x, y):
    at most `limit` features, every attribute column, geometries clipped with a 64-pixel buffer."""
    names = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND column_name <> %s ORDER BY ordinal_position", (schema, table, GEOMETRY_COLUMN)).fetchall()]
    columns = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in names)
    query = sql.SQL(
        "WITH env AS (SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS g), "
        "feats AS (SELECT {columns}{sep}ST_AsMVTGeom(ST_Transform(t.{geom}, 3857), env.g, 4096, 64, true) AS mvt_geom "
        "FROM {table} t, env WHERE t.{geom} && ST_Transform(env.g, Find_SRID(%(schema)s, %(name)s, %(col)s)) "
        "LIMIT %(limit)s) "
        "SELECT ST_AsMVT(feats.*, %(name)s, 4096, 'mvt_geom') FROM feats").format(
        columns=columns, sep=sql.SQL(", ") if names else sql.SQL(""), geom=sql.Identifier(GEOMETRY_COLUMN),
        table=sql.Identifier(schema, table))
    z, x, y = tile
    row = conn.execute(query, {"z": z, "x": x, "y": y, "schema": schema, "name": table, "col": GEOMETRY_COLUMN,
                               "limit": limit}).fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""
