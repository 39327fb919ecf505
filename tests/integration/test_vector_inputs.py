"""Real-world vector inputs (issue 19): curved geometries linearized (counted), TIN / PolyhedralSurface refused at
once, File Geodatabases, awkward file names, `layer='*'` with empty layers. End to end in embedded mode."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyogrio
import pytest
import shapely

from geomill.domain import JobStatus
from vector_helpers import feature, open_runtime, run_vector_job, write_geojson

CURVES = ["CIRCULARSTRING (0 0, 1 1, 2 0)", "COMPOUNDCURVE (CIRCULARSTRING (0 0, 1 1, 2 0), (2 0, 3 0))",
          "CURVEPOLYGON (CIRCULARSTRING (0 0, 1 1, 2 0, 1 -1, 0 0))",
          "MULTICURVE ((0 0, 1 1), CIRCULARSTRING (0 0, 1 1, 2 0))",
          "MULTISURFACE (CURVEPOLYGON (CIRCULARSTRING (0 0, 1 1, 2 0, 1 -1, 0 0)))"]


@pytest.fixture
def rt(tmp_path: Path):
    runtime = open_runtime(tmp_path / "data")
    yield runtime
    runtime.close()


def bronze(rt) -> Path:
    return rt.storage.zone_path("bronze")


def gdal_wkb(tmp: Path, wkts: list[str]) -> np.ndarray:
    """ISO WKB of any WKT GDAL knows (curves and TINs too, which shapely cannot build), via GDAL's CSV reader."""
    csv = tmp / "wkt.csv"
    csv.write_text("id,WKT\n" + "".join(f'{i},"{w}"\n' for i, w in enumerate(wkts)))
    with pyogrio.open_arrow(csv, use_pyarrow=True) as (_, reader):
        return np.array([bytes(v.as_py()) for v in reader.read_all().column("wkb_geometry")], dtype=object)


def write_wkb_gpkg(path: Path, wkb: np.ndarray, layer: str = "shapes") -> None:
    table = pa.table({"n": pa.array(np.arange(len(wkb))), "geom": pa.array(list(wkb), type=pa.binary())})
    pyogrio.write_arrow(table, path, layer=layer, driver="GPKG", geometry_name="geom", geometry_type="Unknown",
                        crs="EPSG:2056", append=path.exists())


def test_curved_geometries_in_a_geopackage_are_linearized_and_counted(rt, tmp_path: Path) -> None:
    write_wkb_gpkg(bronze(rt) / "curves.gpkg", gdal_wkb(tmp_path, [*CURVES, "POINT (5 5)"]))
    job = run_vector_job(rt, source="bronze://curves.gpkg")
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.result["linearized"] == len(CURVES) and job.result["tables"][0]["linearized"] == len(CURVES)
    out = pyogrio.read_dataframe(rt.storage.local_path(job.result["tables"][0]["location"]))
    assert len(out) == len(CURVES) + 1
    arc = out.geometry.iloc[0]
    assert arc.geom_type == "LineString" and len(arc.coords) > 10  # GDAL's default: a vertex every 4 degrees
    assert max(y for _, y in arc.coords) == pytest.approx(1.0, abs=1e-3)  # chord error of 4-degree steps on r=1
    disc = out.geometry.iloc[2]
    assert disc.geom_type in ("Polygon", "MultiPolygon") and disc.area == pytest.approx(np.pi, rel=0.01)


@pytest.mark.parametrize("wkt", ["TIN Z (((0 0 0, 0 1 0, 1 0 0, 0 0 0)))",
                                 "POLYHEDRALSURFACE Z (((0 0 0, 0 1 0, 1 1 0, 0 0 0)))"])
def test_tin_and_polyhedral_surface_are_refused_at_once_naming_the_file(rt, tmp_path: Path, wkt: str) -> None:
    write_wkb_gpkg(bronze(rt) / "mesh.gpkg", gdal_wkb(tmp_path, [wkt]))
    job = run_vector_job(rt, source="bronze://mesh.gpkg")
    assert job.status is JobStatus.FAILED
    message = job.error["message"]
    assert "InvalidInput" in message and "mesh.gpkg" in message and wkt.split()[0].replace("POLYHEDRALSURFACE",
                                                                                          "PolyhedralSurface") in message
    attempts = [t.attempt for t in rt.store.list_tasks(job.job_id)]
    assert max(attempts) == 1  # an input error is never retried


