"""pgSTAC as geomill's catalog on PostgreSQL, loaded with pypgstac's loader (upsert), plus the static copy in silver.

The pgSTAC schema lives in the same database as geomill's own tables (schema ``pgstac``). It is installed or
migrated by ``geomill db upgrade`` and, failing that, the first time a process opens the catalog; both take an
advisory lock so that two processes never migrate at once.

Every write goes first to the static catalog (which grows collection extents and keeps relative links for a
portable copy in ``silver/catalog``), then the same documents go into pgSTAC: member and self links (child, item,
self) are dropped there, and relative hrefs (links and assets) are made absolute against the static file they came
from, since a database row has no folder to be relative to.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.types.json import Jsonb
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from pypgstac.migrate import Migrate
from pypgstac.version import __version__ as PGSTAC_VERSION

from geomill.catalog.base import CatalogRef
from geomill.catalog.static import StaticCatalog

logger = logging.getLogger(__name__)

_MIGRATE_LOCK = 0x67_6D_73_74  # pg_advisory_lock key: "gmst"
_LINKS_DROPPED = {"child", "item", "self"}  # the database lists members itself; a row has no self file
_ready: set[str] = set()
_ready_lock = threading.Lock()
_NO_POOL = object()  # stands in for pypgstac's pool: see _client


def _installed(con: psycopg.Connection) -> str | None:
    if (con.execute("SELECT to_regclass('pgstac.migrations')").fetchone() or (None,))[0] is None:
        return None
    row = con.execute("SELECT version FROM pgstac.migrations ORDER BY datetime DESC, version DESC LIMIT 1")
    found = row.fetchone()
    return found[0] if found else None


def installed_version(database_url: str) -> str | None:
    """The pgSTAC version installed in the database, or None when there is none."""
    with psycopg.connect(database_url, autocommit=True) as con:
        return _installed(con)


def _ensure(con: psycopg.Connection, key: str) -> str:
    """Install or migrate pgSTAC on `con` under an advisory lock, once per database and process."""
    with _ready_lock:
        if key in _ready:
            return PGSTAC_VERSION
        con.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
        try:
            current = _installed(con)
            if current != PGSTAC_VERSION:
                logger.warning("installing pgSTAC %s (was %s)", PGSTAC_VERSION, current or "absent")
                _migrate(con)
        finally:
            if con.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                con.rollback()
            con.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
        _ready.add(key)
        return PGSTAC_VERSION


def _migrate(con: psycopg.Connection, attempts: int = 6) -> None:
    """pypgstac's migration, again after a clash on cluster-wide rows: pgSTAC creates and grants its roles, which
    are shared by every database of the cluster, so databases migrated at the same moment can meet "tuple
    concurrently updated" (the advisory lock serializes one database only). The migration is one transaction, so
    a failed one left nothing behind."""
    for attempt in range(1, attempts + 1):
        try:
            Migrate(_client(con)).run_migration()
            return
        except (psycopg.errors.InternalError_, psycopg.errors.UniqueViolation) as exc:
            if attempt == attempts or not _cluster_race(exc):
                raise
            logger.info("pgSTAC migration met another database's migration (%s); again", exc)
            if con.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                con.rollback()
            time.sleep(0.2 * attempt + random.random() * 0.3)


def _cluster_race(exc: psycopg.Error) -> bool:
    text = str(exc)
    return "concurrently" in text or "pg_authid" in text


def ensure_pgstac(database_url: str) -> str:
    """Install or migrate pgSTAC to the version pypgstac ships (idempotent, one migrator at a time)."""
    if database_url in _ready:
        return PGSTAC_VERSION
    with psycopg.connect(database_url, autocommit=True) as con:
        return _ensure(con, database_url)


def _client(con: psycopg.Connection) -> PgstacDB:
    """pypgstac's client on a connection we own: it never opens a pool or connection of its own (a pool is set, so
    it does not make one; a live connection is set, so it does not take one), and we never close it through it."""
    con.execute("SELECT set_config('search_path', 'pgstac, public', false)")  # pgSTAC's functions need it
    return PgstacDB(pool=cast(Any, _NO_POOL), connection=con)


def _absolute(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    href = entry.get("href", "")
    if href and "://" not in href and not os.path.isabs(href):
        return {**entry, "href": os.path.normpath(base / href)}
    return entry


def for_pgstac(doc: dict[str, Any], static_path: str | Path) -> dict[str, Any]:
    """A copy of a static-catalog document fit for a database row: no member or self links, and every relative
    href (root, parent, collection links; assets) made absolute against the static file it came from."""
    base = Path(static_path).parent
    out = dict(doc)
    out["links"] = [_absolute(x, base) for x in doc.get("links", []) if x.get("rel") not in _LINKS_DROPPED]
    if "assets" in doc:
        out["assets"] = {key: _absolute(asset, base) for key, asset in doc["assets"].items()}
    return out


class DirectConnections:
    """A new connection for each use, closed after it: for short-lived callers (the CLI) that hold no pool."""

    def __init__(self, url: str) -> None:
        self.url = url

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.url, autocommit=True) as con:
            yield con


class PgstacCatalog:
    """The ``Catalog`` protocol on pgSTAC, mirroring every write into the static catalog. Connections come from
    `pool` (anything with ``url`` and a ``connection()`` context manager: the worker's bounded resource pool)."""

    backend = "pgstac+static"

    def __init__(self, pool: Any, static: StaticCatalog) -> None:
        self.pool = pool
        self.static = static

    @contextmanager
    def _loader(self) -> Iterator[Loader]:
        with self.pool.connection() as con:
            _ensure(con, self.pool.url)
            yield Loader(_client(con))

    def upsert_collection(self, collection: dict[str, Any]) -> CatalogRef:
        ref = self.static.upsert_collection(collection)
        self._load_collection(ref)
        return CatalogRef(ref.id, None, ref.static_path, self.backend)

    def upsert_items(self, items: list[dict[str, Any]], collection_id: str) -> list[CatalogRef]:
        refs = self.static.upsert_items(items, collection_id)
        if not refs:
            return []
        # the static collection now covers these items (created or grown): the database gets the same extent
        self._load_collection(CatalogRef(collection_id, None, str(self.static.collection_path(collection_id)),
                                         "static"))
        docs = [for_pgstac(self.static.get_item(ref.id, collection_id) or {}, ref.static_path or "") for ref in refs]
        with self._loader() as loader:
            loader.load_items(iter(docs), insert_mode=Methods.upsert)
        logger.info("pgstac items upserted", extra={"collection_id": collection_id, "count": len(docs)})
        return [CatalogRef(ref.id, collection_id, ref.static_path, self.backend) for ref in refs]

    def _load_collection(self, ref: CatalogRef) -> None:
        doc = self.static.get_collection(ref.id)
        assert doc is not None and ref.static_path is not None
        with self._loader() as loader:
            loader.load_collections(iter([for_pgstac(doc, ref.static_path)]), insert_mode=Methods.upsert)

    def delete_item(self, item_id: str, collection_id: str) -> bool:
        """Remove the item from the static copy and from pgSTAC; False when neither had it."""
        static = self.static.delete_item(item_id, collection_id)
        with self.pool.connection() as con:
            _ensure(con, self.pool.url)
            con.execute("SELECT set_config('search_path', 'pgstac, public', false)")
            found = con.execute("SELECT 1 FROM pgstac.items WHERE id = %s AND collection = %s",
                                (item_id, collection_id)).fetchone()
            if found:
                con.execute("SELECT pgstac.delete_item(%s, %s)", (item_id, collection_id))
        return static or found is not None

    def _query(self, sql: str, args: tuple[Any, ...]) -> Any:
        with self.pool.connection() as con:
            _ensure(con, self.pool.url)
            con.execute("SELECT set_config('search_path', 'pgstac, public', false)")  # pgSTAC's functions need it
            row = con.execute(sql, args).fetchone()
        return row[0] if row else None
    def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        return self._query("SELECT pgstac.get_collection(%s)", (collection_id,))

    def list_collections(self) -> list[dict[str, Any]]:
        return self._query("SELECT pgstac.all_collections()", ()) or []

    def get_item(self, item_id: str, collection_id: str | None = None) -> dict[str, Any] | None:
        return self._query("SELECT pgstac.get_item(%s, %s)", (item_id, collection_id))

    def list_items(self, collection_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        search: dict[str, Any] = {"limit": limit, "conf": {"nohydrate": False}}
        if collection_id:
            search["collections"] = [collection_id]
        found = self._query("SELECT pgstac.search(%s)", (Jsonb(search),)) or {}
        return list(found.get("features") or [])
