"""A static, self-contained STAC catalog on a local folder, safe for several writer processes.

Layout (every href relative, so the folder can be copied or served as is)::

    catalog.json                                root catalog
    <collection_id>/collection.json             one collection per id, extent = union of its items
    <collection_id>/<item_id>/<item_id>.json    one item

Writes are upserts (the ``Catalog`` protocol of ``catalog/base.py``): an item or collection written again replaces
its file. Writers take an exclusive ``fcntl.flock`` on ``.catalog.lock`` in the catalog folder for the whole
read-modify-write of items, their collection and the root catalog, and every file is replaced atomically
(temporary file in the same folder, then ``os.replace``), so a reader never sees half a file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pystac

from geomill.catalog.base import CatalogRef, check_id

logger = logging.getLogger(__name__)

LOCK_NAME = ".catalog.lock"
CATALOG_FILE = "catalog.json"
COLLECTION_FILE = "collection.json"
JSON = "application/json"
GEOJSON = "application/geo+json"
_STRUCTURAL = {"root", "parent", "collection", "self"}


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write JSON to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON document at `path`, or None when there is none yet."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _link(rel: str, href: str, media_type: str, title: str | None = None) -> dict[str, Any]:
    link = {"rel": rel, "href": href, "type": media_type}
    if title:
        link["title"] = title
    return link


def _ensure_link(doc: dict[str, Any], link: dict[str, Any]) -> None:
    """Append `link` unless a link with the same rel and href is already there."""
    if not any(x.get("rel") == link["rel"] and x.get("href") == link["href"] for x in doc["links"]):
        doc["links"].append(link)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def _item_interval(item: dict[str, Any]) -> tuple[str, str]:
    """The item's time span as ISO strings (start, end)."""
    props = item["properties"]
    start = props.get("start_datetime") or props["datetime"]
    end = props.get("end_datetime") or props["datetime"]
    return start, end


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _bbox_2d(bbox: list[float]) -> list[float]:
    return [bbox[0], bbox[1], bbox[3], bbox[4]] if len(bbox) == 6 else list(bbox)


def union_extent(collection: dict[str, Any], item: dict[str, Any]) -> None:
    """Grow the collection's overall bbox and interval (the first of each) so they cover `item`."""
    ib = _bbox_2d(item["bbox"])
    spatial = collection["extent"]["spatial"]["bbox"]
    cb = spatial[0]
    spatial[0] = [min(cb[0], ib[0]), min(cb[1], ib[1]), max(cb[2], ib[2]), max(cb[3], ib[3])]
    start, end = (_parse(v) for v in _item_interval(item))
    interval = collection["extent"]["temporal"]["interval"]
    cs, ce = interval[0]
    start = start if cs is None else min(_parse(cs), start)
    end = end if ce is None else max(_parse(ce), end)
    interval[0] = [_iso(start), _iso(end)]