def points_table(n: int) -> pa.Table:
    xs = np.arange(n, dtype="float64")
    return pa.table({"name": pa.array([f"p{i}" for i in range(n)], type=pa.string()),
                     "geometry": pa.array(shapely.to_wkb(shapely.points(xs, xs / 2)), type=pa.binary())})


def write_gdb(path: Path, layers: dict[str, int]) -> None:
    """A File Geodatabase (GDAL's OpenFileGDB driver writes them since 3.6) with `layers` of n points each."""
    for name, n in layers.items():
        pyogrio.write_arrow(points_table(n), path, layer=name, driver="OpenFileGDB", geometry_name="geometry",
                            geometry_type="Point", crs="EPSG:2056")


def zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f.relative_to(folder.parent).as_posix())
    return target


def test_file_geodatabase_folder_is_read_with_layer_selection(rt) -> None:
    write_gdb(bronze(rt) / "city.gdb", {"roads": 3, "trees": 5})
    refused = run_vector_job(rt, source="bronze://city.gdb")
    assert refused.status is JobStatus.FAILED and "roads" in refused.error["message"]  # several layers: choose
    job = run_vector_job(rt, source="bronze://city.gdb", layer="trees")
    assert job.status is JobStatus.COMPLETED, job.error
    out = job.result["tables"][0]
    assert out["feature_count"] == 5 and out["srid"] == 2056
    assert pyogrio.read_info(rt.storage.local_path(out["location"]))["features"] == 5


def test_zipped_file_geodatabase_is_read_and_all_layers_load(rt, tmp_path: Path) -> None:
    write_gdb(tmp_path / "city.gdb", {"roads": 3, "trees": 5})
    zip_folder(tmp_path / "city.gdb", bronze(rt) / "city.gdb.zip")
    job = run_vector_job(rt, source="bronze://city.gdb.zip", layer="*", table="city")
    assert job.status is JobStatus.COMPLETED, job.error
    counts = {t["table"]: t["feature_count"] for t in job.result["tables"]}
    assert counts == {"city_roads": 3, "city_trees": 5}


def test_all_layers_with_empty_layers_skips_and_reports_them(rt) -> None:
    path = bronze(rt) / "mixed.gpkg"
    for name, n in (("parks", 4), ("nothing", 0), ("more", 2)):
        pyogrio.write_arrow(points_table(n), path, layer=name, driver="GPKG", geometry_name="geometry",
                            geometry_type="Point", crs="EPSG:4326", append=path.exists())
    job = run_vector_job(rt, source="bronze://mixed.gpkg", layer="*")
    assert job.status is JobStatus.COMPLETED, job.error
    assert {t["table"]: t["feature_count"] for t in job.result["tables"]} == {"mixed_parks": 4, "mixed_more": 2}
    assert job.result["skipped_layers"] == ["nothing"]
    only_empty = run_vector_job(rt, source="bronze://mixed.gpkg", layer="nothing")
    assert only_empty.status is JobStatus.FAILED and "has no features" in only_empty.error["message"]


@pytest.mark.parametrize("name", ["two words.gpkg", "bang!x.gpkg", "semi;colon.gpkg", "what?.gpkg", "hash#1.gpkg",
                                  "zürich_straße.gpkg", "bang!x.shp", "semi;colon.zip", "a!b;c.gdb"])
