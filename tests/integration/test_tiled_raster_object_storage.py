"""Tiled rasters and raster collections with inputs and outputs in object storage (moto's S3 server, Azurite).

Classes of input: a 1024x1024 uint16 GeoTIFF cut into 512 px tiles (process_large_raster s3→s3 and az→az, and
process_raster above a lowered threshold local→s3), and a prefix of three adjacent 512x512 scenes beside a text
file, a hidden raster and a sibling prefix that must not be listed (process_raster_collection s3→s3 and az→az).

Each job is submitted as over HTTP (restricted path policy) and run by an in-process worker. Asserted: the tile
COGs are objects in the bucket that validate and hold the source's pixels when read back through /vsis3/ or
/vsiaz/; the VRT (in the bucket, relative paths) reads back as the whole source; the MosaicJSON (in the bucket) and
the STAC items and collection name the objects (their URIs, the public base URL, or signed URLs that the emulator
serves); the intermediate tiles are deleted; nothing is left under the data folder's .staging.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from geomill.config import Settings
from geomill.domain import InvalidInput, Job, TaskError
from geomill.runtime import Runtime
from geomill.service.submit import submit
from geomill.tasks.raster.cogcheck import validate_cog
from services import ensure_azurite, ensure_s3, fresh_bucket, fresh_container

QUEUES = ["jobs", "raster-tasks", "vector-tasks", "long-tasks", "default-tasks"]
SIDE, TILE = 1024, 512


def run_until_finished(rt: Runtime, job_id: str, timeout: float = 120) -> Job:
    """An in-process worker loop until the job is terminal."""
    import time

    from geomill.worker.loop import WorkerLoop

    loop = WorkerLoop(rt, rt.settings.queues)
    deadline = time.monotonic() + timeout
    while not (job := rt.store.get_job(job_id)).status.is_terminal:
        assert time.monotonic() < deadline, f"job still {job.status} after {timeout} s"
        if not loop.run_once():
            time.sleep(0.01)
    return job


def pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Values that differ from pixel to pixel (never the nodata 0), so a shifted or missing tile shows."""
    values = np.arange(height * width, dtype=np.uint64).reshape(height, width) * 7 + seed
    return (values % 65521 + 1).astype(np.uint16)