class StaticCatalog:
    """The static catalog rooted at a folder (the `Catalog` protocol); writes are safe across processes."""

    def __init__(self, root: Path, catalog_id: str = "geomill", description: str = "Products made by geomill") -> None:
        self.root = Path(root)
        self.catalog_id = check_id(catalog_id, "catalog id")
        self.description = description

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_FILE

    def collection_path(self, collection_id: str) -> Path:
        return self.root / check_id(collection_id, "collection id") / COLLECTION_FILE

    def item_path(self, collection_id: str, item_id: str) -> Path:
        item_id = check_id(item_id, "item id")
        return self.root / check_id(collection_id, "collection id") / item_id / f"{item_id}.json"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the catalog's exclusive lock (blocks until other writers are done)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_NAME, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    backend = "static"

    def upsert_items(self, items: list[dict[str, Any]], collection_id: str) -> list[CatalogRef]:
        """Write `items` (STAC item dicts) into `collection_id`, creating the collection from their extent or growing
        an existing one's, and link it from the root; an item with an existing id replaces the old file."""
        if not items:
            return []
        docs = [prepare_item(item, collection_id) for item in items]
        paths = [self.item_path(collection_id, doc["id"]) for doc in docs]
        collection_path = self.collection_path(collection_id)
        with self.locked():
            for doc, path in zip(docs, paths, strict=True):
                write_json_atomic(path, doc)
            collection = _read_json(collection_path) or _new_collection(collection_id, docs[0])
            for doc in docs:
                _ensure_link(collection, _link("item", f"./{doc['id']}/{doc['id']}.json", GEOJSON))
                union_extent(collection, doc)
            write_json_atomic(collection_path, collection)
            self._update_catalog(collection_id)
        logger.info("stac items written", extra={"collection_id": collection_id, "count": len(docs)})
        return [CatalogRef(doc["id"], collection_id, str(path), self.backend) for doc, path in zip(docs, paths, strict=True)]

    def upsert_collection(self, collection: dict[str, Any]) -> CatalogRef:
        """Write `collection` as given (its extent, assets, summaries), keeping the item links already there."""
        collection_id = collection["id"]
        path = self.collection_path(collection_id)
        with self.locked():
            existing = _read_json(path) or {"links": []}
            doc = dict(collection)
            kept = [x for x in collection.get("links", []) if x.get("rel") not in _STRUCTURAL | {"item", "child"}]
            items = [x for x in existing.get("links", []) if x.get("rel") == "item"]
            doc["links"] = [_link("root", f"../{CATALOG_FILE}", JSON), _link("parent", f"../{CATALOG_FILE}", JSON),
                            *kept, *items]
            write_json_atomic(path, doc)
            self._update_catalog(collection_id)
        return CatalogRef(collection_id, None, str(path), self.backend)

    def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        return _read_json(self.collection_path(collection_id))

    def delete_item(self, item_id: str, collection_id: str) -> bool:
        """Remove an item's file and its link from the collection (the extent is left as it is: it only grows);
        False when there was no such item."""
        path = self.item_path(collection_id, item_id)
        collection_path = self.collection_path(collection_id)
        with self.locked():
            found = path.exists()
            path.unlink(missing_ok=True)
            if path.parent.is_dir() and not any(path.parent.iterdir()):
                path.parent.rmdir()
            collection = _read_json(collection_path)
            if collection is not None:
                href = f"./{item_id}/{item_id}.json"
                links = [x for x in collection["links"] if not (x.get("rel") == "item" and x.get("href") == href)]
                if len(links) != len(collection["links"]):
                    collection["links"] = links
                    write_json_atomic(collection_path, collection)
        return found

    def list_collections(self) -> list[dict[str, Any]]:
        root = _read_json(self.catalog_path) or {"links": []}
        found = (_read_json(self.root / x["href"]) for x in root["links"] if x.get("rel") == "child")
        return [doc for doc in found if doc is not None]

    def get_item(self, item_id: str, collection_id: str | None = None) -> dict[str, Any] | None:
        collections = [collection_id] if collection_id else [c["id"] for c in self.list_collections()]
        for cid in collections:
            doc = _read_json(self.item_path(cid, item_id))
            if doc is not None:
                return doc
        return None

    def list_items(self, collection_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        collections = [self.get_collection(collection_id)] if collection_id else self.list_collections()
        found: list[dict[str, Any]] = []
        for collection in filter(None, collections):
            folder = self.root / collection["id"]
            for link in collection["links"]:
                if len(found) >= limit:
                    return found
                if link.get("rel") == "item":
                    doc = _read_json(folder / link["href"])
                    if doc is not None:
                        found.append(doc)
        return found

    def _update_catalog(self, collection_id: str) -> None:
        doc = _read_json(self.catalog_path) or self._new_catalog()
        _ensure_link(doc, _link("child", f"./{collection_id}/{COLLECTION_FILE}", JSON, collection_id))
        write_json_atomic(self.catalog_path, doc)

    def _new_catalog(self) -> dict[str, Any]:
        catalog = pystac.Catalog(id=self.catalog_id, description=self.description, title=self.catalog_id)
        doc = catalog.to_dict(include_self_link=False, transform_hrefs=False)
        doc["links"] = [_link("root", f"./{CATALOG_FILE}", JSON, self.catalog_id)]
        return doc


def prepare_item(item: dict[str, Any], collection_id: str) -> dict[str, Any]:
    """A copy of `item` that belongs to `collection_id`, with root/parent/collection links for this layout."""
    doc = dict(item)
    doc["collection"] = collection_id
    doc["links"] = [x for x in item.get("links", []) if x.get("rel") not in _STRUCTURAL] + [
        _link("root", f"../../{CATALOG_FILE}", JSON),
        _link("parent", f"../{COLLECTION_FILE}", JSON),
        _link("collection", f"../{COLLECTION_FILE}", JSON),
    ]
    return doc


def _new_collection(collection_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """A collection document whose extent is exactly `item`'s."""
    start, end = _item_interval(item)
    bbox = _bbox_2d(item["bbox"])
    collection = pystac.Collection(
        id=collection_id,
        description=f"Products made by geomill ({collection_id})",
        title=collection_id,
        license="other",
        extent=pystac.Extent(
            pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[_parse(start), _parse(end)]])
        ),
    )
    doc = collection.to_dict(include_self_link=False, transform_hrefs=False)
    doc["links"] = [_link("root", f"../{CATALOG_FILE}", JSON), _link("parent", f"../{CATALOG_FILE}", JSON)]
    return doc
