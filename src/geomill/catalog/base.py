"""One catalog protocol, two implementations: a static STAC catalog in silver (embedded mode) and pgSTAC (PostgreSQL).

The worker builds one with :func:`open_catalog` at start-up; task handlers get it in their context and never care
which one they got. Writes are upserts:
running a job again updates its items and collections instead of adding copies.

On PostgreSQL the catalog is pgSTAC in the same database, and the static catalog is still written to
``silver/catalog`` as a portable copy of the same documents (files a user can copy or serve as they are).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from geomill.domain import InvalidInput
from geomill.engine.context import Catalog as TaskCatalog

CATALOG_KEY = "catalog"  # silver://catalog is the static catalog's root
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_id(value: str, what: str) -> str:
    """Refuse ids that are not safe as a single file or folder name."""
    if not _SAFE_ID.match(value) or value in {".", ".."}:
        raise InvalidInput(
            f"{what} {value!r} is not a valid id: use 1-200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            field=what.replace(" ", "_"),
        )
    return value


@dataclass(frozen=True)
class CatalogRef:
    """Where a document landed: its id, its collection, and the static file that also holds it."""

    id: str
    collection_id: str | None
    static_path: str | None  # the JSON file in the static catalog (None when only in pgSTAC)
    backend: str  # "static" or "pgstac+static"


class Catalog(TaskCatalog, Protocol):
    """The engine's catalog port (what handlers use) plus the listings the CLI and API read."""

    backend: str

    def upsert_collection(self, collection: dict[str, Any]) -> CatalogRef:
        """Create or replace a collection (a STAC collection dict); item links in the static copy are kept."""
        ...

    def upsert_items(self, items: list[dict[str, Any]], collection_id: str) -> list[CatalogRef]:
        """Create or replace items in `collection_id`; a missing collection is created from the items' extent,
        an existing one has its extent grown to cover them."""
        ...

    def list_collections(self) -> list[dict[str, Any]]: ...

    def list_items(self, collection_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    def get_item(self, item_id: str, collection_id: str | None = None) -> dict[str, Any] | None: ...

    def get_collection(self, collection_id: str) -> dict[str, Any] | None: ...


def is_postgres(database_url: str | None) -> bool:
    return database_url is not None and database_url.split(":", 1)[0] in {"postgresql", "postgres"}


def open_catalog(storage: Any, database_url: str | None = None, *, pool: Any = None) -> Catalog:
    """The catalog for this deployment: pgSTAC (+ the static copy) on PostgreSQL, else the static catalog.

    On PostgreSQL its connections come from `pool` (a worker's resource pool), else one per call (the CLI)."""
    from geomill.catalog.static import StaticCatalog

    static = StaticCatalog(storage.local_mirror(f"silver://{CATALOG_KEY}"))  # local even when silver is remote
    if database_url and is_postgres(database_url):
        from geomill.catalog.pgstac import DirectConnections, PgstacCatalog

        return PgstacCatalog(pool or DirectConnections(database_url), static)
    return static
