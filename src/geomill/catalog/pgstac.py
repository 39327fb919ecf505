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
import threading
from pathlib import Path
from typing import Any

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


def installed_version(database_url: str) -> str | None:
    """The pgSTAC version installed in the database, or None when there is none."""
    with psycopg.connect(database_url, autocommit=True) as con:
        if con.execute("SELECT to_regclass('pgstac.migrations')").fetchone()[0] is None:
            return None
        row = con.execute("SELECT version FROM pgstac.migrations ORDER BY datetime DESC, version DESC LIMIT 1")
        found = row.fetchone()
        return found[0] if found else None


def ensure_pgstac(database_url: str) -> str:
    """Install or migrate pgSTAC to the version pypgstac ships (idempotent, one migrator at a time)."""
    with _ready_lock:
        if database_url in _ready:
            return PGSTAC_VERSION
        with psycopg.connect(database_url, autocommit=True) as lock:
            lock.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
            try:
                current = installed_version(database_url)
                if current != PGSTAC_VERSION:
                    logger.warning("installing pgSTAC %s (was %s)", PGSTAC_VERSION, current or "absent")
                    db = PgstacDB(dsn=database_url)
                    try:
                        Migrate(db).run_migration()
                    finally:
                        db.close()
            finally:
                lock.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
        _ready.add(database_url)
        return PGSTAC_VERSION


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


class PgstacCatalog:
    """The ``Catalog`` protocol on pgSTAC, mirroring every write into the static catalog."""

    backend = "pgstac+static"

    def __init__(self, database_url: str, static: StaticCatalog) -> None:
        self.database_url = database_url
        self.static = static

    def _loader(self) -> tuple[PgstacDB, Loader]:
        ensure_pgstac(self.database_url)
        db = PgstacDB(dsn=self.database_url)
        return db, Loader(db)

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
        docs = [for_pgstac(self.static.get_item(ref.id, collection_id) or {}, ref.static_path) for ref in refs]
        db, loader = self._loader()
        try:
            loader.load_items(iter(docs), insert_mode=Methods.upsert)
        finally:
            db.close()
        logger.info("pgstac items upserted", extra={"collection_id": collection_id, "count": len(docs)})
        return [CatalogRef(ref.id, collection_id, ref.static_path, self.backend) for ref in refs]

    def _load_collection(self, ref: CatalogRef) -> None:
        doc = self.static.get_collection(ref.id)
        assert doc is not None and ref.static_path is not None
        db, loader = self._loader()
        try:
            loader.load_collections(iter([for_pgstac(doc, ref.static_path)]), insert_mode=Methods.upsert)
        finally:
            db.close()

    def _query(self, sql: str, args: tuple[Any, ...]) -> Any:
        ensure_pgstac(self.database_url)
        with psycopg.connect(self.database_url, autocommit=True) as con:
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
