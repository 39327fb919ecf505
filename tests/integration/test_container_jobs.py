"""Container jobs on real object storage (moto's S3 server, Azurite) and local folders: list_container manifests,
sync_container's diff by etag (new, changed, unchanged, deleted) and catalog_file.

The big case uploads 10,000 real objects to moto with obstore in parallel: 9,994 small non-geospatial files (text
and JSON sidecars, which the inventory counts and the sync skips) and 6 small rasters (3 COGs catalogued in place,
3 striped GeoTIFFs made COGs). A first sync plans 6 tasks, a second sync of the unchanged bucket 0, and after 3
rasters are rewritten (new etags) a third plans exactly those 3.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

from geomill.config import Settings
from geomill.domain import InvalidInput, Job
from geomill.runtime import Runtime
from geomill.service.submit import resubmit, submit
from services import S3_ENV, ensure_azurite, ensure_s3, fresh_bucket, fresh_container

QUEUES = ["jobs", "raster-tasks", "vector-tasks", "long-tasks", "default-tasks"]


def run_until_finished(rt: Runtime, job_id: str, timeout: float) -> Job:
    """An in-process worker loop until the job is terminal."""
    from geomill.worker.loop import WorkerLoop

    loop = WorkerLoop(rt, rt.settings.queues)
    deadline = time.monotonic() + timeout
    while not (job := rt.store.get_job(job_id)).status.is_terminal:
        assert time.monotonic() < deadline, f"job still {job.status} after {timeout} s"
        if not loop.run_once():
            time.sleep(0.01)
    return job


def raster(path: Path, *, cog: bool, value: int = 0) -> Path:
    """A small georeferenced GeoTIFF: a COG (GDAL's COG driver) or a striped GTiff (larger than 512 pixels on a
    side, so not a valid COG); `value` changes its pixels."""
    data = ((np.arange(600 * 520, dtype=np.uint16).reshape(1, 520, 600) + value) % 4000).astype(np.uint16)
    profile = {"width": 600, "height": 520, "count": 1, "dtype": "uint16", "crs": "EPSG:32631", "nodata": 0,
               "transform": Affine(20, 0, 400000 + 10000 * value, 0, -20, 5500000)}
    with rasterio.open(path, "w", driver="COG" if cog else "GTiff", **profile) as ds:
        ds.write(data)
    return path


def open_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *,
                 database_url: str | None = None, **zones: str) -> Runtime:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, app_name="h18c-container-test",
                        workers=1, queues=QUEUES, plugins=[], poll_interval_seconds=0.05, **zones)
    return Runtime.open(settings)


def run(rt: Runtime, job_type: str, params: dict[str, Any], timeout: float = 120,
        restricted: bool = True) -> dict[str, Any]:
    """Submitted as over HTTP (`restricted`: the path policy of the API) and run to completion."""
    job = run_until_finished(rt, submit(rt, job_type, params, restricted=restricted).job.job_id, timeout)
    assert job.status.value == "completed", job.error
    assert job.result is not None
    return job.result


def rerun(rt: Runtime, job_id: str, timeout: float = 120) -> Job:
    job = run_until_finished(rt, resubmit(rt, job_id).job.job_id, timeout)
    assert job.status.value == "completed", job.error
    return job


def first_job(rt: Runtime, params: dict[str, Any]) -> str:
    return submit(rt, "sync_container", params, restricted=False).job.job_id


def sync_stage_tasks(rt: Runtime, job_id: str) -> int:
    return len(rt.store.list_tasks(job_id, stage=3))


def manifest_lines(rt: Runtime, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    lines = []
    for part in manifest["parts"]:
        lines += [json.loads(x) for x in rt.storage.read_bytes(part["uri"]).decode().splitlines()]
    return lines


async def _put_all(store: Any, objects: dict[str, bytes], parallel: int = 64) -> None:
    import obstore

    gate = asyncio.Semaphore(parallel)

    async def put(key: str, data: bytes) -> None:
        async with gate:
            await obstore.put_async(store, key, data)

    await asyncio.gather(*(put(k, v) for k, v in objects.items()))


def s3_store(bucket: str) -> Any:
    from obstore.store import S3Store

    return S3Store(bucket, endpoint=S3_ENV["AWS_ENDPOINT_URL"], access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                   secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"], region=S3_ENV["AWS_REGION"],
                   virtual_hosted_style_request=False, client_options={"allow_http": True})


# ---------------------------------------------------------------------------------------------------- big sync


def test_sync_container_of_10000_objects_plans_only_new_then_changed_rasters_s3(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Input class: a bucket prefix of 10,000 objects, mostly non-geospatial, 6 rasters (3 COGs, 3 striped)."""
    env = ensure_s3()
    bucket = fresh_bucket("h18c-sync")
    rt = open_runtime(tmp_path, monkeypatch, env, bronze_url=f"s3://{bucket}/bronze/",
                      silver_url=f"s3://{bucket}/silver/")
    try:
        rasters = {f"bronze/scenes/{i % 3}/scene-{i}.tif": raster(tmp_path / f"s{i}.tif", cog=i < 3).read_bytes()
                   for i in range(6)}
        others = {f"bronze/scenes/{i % 7}/note-{i:05d}.{'txt' if i % 2 else 'xml'}": f"note {i}\n".encode()
                  for i in range(10_000 - len(rasters))}
        started = time.monotonic()
        asyncio.run(_put_all(s3_store(bucket), {**others, **rasters}))
        uploaded = time.monotonic() - started

        params = {"source": "bronze://scenes/", "collection_id": "h18c-scenes", "part_size": 4000}
        first = run(rt, "sync_container", params, timeout=300)
        print(f"upload {uploaded:.1f} s, first sync {time.monotonic() - started - uploaded:.1f} s")
        assert first["manifest"]["objects"] == 10_000 and first["manifest"]["parts"] == 3
        assert first["manifest"]["kinds"] == {"other": 4997, "raster": 6, "sidecar": 4997}
        assert (first["new"], first["changed"], first["planned"], first["synced"]) == (6, 0, 6, 6)
        items = {i["id"]: i for i in rt.resources.catalog.list_items("h18c-scenes", limit=100)}
        assert len(items) == 6
        hrefs = sorted(i["assets"]["data"]["href"] for i in items.values())
        in_place = [h for h in hrefs if "/bronze/scenes/" in h]  # the 3 COGs: the objects themselves
        made = [h for h in hrefs if "/silver/cogs/" in h]  # the 3 striped ones: COGs written to silver
        assert len(in_place) == 3 and len(made) == 3 and all(h.startswith(f"s3://{bucket}/") for h in hrefs)

        second = rerun(rt, submit(rt, "sync_container", params, restricted=True).job.job_id)
        assert second.result is not None
        assert (second.result["planned"], second.result["unchanged"], second.result["deleted"]) == (0, 6, 0)
        assert sync_stage_tasks(rt, second.job_id) == 0

        changed = {k: raster(tmp_path / f"c{n}.tif", cog=n == 0, value=50 + n).read_bytes()
                   for n, k in enumerate(sorted(rasters)[:3])}
        asyncio.run(_put_all(s3_store(bucket), changed))
        third = rerun(rt, second.job_id)
        assert third.result is not None
        assert (third.result["planned"], third.result["changed"], third.result["new"]) == (3, 3, 0)
        assert sync_stage_tasks(rt, third.job_id) == 3 and third.result["synced"] == 3
        print(f"10,000 objects uploaded in {uploaded:.1f} s; three syncs in {time.monotonic() - started:.1f} s")
    finally:
        rt.close()


