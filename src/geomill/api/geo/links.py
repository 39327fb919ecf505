"""Links from STAC items to the tile endpoints: each item whose data asset is a COG gets an `xyz` link (a
WebMercatorQuad PNG tile template) and a `tilejson` link on /tiles/cog, with the asset's href as `url`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

COG_TYPES = ("image/tiff; application=geotiff; profile=cloud-optimized", "image/tiff; application=geotiff")
TILE_TEMPLATE = "/tiles/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
TILEJSON = "/tiles/cog/WebMercatorQuad/tilejson.json"


def cog_asset(item: dict[str, Any]) -> dict[str, Any] | None:
    """The item's COG asset (a data role first), or None."""
    assets = [a for a in (item.get("assets") or {}).values() if a.get("type") in COG_TYPES]
    assets.sort(key=lambda a: "data" not in (a.get("roles") or []))
    return assets[0] if assets else None


def with_tile_links(item: dict[str, Any], base_url: str) -> dict[str, Any]:
    """`item` plus `xyz` and `tilejson` links to /tiles/cog for its COG asset (none for an https href: the tile
    endpoints read only storage the path policy admits)."""
    asset = cog_asset(item)
    href = asset.get("href", "") if asset else ""
    if not href or href.split("://", 1)[0].lower() in ("http", "https"):
        return item
    query = "?url=" + quote(href, safe="")
    base = base_url.rstrip("/")
    links = [x for x in item.get("links", []) if x.get("rel") not in ("xyz", "tilejson")]
    links.append({"rel": "xyz", "href": base + TILE_TEMPLATE + query, "type": "image/png",
                  "title": "PNG tiles of the COG (WebMercatorQuad)"})
    links.append({"rel": "tilejson", "href": base + TILEJSON + query, "type": "application/json",
                  "title": "TileJSON of the COG"})
    return {**item, "links": links}