def write_geotiff(path: Path, data: np.ndarray, west: float = 500_000, north: float = 4_000_000) -> Path:
    """A striped (not cloud-optimized) uint16 GeoTIFF in UTM 18N, 10 m pixels, nodata 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="uint16", crs="EPSG:32618", transform=from_origin(west, north, 10, 10), nodata=0) as ds:
        ds.write(data, 1)
    return path


def open_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, *, remote_bronze: bool = True,
                 **settings: Any) -> tuple[Runtime, str]:
    """A runtime whose silver (and bronze, unless `remote_bronze` is False) zone is in a fresh bucket/container."""
    env = ensure_s3() if backend == "s3" else ensure_azurite()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = fresh_bucket("h18r") if backend == "s3" else fresh_container("h18r")
    zones = {"silver_url": f"{backend}://{bucket}/silver/"}
    if remote_bronze:
        zones["bronze_url"] = f"{backend}://{bucket}/bronze/"
    rt = Runtime.open(Settings(data_dir=tmp_path / "data", database_url=None, app_name="h18r-test", workers=1,
                               queues=QUEUES, plugins=[], poll_interval_seconds=0.05, **zones, **settings))
    return rt, bucket


def assert_no_staging_left(rt: Runtime) -> None:
    scratch = rt.storage.scratch_dir()
    assert not scratch.exists() or not any(scratch.iterdir()), list(scratch.rglob("*"))


def read_back(rt: Runtime, uri: str) -> np.ndarray:
    """Band 1 of `uri`, read by GDAL from the object store in place (after checking it is a valid COG)."""
    name = rt.storage.gdal_path(uri)
    assert name.startswith(("/vsis3/", "/vsiaz/")), name
    valid, errors, _ = validate_cog(name)
    assert valid and not errors, errors
    with rasterio.open(name) as ds:
        return ds.read(1)


def fetch_url(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - the emulator on loopback
        return bytes(response.read())


def expected_href(rt: Runtime, uri: str, how: str) -> str:
    """What a STAC asset or MosaicJSON path must be for the object `uri` in mode `how`."""
    if how == "public":
        return f"{rt.settings.silver_public_url}/{uri.removeprefix('silver://')}"
    return rt.storage.object_uri(uri)


def assert_href_names(rt: Runtime, href: str, uri: str, how: str) -> None:
    """`href` names the object `uri`: equal to its URI or public URL, or a signed URL that serves its bytes."""
    if how == "signed":
        assert href.startswith("http://127.0.0.1:") and ("sig=" in href or "X-Amz-Signature=" in href), href
        assert fetch_url(href) == rt.storage.read_bytes(uri)
    else:
        assert href == expected_href(rt, uri, how)


def check_tiled_outputs(rt: Runtime, tiled: dict[str, Any], source: np.ndarray, how: str) -> None:
    """The tile COGs, the VRT, the MosaicJSON and the STAC collection of a tiled job in a remote silver zone."""
    name = tiled["tiling"]["name"]
    assert (tiled["tiling"]["rows"], tiled["tiling"]["cols"]) == (SIDE // TILE, SIDE // TILE)
    tiles = tiled["tiles"]
    assert len(tiles) == 4
    for tile in tiles:
        row, col = int(tile["key"][1:5]), int(tile["key"][6:])
        assert tile["valid"] is True and tile["cog_path"] == rt.storage.object_uri(tile["cog_uri"])
        assert tile["cog_path"].startswith(("s3://", "az://"))
        got = read_back(rt, tile["cog_uri"])
        assert np.array_equal(got, source[row * TILE:(row + 1) * TILE, col * TILE:(col + 1) * TILE])

    mosaic = tiled["mosaic"]
    assert mosaic["vrt_path"] == rt.storage.object_uri(mosaic["vrt_uri"])
    with rasterio.open(rt.storage.gdal_path(mosaic["vrt_uri"])) as vrt:  # sources named /vsis3/…, /vsiaz/…
        assert np.array_equal(vrt.read(1), source)
    vrt_text = rt.storage.read_bytes(mosaic["vrt_uri"]).decode()
    assert all(f">{rt.storage.gdal_path(t['cog_uri'])}<" in vrt_text for t in tiles)
    doc = json.loads(rt.storage.read_bytes(mosaic["mosaicjson_uri"]))
    named = {path for paths in doc["tiles"].values() for path in paths}
    assert len(named) == 4
    by_uri = {t["cog_uri"]: t for t in tiles}
    if how == "signed":  # each signed URL serves one of the tile COGs, byte for byte
        assert {fetch_url(h) for h in named} == {rt.storage.read_bytes(u) for u in by_uri}
    else:
        assert named == {expected_href(rt, u, how) for u in by_uri}

    removed = tiled["intermediates_removed"]
    assert removed["files"] == 4 and removed["uri"] == f"silver://tiles/{name}/extract"
    assert not list(rt.storage.list(f"silver://tiles/{name}/extract/"))
    collection = tiled["collection"]
    doc = json.loads(Path(collection["collection_path"]).read_text())  # the static catalog: local
    assert_href_names(rt, doc["assets"]["mosaicjson"]["href"], mosaic["mosaicjson_uri"], how)
    assert_href_names(rt, doc["assets"]["vrt"]["href"], mosaic["vrt_uri"], how)
    folder = Path(collection["collection_path"]).parent
    for item_id, tile in zip(sorted(collection["item_ids"]), sorted(tiles, key=lambda t: t["key"]), strict=True):
        item = json.loads((folder / item_id / f"{item_id}.json").read_text())
        assert_href_names(rt, item["assets"]["data"]["href"], tile["cog_uri"], how)
    assert_no_staging_left(rt)


LARGE_CASES = [("s3", "uri"), ("az", "signed")]


@pytest.mark.parametrize(("backend", "how"), LARGE_CASES, ids=["s3-to-s3-uris", "az-to-az-signed-urls"])
def test_process_large_raster_tiles_mosaic_and_collection_in_object_storage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, how: str) -> None:
    """A 1024² GeoTIFF in the bronze bucket → 4 tile COGs, VRT, MosaicJSON in the silver bucket; hrefs are the
    objects' URIs (S3) or signed URLs that Azurite serves (Azure)."""
    rt, _ = open_runtime(tmp_path, monkeypatch, backend,
                         **({"signed_url_seconds": 600} if how == "signed" else {}))
    try:
        source = pixels(SIDE, SIDE)
        rt.storage.put_file(write_geotiff(tmp_path / "big.tif", source), "bronze://big/big.tif")
        job = submit(rt, "process_large_raster", {"source": "bronze://big/big.tif", "tile_size": TILE},
                     restricted=True).job
        done = run_until_finished(rt, job.job_id)
        assert done.status.value == "completed", done.error
        assert done.result is not None and done.result["path"] == "tiled"
        check_tiled_outputs(rt, done.result["tiled"], source, how)
    finally:
        rt.close()