# ---------------------------------------------------------------------------------------------------- deletions


@pytest.mark.parametrize("backend", ["az", "local"])
def test_deleted_object_is_reported_and_its_item_removed_when_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, pg_url: str) -> None:
    """Input class: a container (Azurite) or local folder whose raster is deleted between syncs; PostgreSQL
    store and pgSTAC catalog."""
    if backend == "az":
        env = ensure_azurite()
        container = fresh_container("h18c-del")
        zones = {"bronze_url": f"az://{container}/bronze/", "silver_url": f"az://{container}/silver/"}
    else:
        env, zones = {}, {}
    rt = open_runtime(tmp_path, monkeypatch, env, database_url=pg_url, **zones)
    try:
        for name, cog in (("a.tif", True), ("b/b.tif", False), ("c.tif", True)):
            rt.storage.put_file(raster(tmp_path / name.replace("/", "_"), cog=cog), f"bronze://in/{name}")
        rt.storage.write_bytes("bronze://in/readme.txt", b"not a raster")
        params = {"source": "bronze://in/", "collection_id": "h18c-del", "extensions": ["tif"]}
        first = run(rt, "sync_container", params)
        assert (first["planned"], first["synced"], first["manifest"]["objects"]) == (3, 3, 3)
        catalog = rt.resources.catalog
        assert len(catalog.list_items("h18c-del")) == 3

        rt.storage.delete("bronze://in/b/b.tif")
        reported = rerun(rt, submit(rt, "sync_container", params, restricted=True).job.job_id).result
        assert reported is not None
        gone = rt.storage.object_uri("bronze://in/b/b.tif")
        assert (reported["deleted"], reported["deleted_objects"], reported["removed"]) == (1, [gone], 0)
        assert reported["planned"] == 0 and len(catalog.list_items("h18c-del")) == 3  # reported, not removed

        removed = run(rt, "sync_container", {**params, "remove_deleted": True})
        assert (removed["deleted"], removed["removed"], removed["planned"]) == (1, 1, 0)
        left = catalog.list_items("h18c-del")
        assert len(left) == 2 and all("b_b" not in i["id"] for i in left)
        static = catalog.static.list_items("h18c-del")  # type: ignore[attr-defined]
        assert len(static) == 2
        cogs = [c for batch in rt.storage.list("silver://cogs/") for c in batch]
        assert cogs == []  # the COG made of b/b.tif went with it (a.tif and c.tif are catalogued in place)
        # ... and only the sync with remove_deleted forgot it: its next run reports nothing
        again = run(rt, "sync_container", {**params, "remove_deleted": True, "part_size": 1})
        assert (again["deleted"], again["planned"], again["unchanged"]) == (0, 0, 2)
    finally:
        rt.close()


