"""process_vector with sources and products in object storage (moto's S3 server, Azurite).

Input classes: a zipped shapefile and a GeoPackage in S3 (fetched to scratch, then read), a GeoJSON and a shapefile
given as its .shp with its sidecars beside it in Azure Blob (read in place through /vsiaz/), loaded into PostGIS; a
GeoPackage product (embedded mode) published into a remote silver zone from a local and from an S3 source. Refused
at once: a missing object, a zip without a vector file. Every test checks that nothing is left in local scratch.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import psycopg
import pyogrio
import pytest
import shapely

import samples
from geomill.domain import JobStatus
from geomill.runtime import Runtime
from services import ensure_azurite, ensure_s3, fresh_bucket, fresh_container
from vector_helpers import open_runtime, run_vector_job, write_points_gpkg

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
    stray = [p for p in rt.storage.root.rglob("*") if p.is_file() and p.suffix in (".parquet", ".gpkg", ".tmp",
                                                                                      ".zip", ".shp", ".geojson")]
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
        job = run_vector_job(rt, source="bronze://h18v/wild areas.zip", table="wild")
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


def test_s3_geopackage_into_postgis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    """Input class: a GeoPackage of 3,000 points in S3 (fetched to scratch: SQLite needs random access)."""
    rt = remote_runtime(tmp_path, monkeypatch, "s3", pg_url)
    try:
        sx, sy, _ = write_points_gpkg(tmp_path / "pts.gpkg", 3000)
        rt.storage.put_file(tmp_path / "pts.gpkg", "bronze://h18v/pts.gpkg")
        job = run_vector_job(rt, source="bronze://h18v/pts.gpkg", chunk_rows=1000)
        assert job.status is JobStatus.COMPLETED, job.error
        assert job.result is not None and job.result["chunks"] == 3
        count, x, y = sql(pg_url, "SELECT count(*), sum(ST_X(geom)), sum(ST_Y(geom)) FROM geo.pts")[0]
        assert count == 3000 and x == pytest.approx(sx) and y == pytest.approx(sy)
        no_local_leftovers(rt)
    finally:
        rt.close()
