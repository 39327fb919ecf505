"""process_vector with sources and products in object storage (moto's S3 server, Azurite).

Input classes: a zipped shapefile and a two-layer GeoPackage in S3 (fetched to scratch, then read), a GeoJSON (read
in place through /vsiaz/) and a shapefile given as its .shp with its sidecars beside it (fetched) in Azure Blob,
loaded into PostGIS; a GeoPackage product (embedded mode) published into a remote silver zone from a local and from
an S3 source. Refused at once: a missing object, a zip without a vector file, a shapefile without its .dbf. Every
test checks that nothing is left in local scratch.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import psycopg
import pyogrio
import pytest
import shapely

import samples
from geomill.catalog.base import open_catalog
from geomill.domain import InvalidInput, JobStatus
from geomill.runtime import Runtime
from geomill.service.submit import submit
from geomill.sinks.geopackage import GeoPackageSink
from geomill.tasks.vector.models import VectorLoad
from services import ensure_azurite, ensure_s3, fresh_bucket, fresh_container
from vector_helpers import feature, open_runtime, run_vector_job, write_geojson, write_points_gpkg

SHAPEFILE = "coutwildrnp"  # tests/data/vector: 67 polygons, EPSG:4326, with .prj and .cpg
SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


def remote_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, database_url: str | None,
                   *, remote_bronze: bool = True) -> Runtime:
    """A runtime whose silver zone (and bronze, unless told otherwise) is a fresh bucket or container."""
    env = ensure_s3() if backend == "s3" else ensure_azurite()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = fresh_bucket("h18v-vec") if backend == "s3" else fresh_container("h18v-vec")
    zones = {"silver_url": f"{backend}://{bucket}/silver/"}
    if remote_bronze:
        zones["bronze_url"] = f"{backend}://{bucket}/bronze/"
    return open_runtime(tmp_path / "data", database_url, **zones)


def no_local_leftovers(rt: Runtime) -> None:
    """The scratch space is empty and no chunk, GeoPackage or temporary file stayed in the data folder."""
    scratch = rt.storage.scratch_dir()
    assert not scratch.exists() or not any(scratch.iterdir()), list(scratch.rglob("*"))
    bronze = rt.storage.root / "bronze"  # a local source stays where it is
    stray = [p for p in rt.storage.root.rglob("*") if p.is_file() and bronze not in p.parents
             and p.suffix in (".parquet", ".gpkg", ".tmp", ".zip", ".shp", ".geojson")]
    assert not stray, stray


def sample(name: str) -> Path:
    return samples.data("vector") / name


def zipped_shapefile(tmp_path: Path) -> Path:
    path = tmp_path / f"{SHAPEFILE}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for ext in SIDECARS:
            zf.write(sample(SHAPEFILE + ext), f"{SHAPEFILE}{ext}")
    return path


def sql(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as con:
        return con.execute(query).fetchall()


def test_s3_zipped_shapefile_into_postgis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    """Input class: a zipped shapefile (deflated) in an S3 bucket; chunks go to the S3 silver zone."""
    rt = remote_runtime(tmp_path, monkeypatch, "s3", pg_url)
    try:
        rt.storage.put_file(zipped_shapefile(tmp_path), "bronze://h18v/wild areas.zip")
        params = {"source": "bronze://h18v/wild areas.zip", "table": "wild"}
        submitted = submit(rt, "process_vector", params, restricted=True).job  # as over HTTP: the path policy
        job = run_vector_job(rt, **params)  # the same parameters: the same job, run by an in-process worker
        assert job.job_id == submitted.job_id
        assert job.status is JobStatus.COMPLETED, job.error
        local = pyogrio.read_dataframe(sample(f"{SHAPEFILE}.shp"))
        count, srid, area = sql(pg_url, "SELECT count(*), min(ST_SRID(geom)), sum(ST_Area(geom)) FROM geo.wild")[0]
        assert (count, srid) == (67, 4326)
        assert area == pytest.approx(float(shapely.area(local.geometry.values).sum()), rel=1e-9)
        names = sql(pg_url, "SELECT name FROM geo.wild ORDER BY fid LIMIT 2")
        assert [n for (n,) in names] == list(local["NAME"][:2])
        chunks = [o.uri for batch in rt.storage.list("silver://vector/") for o in batch]
        assert chunks and all(u.startswith("s3://") and u.endswith(".parquet") for u in chunks)
        no_local_leftovers(rt)
    finally:
        rt.close()


def test_s3_geopackage_with_two_layers_into_postgis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     pg_url: str) -> None:
    """Input class: a GeoPackage in S3 with two layers (3,000 points; 67 polygons), all loaded with layer='*'
    (fetched to scratch: SQLite needs random access); a '!' and ';' in the object's name."""
    rt = remote_runtime(tmp_path, monkeypatch, "s3", pg_url)
    try:
        gpkg = tmp_path / "pts.gpkg"
        sx, sy, _ = write_points_gpkg(gpkg, 3000)
        pyogrio.write_dataframe(pyogrio.read_dataframe(sample(f"{SHAPEFILE}.shp")), gpkg, layer="wild")
        rt.storage.put_file(gpkg, "bronze://h18v/two!layers;v1.gpkg")
        job = run_vector_job(rt, source="bronze://h18v/two!layers;v1.gpkg", table="two", layer="*",
                             chunk_rows=1000)
        assert job.status is JobStatus.COMPLETED, job.error
        assert job.result is not None and job.result["chunks"] == 4
        count, x, y = sql(pg_url, "SELECT count(*), sum(ST_X(geom)), sum(ST_Y(geom)) FROM geo.two_points")[0]
        assert count == 3000 and x == pytest.approx(sx) and y == pytest.approx(sy)
        assert sql(pg_url, "SELECT count(*), min(ST_SRID(geom)) FROM geo.two_wild")[0] == (67, 4326)
        no_local_leftovers(rt)
    finally:
        rt.close()


