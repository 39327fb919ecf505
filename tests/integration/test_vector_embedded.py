"""Embedded mode (SQLite, no PostgreSQL): process_vector end to end writes GeoPackages in silver/vector."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest

from geomill.catalog.base import open_catalog
from geomill.catalog.validation import validate_item_dict
from geomill.domain import JobStatus
from vector_helpers import SAMPLES, copy_samples, feature, open_runtime, run_vector_job, write_geojson


@pytest.fixture
def rt(tmp_path: Path):
    runtime = open_runtime(tmp_path / "data")
    copy_samples(runtime.storage.zone_path("bronze"))
    yield runtime
    runtime.close()


def test_samples_become_geopackages_with_stac_items(rt) -> None:
    for name, count in SAMPLES.items():
        job = run_vector_job(rt, source=f"bronze://{name}", chunk_rows=1000)
        assert job.status is JobStatus.COMPLETED, job.error
        out = job.result["tables"][0]
        table = Path(name).stem
        assert out["backend"] == "geopackage" and out["location"] == f"silver://vector/geo/{table}.gpkg"
        path = rt.storage.local_path(out["location"])
        info = pyogrio.read_info(path, layer=table, force_total_bounds=True)
        expected = pyogrio.read_info(rt.storage.zone_path("bronze") / name, force_total_bounds=True)
        assert info["features"] == count and info["crs"] == "EPSG:4326"
        assert info["fid_column"] == "fid" and info["geometry_name"] == "geom"
        assert list(info["total_bounds"]) == pytest.approx(list(expected["total_bounds"]))
        assert "_geomill_chunk" not in list(info["fields"])
        item = open_catalog(rt.storage, None).get_item(out["item_id"], out["collection_id"])
        validate_item_dict(item)
        href = item["assets"]["data"]["href"]
        item_folder = rt.storage.local_path(f"silver://catalog/{out['collection_id']}/{out['item_id']}")
        assert (item_folder / href).resolve() == path.resolve()
    leftovers = list(rt.storage.local_path("silver://vector").rglob("*.staging.gpkg"))
    assert leftovers == []


def test_chunks_append_into_one_geopackage_and_if_exists_is_honoured(rt) -> None:
    write_geojson(rt.storage.zone_path("bronze") / "pts.geojson",
                  [feature(f"POINT ({i % 360 - 180} {i % 170 - 85})", n=i) for i in range(5000)])
    job = run_vector_job(rt, source="bronze://pts.geojson", chunk_rows=1000)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.result["chunks"] == 5
    path = rt.storage.local_path("silver://vector/geo/pts.gpkg")
    data = pyogrio.read_arrow(path, return_fids=True)[1]
    assert data.num_rows == 5000 and sorted(data.column("n").to_pylist()) == list(range(5000))
    refused = run_vector_job(rt, source="bronze://pts.geojson", chunk_rows=1000, layer="pts")
    assert refused.status is JobStatus.FAILED and "already exists" in refused.error["message"]
    appended = run_vector_job(rt, source="bronze://pts.geojson", chunk_rows=1000, if_exists="append")
    assert appended.status is JobStatus.COMPLETED, appended.error
    assert pyogrio.read_info(path)["features"] == 10_000
    replaced = run_vector_job(rt, source="bronze://pts.geojson", chunk_rows=2000, if_exists="replace")
    assert replaced.status is JobStatus.COMPLETED, replaced.error
    assert pyogrio.read_info(path)["features"] == 5000


def test_bad_input_fails_the_job_with_its_message(rt) -> None:
    (rt.storage.zone_path("bronze") / "typo.csv").write_text("id,lon,lat\n1,7.4,46.9\n2,seven,46.2\n")
    job = run_vector_job(rt, source="bronze://typo.csv")
    assert job.status is JobStatus.FAILED
    assert "InvalidInput" in job.error["message"] and "coordinate column 'lon'" in job.error["message"]
    assert not rt.storage.local_path("silver://vector/geo/typo.gpkg").exists()