def test_process_raster_above_the_threshold_tiles_a_local_source_into_s3(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local 1024² GeoTIFF (2 MiB of pixels, threshold 1 MB) takes the tiled path with silver in S3; hrefs use
    the public base URL."""
    rt, bucket = open_runtime(tmp_path, monkeypatch, "s3", remote_bronze=False, large_raster_threshold_mb=1.0,
                              silver_public_url="https://cdn.example.org/products")
    try:
        source = pixels(SIDE, SIDE, seed=3)
        write_geotiff(rt.storage.local_path("bronze://big.tif"), source)
        job = submit(rt, "process_raster", {"source": "bronze://big.tif", "tile_size": TILE}, restricted=True).job
        done = run_until_finished(rt, job.job_id)
        assert done.status.value == "completed", done.error
        assert done.result is not None and done.result["path"] == "tiled"
        assert all(t["cog_path"].startswith(f"s3://{bucket}/silver/tiles/") for t in done.result["tiled"]["tiles"])
        check_tiled_outputs(rt, done.result["tiled"], source, "public")
    finally:
        rt.close()


def put_scenes(rt: Runtime, tmp_path: Path, prefix: str) -> list[np.ndarray]:
    """Three adjacent 512² scenes under `prefix`, plus what the listing must skip: a text file, a hidden raster,
    a raster under a sibling prefix (``<prefix>-old/``)."""
    scenes = []
    for i in range(3):
        data = pixels(TILE, TILE, seed=100 * i)
        local = write_geotiff(tmp_path / f"scene{i}.tif", data, west=500_000 + i * TILE * 10)
        rt.storage.put_file(local, f"{prefix}scene-{i}.tif")
        scenes.append(data)
    rt.storage.write_bytes(f"{prefix}README.txt", b"not a raster")
    rt.storage.put_file(tmp_path / "scene0.tif", f"{prefix}.hidden.tif")
    rt.storage.put_file(tmp_path / "scene1.tif", f"{prefix.rstrip('/')}-old/scene-9.tif")
    return scenes


COLLECTION_CASES = [("s3", "signed", "cloud"), ("az", "uri", "zone")]


@pytest.mark.parametrize(("backend", "how", "named"), COLLECTION_CASES,
                         ids=["s3-to-s3-bucket-prefix-signed", "az-to-az-zone-prefix-uris"])
def test_process_raster_collection_lists_a_bucket_prefix_and_catalogs_the_objects(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, how: str, named: str) -> None:
    """source_prefix in a bucket (s3://bucket/bronze/scenes/) or a remote zone (bronze://scenes/): three COGs, a
    mosaic and a collection in the silver bucket; the text file, the hidden raster and the sibling prefix are not
    listed."""
    rt, bucket = open_runtime(tmp_path, monkeypatch, backend,
                              **({"signed_url_seconds": 600} if how == "signed" else {}))
    try:
        scenes = put_scenes(rt, tmp_path, "bronze://scenes/")
        prefix = f"{backend}://{bucket}/bronze/scenes/" if named == "cloud" else "bronze://scenes/"
        job = submit(rt, "process_raster_collection", {"source_prefix": prefix}, restricted=True).job
        done = run_until_finished(rt, job.job_id)
        assert done.status.value == "completed", done.error
        result = done.result
        assert result is not None
        assert [o["source"] for o in result["outputs"]] == [f"{prefix}scene-{i}.tif" for i in range(3)]
        for out, data in zip(result["outputs"], scenes, strict=True):
            assert out["cog_path"] == rt.storage.object_uri(out["cog_uri"])
            assert out["cog_path"].startswith(f"{backend}://{bucket}/silver/cogs/")
            assert np.array_equal(read_back(rt, out["cog_uri"]), data)

        mosaic = result["mosaic"]
        with rasterio.open(rt.storage.gdal_path(mosaic["vrt_uri"])) as vrt:
            assert (vrt.width, vrt.height) == (3 * TILE, TILE)
            assert np.array_equal(vrt.read(1, window=Window(TILE, 0, TILE, TILE)), scenes[1])
        doc = json.loads(rt.storage.read_bytes(mosaic["mosaicjson_uri"]))
        named_paths = {p for paths in doc["tiles"].values() for p in paths}
        cog_uris = [o["cog_uri"] for o in result["outputs"]]
        if how == "signed":
            assert {fetch_url(p) for p in named_paths} == {rt.storage.read_bytes(u) for u in cog_uris}
        else:
            assert named_paths == {rt.storage.object_uri(u) for u in cog_uris}

        collection = json.loads(Path(result["collection_path"]).read_text())
        assert_href_names(rt, collection["assets"]["mosaicjson"]["href"], mosaic["mosaicjson_uri"], how)
        folder = Path(result["collection_path"]).parent
        for item_id, uri in zip(result["items"], cog_uris, strict=True):
            item = json.loads((folder / item_id / f"{item_id}.json").read_text())
            assert_href_names(rt, item["assets"]["data"]["href"], uri, how)
        assert_no_staging_left(rt)
    finally:
        rt.close()


def test_an_empty_bucket_prefix_is_refused_at_submit_and_a_prefix_without_rasters_by_the_listing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """source_prefix naming nothing in the bucket: refused at submit (one page of its listing); a prefix holding
    only a text file: the list task fails the job with an InvalidInput naming the prefix."""
    rt, bucket = open_runtime(tmp_path, monkeypatch, "s3")
    try:
        with pytest.raises(InvalidInput, match=r"source_prefix: .*bronze/nothing/.*no such object"):
            submit(rt, "process_raster_collection", {"source_prefix": f"s3://{bucket}/bronze/nothing/"},
                   restricted=True)
        rt.storage.write_bytes("bronze://notes/README.txt", b"not a raster")
        job = submit(rt, "process_raster_collection", {"source_prefix": "bronze://notes/"}, restricted=True).job
        done = run_until_finished(rt, job.job_id)
        assert done.status.value == "failed"
        assert "holds no raster files" in json.dumps(done.error) and "bronze://notes/" in json.dumps(done.error)
    finally:
        rt.close()


def test_a_tile_extraction_that_fails_mid_write_leaves_no_object_and_no_local_file(tmp_path: Path) -> None:
    """A tile bound for S3 whose extraction stops after its first strip (the job is cancelled): no object under the
    tile's key, nothing left in the data folder's .staging; the same task then succeeds and publishes it."""
    from geomill.engine.context import Limits, TaskContext
    from geomill.storage import ObjectStorage
    from geomill.tasks.raster.models import ExtractTileParams, Grid, TileWindow
    from geomill.tasks.raster.tiles import STRIP_ROWS, extract_tile

    env = ensure_s3()
    bucket = fresh_bucket("h18r")
    storage = ObjectStorage(tmp_path / "data", {"silver": f"s3://{bucket}/silver/"}, env=env)
    storage.ensure_zones()
    source = write_geotiff(storage.local_path("bronze://tall.tif"), pixels(2 * STRIP_ROWS, 256))
    with rasterio.open(source) as ds:
        grid = Grid(crs=ds.crs.to_wkt(), transform=tuple(ds.transform)[:6], width=ds.width, height=ds.height)
    tile = TileWindow(key="r0000c0000", row=0, col=0, col_off=0, row_off=0, width=256, height=2 * STRIP_ROWS)
    params = ExtractTileParams(source="bronze://tall.tif", grid=grid, reproject=False, resampling="nearest",
                               tile=tile, output_uri="silver://tiles/tall/extract/r0000c0000.tif")
    checks = iter([False, True])  # not cancelled before the first strip, cancelled before the second
    ctx = TaskContext(task_id="t", job_id="j", stage=3, attempt=1, storage=storage, limits=Limits(gdal_cache_mb=16),
                      _cancelled=lambda: next(checks, True))
    with pytest.raises(TaskError, match="cancelled"):
        extract_tile(params, ctx)
    assert not storage.exists(params.output_uri)
    assert not any(storage.scratch_dir().rglob("*"))

    done = extract_tile(params, TaskContext(task_id="t", job_id="j", stage=3, attempt=2, storage=storage,
                                            limits=Limits(gdal_cache_mb=16)))
    assert done.path == f"s3://{bucket}/silver/tiles/tall/extract/r0000c0000.tif" and not done.reused
    with rasterio.open(storage.gdal_path(params.output_uri)) as ds:
        assert ds.compression is not None and ds.compression.name.lower() == "zstd"  # compressed for the upload
        assert np.array_equal(ds.read(1), pixels(2 * STRIP_ROWS, 256))
    assert not any(storage.scratch_dir().rglob("*"))
