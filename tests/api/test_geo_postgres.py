"""The STAC API (stac-fastapi-pgstac at /stac) and vector tiles on a PostgreSQL deployment: pgSTAC filled by a real
process_raster job, searched with pystac-client (bbox, datetime, collections), an item's tile link answering a PNG;
a table loaded by process_vector into PostGIS served as a Mapbox vector tile (decoded with mapbox_vector_tile)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import mapbox_vector_tile
import pystac_client
import rasterio
from rasterio.warp import transform_bounds

import samples
from api_helpers import RGB, Api, assert_problem
from geo_helpers import WEB_MERCATOR, decode_png, serving, tile_over
from geomill.api import create_app


def test_pgstac_api_with_pystac_client(pg_url: str, make_api: Callable[..., Api]) -> None:
    api = make_api(database_url=pg_url)
    (api.data_dir / "bronze" / "in").mkdir(parents=True)
    shutil.copy(RGB, api.data_dir / "bronze" / "in" / "RGB.byte.tif")
    doc = api.work(api.submit("process_raster", {"source": "bronze://in/RGB.byte.tif"}).json()["job_id"], timeout=180)
    assert doc["status"] == "completed", doc
    [out] = doc["result"]["outputs"]
    written = json.loads(Path(out["stac_item_path"]).read_text())
    cog_path = str(api.rt.storage.local_path(out["cog_uri"]))
    with rasterio.open(cog_path) as ds:
        bbox = list(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds))
    headers = api.h("read")
    with serving(create_app(api.rt.settings, api.rt)) as base:
        assert httpx.get(f"{base}/stac/collections").status_code == 401
        assert httpx.get(f"{base}/stac/collections", headers={"X-API-Key": "nope"}).status_code == 401
        client = pystac_client.Client.open(f"{base}/stac", headers=headers)
        assert written["collection"] in [c.id for c in client.get_collections()]
        found = list(client.search(bbox=bbox, collections=[written["collection"]]).items())
        assert [i.id for i in found] == [written["id"]]
        assert list(client.search(bbox=[0, 0, 1, 1]).items()) == []
        when = found[0].datetime
        assert when is not None
        window = f"{when.year - 1}-01-01T00:00:00Z/{when.year + 1}-01-01T00:00:00Z"
        assert [i.id for i in client.search(datetime=window).items()] == [written["id"]]
        assert list(client.search(datetime="1990-01-01T00:00:00Z/1990-12-31T00:00:00Z").items()) == []
        assert list(client.search(collections=["nope"]).items()) == []
        [xyz] = [link for link in found[0].links if link.rel == "xyz"]
        tile, expected = tile_over(cog_path, 12)
        href = xyz.href.replace("{z}", str(tile.z)).replace("{x}", str(tile.x)).replace("{y}", str(tile.y))
        png = httpx.get(href, headers=headers)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        bands = decode_png(png.content)
        assert bands[3].any() and list(bands[:3, 128, 128]) == list(expected)


def test_postgis_table_as_vector_tiles(pg_url: str, make_api: Callable[..., Api]) -> None:
    api = make_api(database_url=pg_url)
    shutil.copy(samples.data("vector") / "grenada.geojson", api.data_dir / "bronze")
    doc = api.work(api.submit("process_vector", {"source": "bronze://grenada.geojson"}).json()["job_id"],
                   timeout=120)
    assert doc["status"] == "completed", doc
    table = doc["result"]["tables"][0]
    name = f"{table['schema_name']}.{table['table']}"
    tile = WEB_MERCATOR.tile(-61.68, 12.12, 8)  # over Grenada
    r = api.client.get(f"/tiles/vector/{name}/{tile.z}/{tile.x}/{tile.y}.pbf", headers=api.h("read"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    layers = mapbox_vector_tile.decode(r.content)
    [feature] = layers[table["table"]]["features"]
    assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert feature["properties"]["name_en"] == "Grenada"
    empty = api.client.get(f"/tiles/vector/{name}/8/0/0.pbf", headers=api.h("read"))  # far away: no feature
    assert empty.status_code == 200 and mapbox_vector_tile.decode(empty.content) == {}
    for other in (f"{table['schema_name']}.geomill_vector_catalog", "pg_catalog.pg_class", "geo.missing"):
        assert_problem(api.client.get(f"/tiles/vector/{other}/8/0/0.pbf", headers=api.h("read")), 404)
    assert_problem(api.client.get('/tiles/vector/geo.x";drop/8/0/0.pbf', headers=api.h("read")), 422)
    assert_problem(api.client.get(f"/tiles/vector/{name}/8/0/0.pbf"), 401)