def test_azure_geojson_and_shapefile_with_sidecars_into_postgis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                pg_url: str) -> None:
    """Input classes: a GeoJSON with spaces, "?", "#", "!", ";" and non-ASCII in its blob name, and a shapefile
    given as its .shp with .shx/.dbf/.prj/.cpg beside it, in Azure Blob (the GeoJSON read in place through /vsiaz/,
    the shapefile's five objects fetched)."""
    rt = remote_runtime(tmp_path, monkeypatch, "az", pg_url)
    try:
        features = [feature("POLYGON ((0 0, 2 0, 2 2, 0 2, 0 0))", name="a"),
                    feature("POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))", name="bowtie")]  # self-intersecting: repaired
        name = "h18v/pärcels #1 what?!;.geojson"
        rt.storage.put_file(write_geojson(tmp_path / "p.geojson", features, "EPSG:2056"), f"bronze://{name}")
        for ext in SIDECARS:
            rt.storage.put_file(sample(SHAPEFILE + ext), f"bronze://h18v/shapes/{SHAPEFILE}{ext}")

        job = run_vector_job(rt, source=f"bronze://{name}", table="parcels")
        assert job.status is JobStatus.COMPLETED, job.error
        assert job.result is not None and job.result["repaired"] == 1
        rows = sql(pg_url, "SELECT name, ST_SRID(geom), ST_IsValid(geom), ST_Area(geom) FROM geo.parcels ORDER BY fid")
        assert rows == [("a", 2056, True, 4.0), ("bowtie", 2056, True, 0.5)]

        features.append(feature("POINT (5 5)", name="new"))  # the object replaced: the same worker reads it anew
        rt.storage.put_file(write_geojson(tmp_path / "p.geojson", features, "EPSG:2056"), f"bronze://{name}")
        job = run_vector_job(rt, source=f"bronze://{name}", table="parcels", if_exists="replace")
        assert job.status is JobStatus.COMPLETED, job.error
        assert sql(pg_url, "SELECT string_agg(name, ',' ORDER BY fid) FROM geo.parcels") == [("a,bowtie,new",)]

        job = run_vector_job(rt, source=f"bronze://h18v/shapes/{SHAPEFILE}.shp")
        assert job.status is JobStatus.COMPLETED, job.error
        assert sql(pg_url, f"SELECT count(*), min(ST_SRID(geom)) FROM geo.{SHAPEFILE}")[0] == (67, 4326)
        no_local_leftovers(rt)
    finally:
        rt.close()


def read_back(rt: Runtime, uri: str, tmp_path: Path, table: str):
    """The GeoPackage product read back from the bucket (a download, then pyogrio)."""
    where = rt.storage.object_uri(uri)
    assert where.startswith(("s3://", "az://")), where
    return pyogrio.read_dataframe(rt.storage.fetch(uri, tmp_path / "back" / "out.gpkg"), layer=table)