def test_changed_local_file_is_synced_again_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Input class: a local folder; a file rewritten (new size/mtime) is changed, an empty folder deletes all."""
    rt = open_runtime(tmp_path, monkeypatch, {})
    try:
        folder = tmp_path / "scenes"
        (folder / "sub").mkdir(parents=True)
        raster(folder / "one.tif", cog=True)
        raster(folder / "sub" / "two.tif", cog=False)
        params = {"source": str(folder)}
        first = run(rt, "sync_container", params, restricted=False)
        assert (first["new"], first["synced"]) == (2, 2)
        raster(folder / "one.tif", cog=True, value=7)
        second_job = rerun(rt, first_job(rt, params))
        second = second_job.result
        assert second is not None and (second["changed"], second["unchanged"], second["synced"]) == (1, 1, 1)
        (folder / "sub" / "bad.tif").write_bytes(b"II*\x00 a truncated TIFF")  # a raster by name only
        fourth = run_until_finished(rt, resubmit(rt, second_job.job_id).job.job_id, 120)
        assert fourth.status.value == "completed_with_errors" and fourth.result is not None
        assert (fourth.result["new"], fourth.result["synced"], fourth.result["failed"]) == (1, 0, 1)
        [failed] = rt.store.list_tasks(fourth.job_id, stage=3)
        assert failed.error is not None and "bad.tif" in failed.error["message"]
        again = run_until_finished(rt, resubmit(rt, fourth.job_id).job.job_id, 120)
        assert again.result is not None and again.result["planned"] == 1  # never recorded: tried again
        for path in (folder / "one.tif", folder / "sub" / "two.tif", folder / "sub" / "bad.tif"):
            path.unlink()
        third = run(rt, "sync_container", {**params, "remove_deleted": True}, restricted=False)
        assert (third["deleted"], third["removed"], third["manifest"]["objects"]) == (2, 2, 0)
        assert rt.resources.catalog.list_items() == []
    finally:
        rt.close()


# ---------------------------------------------------------------------------------------------------- inventory


@pytest.mark.parametrize("backend", ["s3", "az", "local"])
def test_list_container_manifest_reads_back_in_key_order_with_filters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    """Input class: a nested prefix mixing rasters, vectors, sidecars and other files, on each backend."""
    if backend == "local":
        env, zones = {}, {}
    else:
        env = ensure_s3() if backend == "s3" else ensure_azurite()
        bucket = fresh_bucket("h18c-list") if backend == "s3" else fresh_container("h18c-list")
        zones = {"bronze_url": f"{backend}://{bucket}/bronze/", "silver_url": f"{backend}://{bucket}/silver/"}
    rt = open_runtime(tmp_path, monkeypatch, env, **zones)
    try:
        names = ["a-b.tif", "a/x.TIF", "a/x.tif.aux.xml", "b/roads.gpkg", "b/roads.zip", "notes.txt", "z.jp2"]
        for name in names:
            rt.storage.write_bytes(f"bronze://inv/{name}", name.encode())
        rt.storage.write_bytes("bronze://inventory-not-this/x.tif", b"beside the prefix")
        everything = run(rt, "list_container", {"source": "bronze://inv/", "part_size": 3})
        assert everything["objects"] == 7 and [p["count"] for p in everything["parts"]] == [3, 3, 1]
        assert everything["kinds"] == {"archive": 1, "other": 1, "raster": 3, "sidecar": 1, "vector": 1}
        lines = manifest_lines(rt, everything)
        assert [x["key"] for x in lines] == sorted(names)  # byte order: "a-b.tif" before "a/x.TIF"
        assert all(x["uri"] == rt.storage.object_uri(f"bronze://inv/{x['key']}") for x in lines)
        assert [x["size"] for x in lines] == [len(x["key"]) for x in lines]
        assert all((x["etag"] is None) == (backend == "local") and x["mtime"] for x in lines)
        assert everything["manifest_uri"].startswith("silver://container-manifests/")

        rasters = run(rt, "list_container", {"source": "bronze://inv/", "extensions": ["TIF", ".jp2"]})
        assert [x["key"] for x in manifest_lines(rt, rasters)] == ["a-b.tif", "a/x.TIF", "z.jp2"]
        globbed = run(rt, "list_container", {"source": "bronze://inv/", "pattern": "b/*"})
        assert [x["key"] for x in manifest_lines(rt, globbed)] == ["b/roads.gpkg", "b/roads.zip"]
        empty = run(rt, "list_container", {"source": "bronze://inv/", "pattern": "nothing*"})
        assert (empty["objects"], empty["parts"]) == (0, [])

        # names that say nothing: with sniff, the first bytes do (one range request; shorter objects too)
        for name, data in (("scan", b"II*\x00" + bytes(40)), ("blob", b"PK\x03\x04 zipped"), ("plain", b"text"),
                           ("t", b"MM"), (".hidden", b"II*\x00 hidden")):
            rt.storage.write_bytes(f"bronze://sniff/{name}", data)
        plain = run(rt, "list_container", {"source": "bronze://sniff/"})
        assert plain["kinds"] == {"other": 5}
        sniffed = run(rt, "list_container", {"source": "bronze://sniff/", "sniff": True})
        kinds = {x["key"]: x["kind"] for x in manifest_lines(rt, sniffed)}
        assert kinds == {".hidden": "other", "blob": "archive", "plain": "other", "scan": "raster", "t": "other"}
    finally:
        rt.close()


@pytest.mark.parametrize("backend", ["s3", "az", "local"])
def test_missing_bucket_or_folder_is_refused_at_submit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      backend: str) -> None:
    """Input class: a source whose bucket, container or folder does not exist: InvalidInput at once."""
    if backend == "local":
        rt = open_runtime(tmp_path, monkeypatch, {})
        source, match = "bronze://absent-folder/", "no such file or folder"
    else:
        env = ensure_s3() if backend == "s3" else ensure_azurite()
        bucket = fresh_bucket("h18c-bad") if backend == "s3" else fresh_container("h18c-bad")
        rt = open_runtime(tmp_path, monkeypatch, env, bronze_url=f"{backend}://{bucket}/bronze/")
        missing = f"h18c-missing-{int(time.time() * 1000)}"
        rt.settings = rt.settings.model_copy(update={"source_roots": [f"{backend}://{missing}/"]})
        what = "bucket" if backend == "s3" else "container"
        source, match = f"{backend}://{missing}/scenes/", f"the {what} '{missing}' does not exist"
    try:
        for job_type in ("list_container", "sync_container"):
            started = time.monotonic()
            with pytest.raises(InvalidInput, match=match):
                submit(rt, job_type, {"source": source}, restricted=True)
            assert time.monotonic() - started < 10
    finally:
        rt.close()


def test_catalog_file_describes_a_cog_in_place_without_rewriting_it_s3(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Input class: a COG in a bucket: one STAC item whose asset is the object itself; nothing written beside."""
    env = ensure_s3()
    bucket = fresh_bucket("h18c-cat")
    rt = open_runtime(tmp_path, monkeypatch, env, bronze_url=f"s3://{bucket}/bronze/",
                      silver_url=f"s3://{bucket}/silver/")
    try:
        rt.storage.put_file(raster(tmp_path / "cog.tif", cog=True), "bronze://cogs/scene.tif")
        before = rt.storage.stat("bronze://cogs/scene.tif")
        result = run(rt, "catalog_file", {"source": "bronze://cogs/scene.tif", "collection_id": "h18c-cat"})
        assert result["is_cog"] is True and result["item_id"] == "scene"
        assert result["href"] == f"s3://{bucket}/bronze/cogs/scene.tif"
        item = rt.resources.catalog.get_item("scene", "h18c-cat")
        assert item is not None and item["assets"]["data"]["href"] == result["href"]
        assert item["assets"]["data"]["type"].startswith("image/tiff; application=geotiff; profile=cloud-optimized")
        assert item["properties"]["proj:epsg"] == 32631
        after = rt.storage.stat("bronze://cogs/scene.tif")
        assert (after.etag, after.size) == (before.etag, before.size)  # not rewritten
        assert [o.uri for batch in rt.storage.list(f"s3://{bucket}/") for o in batch] == [before.uri]
    finally:
        rt.close()