def test_file_names_with_characters_gdal_treats_specially_are_read(rt, tmp_path: Path, name: str) -> None:
    target = bronze(rt) / name
    if name.endswith(".gdb"):
        write_gdb(tmp_path / "plain.gdb", {"pts": 3})
        (tmp_path / "plain.gdb").rename(target)
    elif name.endswith(".zip"):
        write_gdb(tmp_path / "inner.gdb", {"pts": 3})
        zip_folder(tmp_path / "inner.gdb", target)
    else:
        written = tmp_path / ("plain" + Path(name).suffix)  # written under a plain name: pyogrio mangles some
        pyogrio.write_arrow(points_table(3), written, geometry_name="geometry", geometry_type="Point",
                            crs="EPSG:4326")
        for part in tmp_path.glob("plain.*"):
            part.rename(bronze(rt) / (Path(name).stem + part.suffix))
    for n, source in enumerate((str(target), f"bronze://{name}")):  # a local path and a zone URI (taken verbatim)
        job = run_vector_job(rt, source=source, table=f"t{n}")
        assert job.status is JobStatus.COMPLETED, (source, job.error)
        assert job.result["tables"][0]["feature_count"] == 3


def test_timestamps_with_offsets_are_stored_as_the_same_instant_in_utc(rt) -> None:
    write_geojson(bronze(rt) / "times.geojson", [feature("POINT (7.4 46.9)", t="2024-05-01T10:00:00+02:00"),
                                                 feature("POINT (7.5 46.8)", t="2024-05-01T10:00:00-05:30")])
    job = run_vector_job(rt, source="bronze://times.geojson")
    assert job.status is JobStatus.COMPLETED, job.error
    out = pyogrio.read_arrow(rt.storage.local_path(job.result["tables"][0]["location"]))[1].column("t")
    assert [v.isoformat() for v in out.cast(pa.timestamp("ms", tz="UTC")).to_pylist()] == [
        "2024-05-01T08:00:00+00:00", "2024-05-01T15:30:00+00:00"]


def test_gpx_is_wgs84_and_all_layers_skip_its_empty_ones(rt) -> None:
    (bronze(rt) / "walk.gpx").write_text(
        '<?xml version="1.0"?><gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1">'
        '<wpt lat="46.9" lon="7.4"><name>a</name></wpt><wpt lat="46.95" lon="7.45"><name>b</name></wpt></gpx>')
    job = run_vector_job(rt, source="bronze://walk.gpx", layer="*")
    assert job.status is JobStatus.COMPLETED, job.error
    assert [(t["table"], t["feature_count"], t["srid"]) for t in job.result["tables"]] == [
        ("walk_waypoints", 2, 4326)]
    assert set(job.result["skipped_layers"]) == {"routes", "tracks", "route_points", "track_points"}


def test_topojson_is_read_as_wgs84(rt) -> None:
    (bronze(rt) / "pts.topojson").write_text(
        '{"type":"Topology","objects":{"pts":{"type":"GeometryCollection","geometries":['
        '{"type":"Point","coordinates":[7.4,46.9],"properties":{"n":1}},'
        '{"type":"Point","coordinates":[7.5,46.8],"properties":{"n":2}}]}},"arcs":[]}')
    job = run_vector_job(rt, source="bronze://pts.topojson")
    assert job.status is JobStatus.COMPLETED, job.error
    out = job.result["tables"][0]
    assert out["srid"] == 4326 and out["feature_count"] == 2
    assert out["bbox_wgs84"] == pytest.approx([7.4, 46.8, 7.5, 46.9])


@pytest.mark.usefixtures("postgres_server")
def test_curved_geometries_load_linearized_into_postgis(tmp_path: Path, pg_url: str) -> None:
    import psycopg

    runtime = open_runtime(tmp_path / "pgdata", pg_url)
    try:
        write_wkb_gpkg(bronze(runtime) / "curves.gpkg", gdal_wkb(tmp_path, CURVES))
        job = run_vector_job(runtime, source="bronze://curves.gpkg")
        assert job.status is JobStatus.COMPLETED, job.error
        assert job.result["linearized"] == len(CURVES)
        with psycopg.connect(pg_url) as con:
            rows = con.execute("SELECT ST_HasArc(geom), ST_NPoints(geom), ST_SRID(geom) FROM geo.curves "
                               "ORDER BY fid").fetchall()
        assert len(rows) == len(CURVES) and all(not arc and points > 10 and srid == 2056
                                                for arc, points, srid in rows)
    finally:
        runtime.close()
