"""``geomill catalog``: what was cataloged (pgSTAC on PostgreSQL, the static catalog otherwise)."""

from __future__ import annotations

from typing import Annotated

import typer

from geomill.catalog.base import Catalog, open_catalog
from geomill.cli import views
from geomill.cli.common import EXIT_FAILED, AsJson, DataDir, app, fail, load_settings, out
from geomill.storage import LocalStorage

catalog_app = typer.Typer(help="STAC catalog: collections and items made by jobs.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")

Collection = Annotated[str | None, typer.Option("--collection", "-c", help="only this collection")]


def _open(data_dir: object) -> Catalog:
    settings = load_settings(data_dir)  # type: ignore[arg-type]
    storage = LocalStorage(settings.data_dir)
    storage.ensure_zones()
    return open_catalog(storage, settings.resolved_database_url)


@catalog_app.command("list")
def catalog_list(collection: Collection = None, limit: int = 100, data_dir: DataDir = None,
                 as_json: AsJson = False) -> None:
    """Collections (with their extent) and their items, newest first within a collection."""
    catalog = _open(data_dir)
    collections = [c for c in catalog.list_collections() if collection in (None, c["id"])]
    items = catalog.list_items(collection, limit=limit)
    if as_json:
        views.print_json({"backend": catalog.backend, "collections": collections, "items": items})
        return
    out.print(views.collections_table(collections, catalog.backend))
    out.print(views.items_table(items))


@catalog_app.command("show")
def catalog_show(item_id: str, collection: Collection = None, data_dir: DataDir = None,
                 as_json: AsJson = False) -> None:
    """One item (or, when ITEM_ID names a collection, that collection) as STAC JSON."""
    catalog = _open(data_dir)
    doc = catalog.get_item(item_id, collection) or (None if collection else catalog.get_collection(item_id))
    if doc is None:
        raise fail(f"no item or collection {item_id!r} in the {catalog.backend} catalog (see: geomill catalog list)",
                   EXIT_FAILED, as_json)
    views.print_json(doc)
