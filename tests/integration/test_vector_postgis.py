"""process_vector into PostGIS with the real engine: the shared samples, if_exists, mixed types, repairs, failed
uploads leaving nothing behind, SQL injection refused, and 1,000,000 points by two worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pyogrio
import pytest
from pydantic import ValidationError

from geomill.catalog.base import open_catalog
from geomill.catalog.validation import validate_item_dict
from geomill.domain import InvalidInput, JobStatus
from geomill.jobs.vector import ProcessVectorParams
from procs import geomill_env, start_worker, stop, submit, tasks, wait_terminal
from vector_helpers import (
    SAMPLES,
    copy_samples,
    feature,
    open_runtime,
    run_vector_job,
    write_geojson,
    write_points_gpkg,
)

pytestmark = pytest.mark.usefixtures("postgres_server")


@pytest.fixture
def rt(tmp_path: Path, pg_url: str):
    runtime = open_runtime(tmp_path / "data", pg_url)
    yield runtime
    runtime.close()


def bronze(rt) -> Path:
    return rt.storage.zone_path("bronze")


def sql(url: str, query: str, *args: object) -> list[tuple]:
    with psycopg.connect(url) as con:
        return con.execute(query, args).fetchall()


def geo_tables(url: str) -> set[str]:
    return {r[0] for r in sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'geo'")}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_vectors_load_into_postgis(name: str, rt, pg_url: str) -> None:
    copy_samples(bronze(rt))
    job = run_vector_job(rt, source=f"bronze://{name}")
    assert job.status is JobStatus.COMPLETED, job.error
    table = Path(name).stem
    expected = pyogrio.read_info(bronze(rt) / name, force_total_bounds=True)
    count, srid, xmin, ymin, xmax, ymax = sql(pg_url, f"""SELECT count(*), min(ST_SRID(geom)), ST_XMin(ST_Extent(geom)),
        ST_YMin(ST_Extent(geom)), ST_XMax(ST_Extent(geom)), ST_YMax(ST_Extent(geom)) FROM geo.{table}""")[0]
    assert count == SAMPLES[name] == expected["features"]
    assert srid == 4326
    assert [xmin, ymin, xmax, ymax] == pytest.approx(list(expected["total_bounds"]), abs=1e-4)
    # layout: primary key, GiST index, catalog row; no staging left
    indexes = {r[0] for r in sql(pg_url, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'geo' "
                                         "AND tablename = %s", table)}
    assert any("USING gist (geom)" in d for d in indexes) and any("(fid)" in d and "UNIQUE" in d for d in indexes)
    assert geo_tables(pg_url) == {table, "geomill_vector_catalog"}
    row = sql(pg_url, "SELECT feature_count, srid, bbox, geometry_type, source FROM geo.geomill_vector_catalog "
                      "WHERE table_name = %s", table)[0]
    assert row[0] == count and row[1] == 4326 and row[2] == pytest.approx([xmin, ymin, xmax, ymax])
    assert row[3] in ("POLYGON", "MULTIPOLYGON") and row[4] == f"bronze://{name}"
    out = job.result["tables"][0]
    item = open_catalog(rt.storage, pg_url).get_item(out["item_id"], out["collection_id"])
    assert item is not None and item["id"] == f"geo.{table}"
    validate_item_dict(item)
    assert item["bbox"] == pytest.approx([xmin, ymin, xmax, ymax], abs=1e-4)
    assert item["properties"]["proj:epsg"] == 4326 and item["properties"]["geomill:feature_count"] == count
    assert "postgres@" not in json.dumps(item)  # no credentials in the catalog


def test_attribute_names_are_made_safe_and_reported(rt, pg_url: str) -> None:
    copy_samples(bronze(rt))
    job = run_vector_job(rt, source="bronze://grenada.geojson", table="grenada_safe")
    assert job.status is JobStatus.COMPLETED, job.error
    mapping = job.result["column_mapping"]["grenada_safe"]
    assert mapping["name:en"] == "name_en" and mapping["ISO3166-1:alpha2"] == "iso3166_1_alpha2"
    assert sql(pg_url, "SELECT name_en FROM geo.grenada_safe")[0][0] == "Grenada"


def test_existing_table_is_refused_unless_replace_or_append(rt, pg_url: str) -> None:
    copy_samples(bronze(rt))
    assert run_vector_job(rt, source="bronze://coutwildrnp.shp", table="wild").status is JobStatus.COMPLETED
    again = run_vector_job(rt, source="bronze://coutwildrnp.shp", table="wild", layer="coutwildrnp")
    assert again.status is JobStatus.FAILED
    assert "geo.wild already exists" in again.error["message"] and "if_exists" in again.error["message"]
    assert sql(pg_url, "SELECT count(*) FROM geo.wild")[0][0] == 67
    appended = run_vector_job(rt, source="bronze://coutwildrnp.shp", table="wild", if_exists="append")
    assert appended.status is JobStatus.COMPLETED, appended.error
    assert sql(pg_url, "SELECT count(*), count(DISTINCT fid) FROM geo.wild")[0] == (134, 134)
    replaced = run_vector_job(rt, source="bronze://coutwildrnp.shp", table="wild", if_exists="replace")
    assert replaced.status is JobStatus.COMPLETED, replaced.error
    assert sql(pg_url, "SELECT count(*) FROM geo.wild")[0][0] == 67
    assert sql(pg_url, "SELECT feature_count FROM geo.geomill_vector_catalog WHERE table_name = 'wild'")[0][0] == 67
    assert geo_tables(pg_url) == {"wild", "geomill_vector_catalog"}


def _mixed(path: Path) -> Path:
    return write_geojson(path, [
        feature("POINT (1 1)", kind="a"), feature("MULTIPOINT (2 2, 3 3)", kind="b"),
        feature("POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))", kind="bowtie"),  # invalid: repaired
        feature("POLYGON ((0 0, 4 0, 4 4, 0 4, 0 0))", kind="square"),
        feature("LINESTRING (0 0, 5 5)", kind="line")])


def test_mixed_types_split_into_one_table_per_family(rt, pg_url: str) -> None:
    _mixed(bronze(rt) / "mixed.geojson")
    job = run_vector_job(rt, source="bronze://mixed.geojson", geometry_mode="split")
    assert job.status is JobStatus.COMPLETED, job.error
    types = dict(sql(pg_url, "SELECT f_table_name, type FROM geometry_columns WHERE f_table_schema = 'geo'"))
    assert types == {"mixed_points": "MULTIPOINT", "mixed_polygons": "MULTIPOLYGON", "mixed_lines": "LINESTRING"}
    assert sql(pg_url, "SELECT count(*), bool_and(ST_IsValid(geom)) FROM geo.mixed_polygons")[0] == (2, True)
    assert sql(pg_url, "SELECT count(*) FROM geo.mixed_points")[0][0] == 2
    assert job.result["repaired"] == 1


def test_mixed_types_promote_into_one_generic_table(rt, pg_url: str) -> None:
    _mixed(bronze(rt) / "mixed.geojson")
    job = run_vector_job(rt, source="bronze://mixed.geojson")
    assert job.status is JobStatus.COMPLETED, job.error
    assert sql(pg_url, "SELECT type FROM geometry_columns WHERE f_table_name = 'mixed'")[0][0] == "GEOMETRY"
    assert sql(pg_url, "SELECT count(*), bool_and(ST_IsValid(geom)) FROM geo.mixed")[0] == (5, True)
    assert sql(pg_url, "SELECT repaired_geometries FROM geo.geomill_vector_catalog")[0][0] == 1


def test_polygons_and_multipolygons_are_promoted_to_multi(rt, pg_url: str) -> None:
    write_geojson(bronze(rt) / "parcels.geojson", [
        feature("POLYGON ((0 0, 1 0, 1 1, 0 0))"), feature("MULTIPOLYGON (((2 2, 3 2, 3 3, 2 2)))")])
    job = run_vector_job(rt, source="bronze://parcels.geojson")
    assert job.status is JobStatus.COMPLETED, job.error
    assert sql(pg_url, "SELECT DISTINCT GeometryType(geom) FROM geo.parcels") == [("MULTIPOLYGON",)]


def test_failed_upload_leaves_nothing_behind_and_the_old_table_intact(rt, pg_url: str, monkeypatch) -> None:
    copy_samples(bronze(rt))
    assert run_vector_job(rt, source="bronze://coutwildrnp.shp", table="keep").status is JobStatus.COMPLETED
    from geomill.tasks.vector import upload

    def broken(*args, **kwargs):
        raise InvalidInput("simulated: chunk unreadable", field="chunk")

    monkeypatch.setattr(upload, "read_chunk", broken)
    job = run_vector_job(rt, source="bronze://grenada.geojson", table="keep", if_exists="replace")
    assert job.status is JobStatus.FAILED
    assert "simulated: chunk unreadable" in job.error["message"] and "staging dropped" in job.error["message"]
    assert geo_tables(pg_url) == {"keep", "geomill_vector_catalog"}  # staging dropped
    assert sql(pg_url, "SELECT count(*) FROM geo.keep")[0][0] == 67  # the final table untouched


def test_upload_rerun_replaces_its_own_rows(rt, pg_url: str) -> None:
    """Running an upload task twice (a retried attempt after its commit) does not duplicate its rows."""
    from geomill.tasks.vector.finalize import FinalizeParams, finalize_vector
    from geomill.tasks.vector.prepare import PrepareVectorParams, prepare_vector
    from geomill.tasks.vector.upload import UploadParams, upload_chunk

    copy_samples(bronze(rt))
    ctx = rt.resources.context("t", "j", 1, 2)
    prepared = prepare_vector(PrepareVectorParams(source="bronze://coutwildrnp.shp", chunk_rows=1000), ctx)
    load = prepared.loads[0]
    for _ in range(3):
        upload_chunk(UploadParams(target=load.target, chunk=load.chunks[0]), ctx)
    finalize_vector(FinalizeParams(load=load, uploaded_rows=67), ctx)
    assert sql(pg_url, "SELECT count(*), count(DISTINCT fid) FROM geo.coutwildrnp")[0] == (67, 67)


def test_cancelled_upload_drops_the_staging_table(rt, pg_url: str) -> None:
    from geomill.domain import TaskError
    from geomill.tasks.vector.prepare import PrepareVectorParams, prepare_vector
    from geomill.tasks.vector.upload import UploadParams, upload_chunk

    copy_samples(bronze(rt))
    ctx = rt.resources.context("t", "j", 1, 1)
    load = prepare_vector(PrepareVectorParams(source="bronze://rmnp.geojson"), ctx).loads[0]
    assert load.target.staging in geo_tables(pg_url)
    cancelled = rt.resources.context("t", "j", 2, 1, _cancelled=lambda: True)
    with pytest.raises(TaskError, match="cancelled"):
        upload_chunk(UploadParams(target=load.target, chunk=load.chunks[0]), cancelled)
    assert geo_tables(pg_url) == {"geomill_vector_catalog"}


@pytest.mark.parametrize("table", ['x"; DROP TABLE geo.keep; --', "Robert'); DROP TABLE students;--", "a b",
                                   "pg_catalog", "select", "x" * 64, "Upper"])
def test_sql_injection_in_the_table_name_is_refused(table: str, rt, pg_url: str) -> None:
    with pytest.raises(ValidationError, match="table"):
        ProcessVectorParams(source="bronze://a.shp", table=table)
    with pytest.raises(InvalidInput, match="table"):
        rt.orchestrator.submit("process_vector", {"source": "bronze://a.shp", "table": table})
    with pytest.raises(InvalidInput, match="schema"):
        rt.orchestrator.submit("process_vector", {"source": "bronze://a.shp", "schema": 'geo"; DROP SCHEMA x; --'})
    assert sql(pg_url, "SELECT count(*) FROM jobs")[0][0] == 0  # refused before anything was stored


@pytest.mark.slow
def test_a_million_points_load_in_parallel_chunks_by_two_worker_processes(tmp_path: Path, pg_url: str) -> None:
    data = tmp_path / "d"
    (data / "bronze").mkdir(parents=True)
    sx, sy, md5 = write_points_gpkg(data / "bronze" / "points.gpkg", 1_000_000)
    env = geomill_env(data, pg_url, janitor_interval_seconds=1, prefetch=1)
    job_id = submit(env, "process_vector", source="bronze://points.gpkg", chunk_rows=125_000)
    workers = [start_worker(env, 1), start_worker(env, 1)]
    try:
        doc = wait_terminal(env, job_id, timeout=600)
    finally:
        stop(*workers)
    assert doc["status"] == "completed", doc
    uploads = [t for t in tasks(env, job_id) if t["task_type"] == "vector.upload"]
    assert len(uploads) == 8 and {t["status"] for t in uploads} == {"completed"}
    assert len({t["executed_by_app"] for t in uploads}) == 2  # both worker processes loaded chunks
    count, fids, x, y = sql(pg_url, "SELECT count(*), count(DISTINCT fid), sum(ST_X(geom)), sum(ST_Y(geom)) "
                                    "FROM geo.points")[0]
    assert count == fids == 1_000_000
    assert x == pytest.approx(sx, abs=1e-3) and y == pytest.approx(sy, abs=1e-3)
    loaded = sql(pg_url, "SELECT md5(string_agg(ST_AsBinary(geom, 'NDR'), ''::bytea ORDER BY id)) FROM geo.points")
    assert loaded[0][0] == md5
    assert sql(pg_url, "SELECT srid, type FROM geometry_columns WHERE f_table_name = 'points'")[0] == (4326, "POINT")