def test_container_source_follows_the_path_policy_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Input class: sources outside the zones and GEOMILL_SOURCE_ROOTS, over HTTP (restricted) and the CLI."""
    env = ensure_s3()
    bucket, other = fresh_bucket("h18c-pol"), fresh_bucket("h18c-pol-other")
    rt = open_runtime(tmp_path, monkeypatch, env, bronze_url=f"s3://{bucket}/bronze/")
    try:
        for source, match in ((f"s3://{other}/scenes/", "outside the allowed buckets"),
                              ("https://example.org/scenes/", "HTTPS"), ("/etc/", "outside the allowed roots"),
                              ("bronze://../escape/", "escapes the bronze zone")):
            for job_type in ("list_container", "sync_container"):
                with pytest.raises(InvalidInput, match=match):
                    submit(rt, job_type, {"source": source}, restricted=True)
        assert submit(rt, "sync_container", {"source": f"s3://{other}/scenes/"}, restricted=False).created
        assert submit(rt, "list_container", {"source": f"s3://{bucket}/bronze/"}, restricted=True).created
        with pytest.raises(InvalidInput, match="no such object"):
            submit(rt, "catalog_file", {"source": "bronze://absent.tif"}, restricted=True)
    finally:
        rt.close()


# ---------------------------------------------------------------------------------------------------- vectors + mosaic


def _geojson(n: int) -> bytes:
    features = [{"type": "Feature", "properties": {"name": f"p{i}", "rank": i},
                 "geometry": {"type": "Point", "coordinates": [6.0 + i / 100, 46.0 + i / 100]}} for i in range(n)]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def _zipped_shapefile(folder: Path, n: int) -> bytes:
    """A zip of a polygon shapefile (.shp, .shx, .dbf, .prj) of `n` squares in EPSG:32631, written by pyogrio."""
    import zipfile

    import pyarrow as pa
    import pyogrio
    import shapely

    folder.mkdir()
    squares = [shapely.box(400000 + 100 * i, 5490000, 400050 + 100 * i, 5490050) for i in range(n)]
    table = pa.table({"code": pa.array([f"c{i}" for i in range(n)]),
                      "geometry": pa.array(shapely.to_wkb(squares, byte_order=1), type=pa.binary())})
    pyogrio.write_arrow(table, str(folder / "parcels.shp"), driver="ESRI Shapefile", geometry_name="geometry",
                        geometry_type="Polygon", crs="EPSG:32631")
    out = folder / "parcels.zip"
    with zipfile.ZipFile(out, "w") as z:
        for part in sorted(folder.glob("parcels.*")):
            if part.suffix != ".zip":
                z.write(part, part.name)
    return out.read_bytes()


def test_sync_loads_vector_files_and_mosaics_compatible_rasters_s3_postgis(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    """Input class: a bucket prefix of 2 compatible rasters (a COG, a striped GeoTIFF), a GeoJSON and a zipped
    shapefile, synced with load_vectors into PostGIS; then unchanged; then the GeoJSON rewritten with fewer
    features."""
    import psycopg

    env = ensure_s3()
    bucket = fresh_bucket("h18s-vec")
    rt = open_runtime(tmp_path, monkeypatch, env, database_url=pg_url, bronze_url=f"s3://{bucket}/bronze/",
                      silver_url=f"s3://{bucket}/silver/")

    def rows(table: str) -> int:
        with psycopg.connect(pg_url) as conn:
            found = conn.execute(f"SELECT count(*) FROM h18s_vec.{table}").fetchone()
        assert found is not None
        return int(found[0])

    try:
        asyncio.run(_put_all(s3_store(bucket), {
            "bronze/drop/a.tif": raster(tmp_path / "a.tif", cog=True).read_bytes(),
            "bronze/drop/b/b.tif": raster(tmp_path / "b.tif", cog=False, value=1).read_bytes(),
            "bronze/drop/points.geojson": _geojson(5),
            "bronze/drop/parcels.zip": _zipped_shapefile(tmp_path / "shp", 3),
            "bronze/drop/readme.txt": b"not geospatial",
        }))
        params = {"source": "bronze://drop/", "collection_id": "h18s-drop", "load_vectors": True,
                  "vector_schema": "h18s_vec"}
        first = run(rt, "sync_container", params, timeout=180)
        assert (first["new"], first["planned"], first["synced"], first["failed"]) == (4, 4, 4, 0)
        assert (rows("points"), rows("parcels")) == (5, 3)
        assert len(rt.resources.catalog.list_items("h18s-drop")) == 2  # the rasters; the tables in geomill-vectors
        mosaic = first["mosaic"]
        assert mosaic["skipped"] is None and mosaic["rasters"] == 2
        with rasterio.open(rt.storage.gdal_path(mosaic["vrt_uri"])) as vrt:  # its sources: /vsis3/ COGs
            assert (vrt.count, vrt.crs.to_epsg(), vrt.res, vrt.height) == (1, 32631, (20.0, 20.0), 520)
            assert vrt.width == 500 + 600  # b.tif starts 10 km (500 pixels) east of a.tif
            row = vrt.read(1, window=((0, 1), (0, vrt.width)))[0]
        assert (int(row[1]), int(row[-1])) == (1, 600)  # a.tif's pixel (0, 1); b.tif's last (0, 599) + 1
        assert json.loads(rt.storage.read_bytes(mosaic["mosaicjson_uri"]))["tiles"]

        second = rerun(rt, submit(rt, "sync_container", params, restricted=True).job.job_id)  # the same params
        assert second.result is not None
        assert (second.result["planned"], second.result["unchanged"], second.result["mosaic"]) == (0, 4, None)
        assert len(rt.store.list_tasks(second.job_id)) == 2  # the listing and one diff: no file, no mosaic

        asyncio.run(_put_all(s3_store(bucket), {"bronze/drop/points.geojson": _geojson(2)}))
        third = rerun(rt, second.job_id).result
        assert third is not None
        assert (third["changed"], third["planned"], third["synced"], third["mosaic"]) == (1, 1, 1, None)
        assert (rows("points"), rows("parcels")) == (2, 3)
    finally:
        rt.close()


def test_sync_of_incompatible_rasters_skips_the_mosaic_and_loads_vectors_into_geopackages_local(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Input class: a local folder of two rasters of different CRS and data type and a GeoJSON; embedded mode
    (SQLite store, GeoPackage vector sink)."""
    import pyogrio

    folder = tmp_path / "drop"
    folder.mkdir()
    raster(folder / "utm.tif", cog=True)
    with rasterio.open(folder / "wgs84.tif", "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=Affine(0.01, 0, 6.0, 0, -0.01, 47.0)) as ds:
        ds.write(np.ones((1, 64, 64), dtype=np.uint8))
    (folder / "points.geojson").write_bytes(_geojson(4))
    rt = open_runtime(tmp_path, monkeypatch, {})
    try:
        params = {"source": str(folder), "collection_id": "h18s-mixed", "load_vectors": True}
        first = run(rt, "sync_container", params, restricted=False)
        assert (first["planned"], first["synced"], first["failed"]) == (3, 3, 0)
        mosaic = first["mosaic"]
        assert mosaic["rasters"] == 2 and mosaic["vrt_uri"] is None
        assert "incompatible rasters" in mosaic["skipped"] and "CRS" in mosaic["skipped"]
        assert not any(batch for batch in rt.storage.list("silver://mosaics/"))  # no mosaic written
        gpkg = rt.storage.local_path("silver://vector/geo/points.gpkg")
        assert pyogrio.read_info(gpkg)["features"] == 4
    finally:
        rt.close()