@pytest.mark.parametrize("source_backend", ["local", "s3"], ids=["local-to-s3", "s3-to-s3"])
def test_geopackage_product_is_published_into_remote_silver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            source_backend: str) -> None:
    """Embedded mode (SQLite): the .gpkg product lands in the S3 silver zone (staged locally, one atomic put);
    its STAC asset is the object's URI; append fetches it, adds the rows and puts it back."""
    rt = remote_runtime(tmp_path, monkeypatch, "s3", None, remote_bronze=source_backend == "s3")
    try:
        sx, _, _ = write_points_gpkg(tmp_path / "pts.gpkg", 2500)
        rt.storage.put_file(tmp_path / "pts.gpkg", "bronze://h18v/pts.gpkg")
        assert rt.storage.is_remote("bronze://h18v/pts.gpkg") == (source_backend == "s3")
        job = run_vector_job(rt, source="bronze://h18v/pts.gpkg", chunk_rows=1000)
        assert job.status is JobStatus.COMPLETED, job.error
        assert job.result is not None
        [table] = job.result["tables"]
        assert table["location"] == "silver://vector/geo/pts.gpkg" and table["feature_count"] == 2500
        back = read_back(rt, table["location"], tmp_path, "pts")
        assert len(back) == 2500 and back.geometry.x.sum() == pytest.approx(sx)
        item = open_catalog(rt.storage, None).get_item(table["item_id"], table["collection_id"])
        assert item is not None and item["assets"]["data"]["href"] == rt.storage.object_uri(table["location"])
        [fin] = [t for t in rt.store.list_tasks(job.job_id) if t.task_type == "vector.finalize"]
        rerun = GeoPackageSink(rt.storage).swap_into_place(VectorLoad.model_validate(fin.params["load"]), list)
        assert rerun.count == 2500  # a finalize run again after the swap finds the product in place
        no_local_leftovers(rt)

        again = run_vector_job(rt, source="bronze://h18v/pts.gpkg", chunk_rows=1000, if_exists="append")
        assert again.status is JobStatus.COMPLETED, again.error
        back = read_back(rt, table["location"], tmp_path, "pts")
        assert len(back) == 5000 and back.geometry.x.sum() == pytest.approx(2 * sx)
        no_local_leftovers(rt)

        refused = run_vector_job(rt, source="bronze://h18v/pts.gpkg", table="pts")  # if_exists=fail
        assert refused.status is JobStatus.FAILED and "already exists" in refused.error["message"]
    finally:
        rt.close()


@pytest.mark.parametrize("case", ["missing object", "zip without a vector file", "shapefile without its .dbf"])
def test_bad_remote_sources_fail_at_once_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         case: str) -> None:
    """Input classes: an object that does not exist; a zip in the bucket holding only a text file; a .shp whose
    .shx is beside it but not its .dbf."""
    rt = remote_runtime(tmp_path, monkeypatch, "s3", None)
    try:
        name, reason = "h18v/absent.gpkg", "no such object"
        with pytest.raises(InvalidInput, match="absent.gpkg"):  # over HTTP: refused at submit (one HEAD)
            submit(rt, "process_vector", {"source": f"bronze://{name}"}, restricted=True)
        if case.startswith("zip"):
            name, reason = "h18v/notes.zip", "holds no vector file (found: readme.txt)"
            with zipfile.ZipFile(tmp_path / "notes.zip", "w") as zf:
                zf.writestr("readme.txt", "no shapefile here")
            rt.storage.put_file(tmp_path / "notes.zip", f"bronze://{name}")
        elif case.startswith("shapefile"):
            name, reason = f"h18v/{SHAPEFILE}.shp", "is incomplete: missing .dbf"
            for ext in (".shp", ".shx"):
                rt.storage.put_file(sample(SHAPEFILE + ext), f"bronze://h18v/{SHAPEFILE}{ext}")
        job = run_vector_job(rt, source=f"bronze://{name}")
        assert job.status is JobStatus.FAILED
        message = job.error["message"]
        assert "InvalidInput" in message and name in message and reason in message, message
        assert max(t.attempt for t in rt.store.list_tasks(job.job_id)) == 1  # never retried
        no_local_leftovers(rt)
    finally:
        rt.close()


def test_a_changed_object_gets_new_chunk_names() -> None:
    """Idempotence of a remote source: the load key (chunk folder, staging name) holds its size and etag."""
    from datetime import UTC, datetime

    from geomill.storage.objects import ObjectStat
    from geomill.tasks.vector.models import VectorOptions
    from geomill.tasks.vector.prepare import load_key

    params = VectorOptions(source="s3://bucket/a.gpkg")
    when = datetime(2026, 1, 1, tzinfo=UTC)
    v1, v2 = (ObjectStat("s3://bucket/a.gpkg", 10, etag, when) for etag in ('"e1"', '"e2"'))
    assert load_key(params, 0, v1) == load_key(params, 0, v1)
    assert len({load_key(params, 0, v1), load_key(params, 0, v2), load_key(params, 0)}) == 3
