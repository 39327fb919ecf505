"""The static STAC catalog (embedded mode) served read-only at /stac: landing page, conformance, collections,
items and a small `/stac/search` (bbox, datetime, collections, ids, limit; GET and POST) evaluated over the
catalog files. A small subset of the STAC API (docs/stac-api.md), enough for pystac-client."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from geomill.api.geo.links import with_tile_links
from geomill.domain import InvalidInput, NotFound

STAC_VERSION = "1.0.0"
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
MAX_LIMIT = 1000
JSON, GEOJSON = "application/json", "application/geo+json"

router = APIRouter(prefix="/stac", tags=["stac"])


class SearchBody(BaseModel):
    """POST /stac/search: the subset of item search this server evaluates."""

    bbox: list[float] | None = None
    datetime: str | None = None
    collections: list[str] | None = None
    ids: list[str] | None = None
    limit: int = Field(10, ge=1, le=MAX_LIMIT)
    token: int = Field(0, ge=0, description="offset of the next page (from a `next` link)")


def _base(request: Request) -> str:
    public = request.app.state.settings.public_url
    return (public or str(request.base_url)).rstrip("/")


def _catalog(request: Request) -> Any:
    return request.app.state.runtime.resources.catalog


def _link(rel: str, href: str, media: str = JSON, **extra: Any) -> dict[str, Any]:
    return {"rel": rel, "href": href, "type": media, **extra}


@router.get("", summary="STAC landing page")
def landing(request: Request) -> dict[str, Any]:
    base = _base(request) + "/stac"
    children = [_link("child", f"{base}/collections/{c['id']}", title=c.get("title") or c["id"])
                for c in _catalog(request).list_collections()]
    return {"type": "Catalog", "stac_version": STAC_VERSION, "id": "geomill", "title": "geomill",
            "description": "Products made by geomill (the static catalog, read-only)", "conformsTo": CONFORMANCE,
            "links": [_link("self", base), _link("root", base), _link("conformance", f"{base}/conformance"),
                      _link("data", f"{base}/collections"),
                      _link("search", f"{base}/search", GEOJSON, method="GET"),
                      _link("search", f"{base}/search", GEOJSON, method="POST"), *children]}


@router.get("/conformance", summary="STAC conformance classes")
def conformance() -> dict[str, Any]:
    return {"conformsTo": CONFORMANCE}


@router.get("/collections", summary="STAC collections")
def collections(request: Request) -> dict[str, Any]:
    base = _base(request) + "/stac"
    docs = [_collection(c, base) for c in _catalog(request).list_collections()]
    return {"collections": docs, "links": [_link("self", f"{base}/collections"), _link("root", base)]}


@router.get("/collections/{collection_id}", summary="A STAC collection")
def collection(request: Request, collection_id: str) -> dict[str, Any]:
    doc = _catalog(request).get_collection(collection_id)
    if doc is None:
        raise NotFound(f"no collection {collection_id!r}")
    return _collection(doc, _base(request) + "/stac")


@router.get("/collections/{collection_id}/items", summary="Items of a STAC collection")
def items(request: Request, collection_id: str, bbox: str | None = None, datetime: str | None = None,
          limit: int = Query(10, ge=1, le=MAX_LIMIT), token: int = Query(0, ge=0)) -> dict[str, Any]:
    collection(request, collection_id)
    body = SearchBody(bbox=_floats(bbox), datetime=datetime, collections=[collection_id], limit=limit, token=token)
    return _search(request, body, f"/stac/collections/{collection_id}/items")


@router.get("/collections/{collection_id}/items/{item_id}", summary="A STAC item")
def item(request: Request, collection_id: str, item_id: str) -> dict[str, Any]:
    catalog = _catalog(request)
    doc = catalog.get_item(item_id, collection_id)
    if doc is None:
        raise NotFound(f"no item {item_id!r} in collection {collection_id!r}")
    return _item(doc, _base(request), catalog)


@router.get("/search", summary="Search items (bbox, datetime, collections, ids)")
def search_get(request: Request, bbox: str | None = None, datetime: str | None = None,
               collections: str | None = None, ids: str | None = None,
               limit: int = Query(10, ge=1, le=MAX_LIMIT), token: int = Query(0, ge=0)) -> dict[str, Any]:
    body = SearchBody(bbox=_floats(bbox), datetime=datetime, collections=_names(collections), ids=_names(ids),
                      limit=limit, token=token)
    return _search(request, body, "/stac/search")


@router.post("/search", summary="Search items (bbox, datetime, collections, ids)")
def search_post(request: Request, body: SearchBody) -> dict[str, Any]:
    return _search(request, body, "/stac/search")


def _search(request: Request, body: SearchBody, path: str) -> dict[str, Any]:
    """The items matching `body`, in collection then file order, one page of `limit` from `token`."""
    catalog, base = _catalog(request), _base(request)
    window = _interval(body.datetime) if body.datetime else None
    box = _box(body.bbox) if body.bbox else None
    wanted = set(body.collections) if body.collections else None
    ids = set(body.ids) if body.ids else None
    matched: list[dict[str, Any]] = []
    for c in catalog.list_collections():
        if wanted is not None and c["id"] not in wanted:
            continue
        for doc in catalog.list_items(c["id"], limit=10**9):
            if (ids is None or doc["id"] in ids) and (box is None or _overlaps(doc, box)) \
                    and (window is None or _during(doc, window)):
                matched.append(doc)
    page = matched[body.token:body.token + body.limit]
    links = [_link("root", base + "/stac")]
    if body.token + body.limit < len(matched):
        links.append(_next(request, body, base + path))
    return {"type": "FeatureCollection", "features": [_item(d, base, catalog) for d in page], "links": links,
            "numberMatched": len(matched), "numberReturned": len(page)}


def _next(request: Request, body: SearchBody, url: str) -> dict[str, Any]:
    token = body.token + body.limit
    if request.method == "POST":
        return _link("next", url, GEOJSON, method="POST", body={**body.model_dump(exclude_none=True), "token": token})
    query = {k: v for k, v in request.query_params.items() if k != "token"}
    query["token"] = str(token)
    return _link("next", url + "?" + "&".join(f"{k}={v}" for k, v in query.items()), GEOJSON, method="GET")


def _collection(doc: dict[str, Any], base: str) -> dict[str, Any]:
    cid = doc["id"]
    kept = [x for x in doc.get("links", []) if x.get("rel") not in ("root", "parent", "self", "item", "child")]
    return {**doc, "links": [_link("self", f"{base}/collections/{cid}"), _link("root", base),
                             _link("parent", base), _link("items", f"{base}/collections/{cid}/items", GEOJSON),
                             *kept]}


def _item(doc: dict[str, Any], base: str, catalog: Any) -> dict[str, Any]:
    """An item with API links, its relative asset hrefs made absolute (the file it came from is not served), and
    links to the tile endpoint."""
    cid, stac = doc.get("collection"), base + "/stac"
    folder = catalog.item_path(cid, doc["id"]).parent
    assets = {k: _absolute(a, folder) for k, a in (doc.get("assets") or {}).items()}
    kept = [x for x in doc.get("links", []) if x.get("rel") not in ("root", "parent", "self", "collection")
            and "://" in x.get("href", "")]
    out = {**doc, "assets": assets, "links": [_link("self", f"{stac}/collections/{cid}/items/{doc['id']}", GEOJSON),
                            _link("root", stac), _link("parent", f"{stac}/collections/{cid}"),
                            _link("collection", f"{stac}/collections/{cid}"), *kept]}
    return with_tile_links(out, base)


def _absolute(asset: dict[str, Any], folder: Path) -> dict[str, Any]:
    href = asset.get("href", "")
    if href and "://" not in href and not os.path.isabs(href):
        return {**asset, "href": os.path.normpath(folder / href)}
    return asset


def _floats(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidInput(f"bbox {text!r} is not 4 or 6 comma-separated numbers", field="bbox") from None


def _names(text: str | None) -> list[str] | None:
    return [v for v in text.split(",") if v] if text else None


def _box(bbox: list[float]) -> tuple[float, float, float, float]:
    if len(bbox) == 6:
        return bbox[0], bbox[1], bbox[3], bbox[4]
    if len(bbox) != 4:
        raise InvalidInput(f"bbox has {len(bbox)} numbers: give 4 (or 6)", field="bbox")
    return bbox[0], bbox[1], bbox[2], bbox[3]


def _overlaps(doc: dict[str, Any], box: tuple[float, float, float, float]) -> bool:
    if not doc.get("bbox"):
        return False
    x0, y0, x1, y1 = _box(doc["bbox"])
    return x0 <= box[2] and box[0] <= x1 and y0 <= box[3] and box[1] <= y1


def _when(text: str, field: str = "datetime") -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{text!r} is not an RFC 3339 date-time", field=field) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _interval(text: str) -> tuple[datetime | None, datetime | None]:
    """`a`, `a/b`, `../b` or `a/..` as an inclusive interval (None: open)."""
    start, _, end = text.partition("/") if "/" in text else (text, "", text)
    return (None if start in ("", "..") else _when(start), None if end in ("", "..") else _when(end))


def _during(doc: dict[str, Any], window: tuple[datetime | None, datetime | None]) -> bool:
    props = doc.get("properties", {})
    start_text = props.get("start_datetime") or props.get("datetime")
    end_text = props.get("end_datetime") or props.get("datetime")
    if not start_text or not end_text:
        return False
    start, end = _when(start_text), _when(end_text)
    return (window[1] is None or start <= window[1]) and (window[0] is None or end >= window[0])
