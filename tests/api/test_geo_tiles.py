"""Tiles and the read-only static STAC API on the embedded deployment (SQLite, local zones): a COG made by a real
process_raster job served as PNG tiles whose pixels are the source's, a mosaic of two COGs, refused URLs, API keys,
a GeoPackage layer as GeoJSON, and pystac-client searching /stac (bbox, datetime, collections) with an item's tile
link answering a PNG."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pystac_client
import pytest
import rasterio
from rasterio.windows import Window

from api_helpers import RGB, Api, assert_problem
from geo_helpers import decode_png, serving, tile_over
from geomill.api import create_app
from services import remote_zones

ZOOM = 12  # tile pixels (~35 m) much finer than RGB.byte.tif's (~300 m): the middle pixel is one source pixel


def _cog(api: Api) -> tuple[str, str, dict]:
    """process_raster on RGB.byte.tif: (cog_uri, local COG path, output)."""
    (api.data_dir / "bronze" / "in").mkdir(parents=True, exist_ok=True)
    shutil.copy(RGB, api.data_dir / "bronze" / "in" / "RGB.byte.tif")
    r = api.submit("process_raster", {"source": "bronze://in/RGB.byte.tif"})
    doc = api.work(r.json()["job_id"], timeout=180)
    assert doc["status"] == "completed", doc
    [out] = doc["result"]["outputs"]
    return out["cog_uri"], str(api.rt.storage.local_path(out["cog_uri"])), out


def test_cog_tiles_show_the_source_pixels_and_refuse_other_urls(api: Api) -> None:
    cog_uri, cog_path, _ = _cog(api)
    tile, expected = tile_over(str(RGB), ZOOM)
    for url in (cog_uri, cog_path):  # a zone URI or the local path inside the zone
        r = api.client.get(f"/tiles/cog/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                           params={"url": url}, headers=api.h("read"))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        bands = decode_png(r.content)
        assert bands.shape == (4, 256, 256) and bands[3].any()  # RGB + alpha, not an empty tile
        assert list(bands[:3, 128, 128]) == list(expected)
    info = api.client.get("/tiles/cog/info", params={"url": cog_uri}, headers=api.h("read"))
    assert info.status_code == 200 and info.json()["count"] == 3
    tj = api.client.get("/tiles/cog/WebMercatorQuad/tilejson.json", params={"url": cog_uri}, headers=api.h("read"))
    assert tj.status_code == 200 and "/tiles/cog/tiles/WebMercatorQuad/{z}/{x}/{y}" in tj.json()["tiles"][0]

    outside = api.client.get("/tiles/cog/tiles/WebMercatorQuad/12/0/0.png", params={"url": cog_uri},
                             headers=api.h("read"))
    assert_problem(outside, 404)
    (api.data_dir / "elsewhere").mkdir()
    stray = shutil.copy(cog_path, api.data_dir / "elsewhere" / "stray.tif")
    for url in ("https://example.org/x.tif", "/vsicurl/https://example.org/x.tif", str(stray),
                str(api.data_dir / "geomill.db"), "silver://../geomill.db", "s3://not-a-configured-bucket/x.tif"):
        refused = api.client.get("/tiles/cog/info", params={"url": url}, headers=api.h("read"))
        body = assert_problem(refused, 422)
        assert body["errors"][0]["field"] == "url", body
    assert_problem(api.client.get("/tiles/cog/info", params={"url": cog_uri}), 401)
    assert_problem(api.client.get("/stac"), 401)
    assert_problem(api.client.get("/tiles/features", params={"url": cog_uri}), 401)


def test_mosaic_tiles_show_both_cogs(api: Api) -> None:
    bronze = api.data_dir / "bronze" / "halves"
    bronze.mkdir(parents=True)
    with rasterio.open(RGB) as src:  # two halves of the sample, side by side
        half = src.width // 2
        for name, window in (("west", Window(0, 0, half, src.height)),
                             ("east", Window(half, 0, src.width - half, src.height))):
            profile = {**src.profile, "width": window.width, "height": window.height,
                       "transform": src.window_transform(window)}
            with rasterio.open(bronze / f"{name}.tif", "w", **profile) as dst:
                dst.write(src.read(window=window))
    r = api.submit("process_raster_collection", {"sources": ["bronze://halves/west.tif", "bronze://halves/east.tif"],
                                                 "collection_id": "halves"})
    doc = api.work(r.json()["job_id"], timeout=240)
    assert doc["status"] == "completed", doc
    mosaic_uri = doc["result"]["mosaic"]["mosaicjson_uri"]
    tile, expected = tile_over(str(RGB), ZOOM)
    r = api.client.get(f"/tiles/mosaic/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                       params={"url": mosaic_uri}, headers=api.h("read"))
    assert r.status_code == 200, r.text
    bands = decode_png(r.content)
    assert bands[3].any() and list(bands[:3, 128, 128]) == list(expected)
    assert_problem(api.client.get("/tiles/mosaic/info", params={"url": "https://example.org/m.json"},
                                  headers=api.h("read")), 422)


def test_geopackage_layer_as_geojson(api: Api) -> None:
    import samples

    shutil.copy(samples.data("vector") / "coutwildrnp.shp", api.data_dir / "bronze")
    for ext in ("dbf", "shx", "prj"):
        shutil.copy(samples.data("vector") / f"coutwildrnp.{ext}", api.data_dir / "bronze")
    r = api.submit("process_vector", {"source": "bronze://coutwildrnp.shp"})
    doc = api.work(r.json()["job_id"], timeout=120)
    assert doc["status"] == "completed", doc
    location = doc["result"]["tables"][0]["location"]
    whole = api.client.get("/tiles/features", params={"url": location, "layer": "coutwildrnp"},
                           headers=api.h("read")).json()
    assert whole["type"] == "FeatureCollection" and len(whole["features"]) == 67
    bounded = api.client.get("/tiles/features", params={"url": location, "limit": 5}, headers=api.h("read")).json()
    assert len(bounded["features"]) == 5
    boxed = api.client.get("/tiles/features", params={"url": location, "bbox": "-109,37,-107,38"},
                           headers=api.h("read")).json()
    assert 0 < len(boxed["features"]) < 67
    for f in boxed["features"]:  # WGS84 coordinates, each feature touching the box
        xs = [p[0] for ring in _rings(f["geometry"]) for p in ring]
        assert min(xs) <= -107 and max(xs) >= -109 and -120 < min(xs) < -100
    assert_problem(api.client.get("/tiles/features", params={"url": location, "layer": "nope"},
                                  headers=api.h("read")), 422)


def _rings(geometry: dict) -> list:
    coords = geometry["coordinates"]
    return coords if geometry["type"] == "Polygon" else [r for poly in coords for r in poly]


def test_static_stac_api_with_pystac_client(api: Api) -> None:
    cog_uri, cog_path, out = _cog(api)
    app = create_app(api.rt.settings, api.rt)
    headers = api.h("read")
    with serving(app) as base:
        client = pystac_client.Client.open(f"{base}/stac", headers=headers)
        written = json.loads(Path(out["stac_item_path"]).read_text())
        collection_id = written["collection"]
        assert [c.id for c in client.get_collections()] == [collection_id]
        with rasterio.open(cog_path) as ds:
            from rasterio.warp import transform_bounds

            west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
        found = list(client.search(bbox=[west, south, east, north], collections=[collection_id]).items())
        assert [i.id for i in found] == [written["id"]]
        assert list(client.search(bbox=[0, 0, 1, 1]).items()) == []
        when = found[0].datetime
        assert when is not None
        assert len(list(client.search(datetime=f"{when.year - 1}-01-01/{when.year + 1}-01-01").items())) == 1
        assert list(client.search(datetime="1990-01-01/1990-12-31").items()) == []
        assert list(client.search(collections=["nope"]).items()) == []
        [xyz] = [link for link in found[0].links if link.rel == "xyz"]
        tile, _ = tile_over(cog_path, ZOOM)
        href = xyz.href.replace("{z}", str(tile.z)).replace("{x}", str(tile.x)).replace("{y}", str(tile.y))
        png = httpx.get(href, headers=headers)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert np.asarray(decode_png(png.content))[3].any()
        assert httpx.get(f"{base}/stac/search").status_code == 401


def test_cog_tile_from_s3(make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch) -> None:
    zones, bucket = remote_zones(monkeypatch, "s3", "geomill-tiles")
    api = make_api(**zones)
    api.rt.storage.put_file(RGB, "bronze://in/RGB.byte.tif")
    doc = api.work(api.submit("process_raster", {"source": "bronze://in/RGB.byte.tif"}).json()["job_id"],
                   timeout=180)
    assert doc["status"] == "completed", doc
    [out] = doc["result"]["outputs"]
    s3_uri = api.rt.storage.object_uri(out["cog_uri"])
    assert s3_uri.startswith(f"s3://{bucket}/silver/")
    tile, expected = tile_over(str(RGB), ZOOM)
    for url in (out["cog_uri"], s3_uri):  # read through /vsis3/ with the storage's credentials
        r = api.client.get(f"/tiles/cog/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
                           params={"url": url}, headers=api.h("read"))
        assert r.status_code == 200, r.text
        bands = decode_png(r.content)
        assert bands[3].any() and list(bands[:3, 128, 128]) == list(expected)
    other = f"s3://{bucket}-other/silver/x.tif"
    assert_problem(api.client.get("/tiles/cog/info", params={"url": other}, headers=api.h("read")), 422)
