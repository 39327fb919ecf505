"""Pure functions of the vector tasks: identifiers, safe attribute names, coordinate column detection, geometry
types and promotion, WKB -> hex EWKB, job plans."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import shapely

from geomill.domain import InvalidInput
from geomill.domain.models import StageResults
from geomill.jobs import build_registry
from geomill.jobs.vector import ProcessVectorParams, plan_finalize, plan_upload
from geomill.sinks.ewkb import wkb_to_ewkb_hex
from geomill.tasks.vector.geometry import GeometryStats, needs_conversion, promote, target_type
from geomill.tasks.vector.naming import (
    check_identifier,
    detect_wkt_column,
    detect_xy_columns,
    is_lonlat,
    safe_columns,
    safe_name,
)


@pytest.mark.parametrize("value", ["geo", "roads_2024", "_private", "a" * 63])
def test_good_identifiers_pass(value: str) -> None:
    assert check_identifier(value, "table") == value


@pytest.mark.parametrize("value", ['x"; DROP TABLE t; --', "a b", "Roads", "1st", "", "a" * 64, "select",
                                   "pg_temp", "ä", "a-b", "a.b", "x\x00"])
def test_bad_identifiers_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_identifier(value, "table")
    assert err.value.field == "table"


def test_safe_names() -> None:
    assert safe_name("Name:EN") == "name_en"
    assert safe_name("Straße Nr.") == "strasse_nr"
    assert safe_name("2019 value") == "f_2019_value"
    assert safe_name("select") == "select_"
    assert safe_name("***") == "field"
    assert len(safe_name("x" * 100)) == 63


def test_safe_columns_are_unique_and_avoid_reserved_names() -> None:
    mapping = safe_columns(["Name", "name", "NAME ", "geom", "fid", "_geomill_chunk", "ok"])
    assert mapping == {"Name": "name", "name": "name_2", "NAME ": "name_3", "geom": "geom_",
                       "fid": "fid_", "_geomill_chunk": "geomill_chunk", "ok": "ok"}
    assert len(set(mapping.values())) == len(mapping)


@pytest.mark.parametrize(("names", "expected"), [
    (["id", "Longitude", "Latitude"], ("Longitude", "Latitude")),
    (["lat", "lon"], ("lon", "lat")),
    (["X", "Y", "z"], ("X", "Y")),
    (["easting", "northing"], ("easting", "northing")),
    (["lng", "name"], None),
])
def test_detect_xy_columns(names: list[str], expected) -> None:
    assert detect_xy_columns(names) == expected


def test_detect_wkt_and_lonlat() -> None:
    assert detect_wkt_column(["id", "WKT"]) == "WKT"
    assert detect_wkt_column(["id", "the_geom"]) == "the_geom"
    assert detect_wkt_column(["id"]) is None
    assert is_lonlat("lon", "lat") and not is_lonlat("x", "y")


def _stats(*wkts: str) -> GeometryStats:
    stats = GeometryStats()
    stats.add(np.array([shapely.from_wkt(w) if w else None for w in wkts]), 0)
    return stats


@pytest.mark.parametrize(("wkts", "expected", "convert"), [
    (["POINT (0 0)", "POINT (1 1)"], "POINT", False),
    (["POINT (0 0)", "MULTIPOINT (1 1, 2 2)"], "MULTIPOINT", True),
    (["POLYGON ((0 0, 1 0, 1 1, 0 0))", None], "POLYGON", False),
    (["MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))"], "MULTIPOLYGON", False),
    (["POINT (0 0)", "LINESTRING (0 0, 1 1)"], "GEOMETRY", False),
    (["POINT Z (0 0 1)"], "POINTZ", False),
    (["POINT Z (0 0 1)", "POINT (1 1)"], "POINTZ", True),
    ([None], "GEOMETRY", False),
])
def test_target_type(wkts: list[str], expected: str, convert: bool) -> None:
    stats = _stats(*wkts)
    assert target_type(stats) == expected
    assert needs_conversion(stats) is convert


def test_promote_wraps_singles_only() -> None:
    geoms = np.array([shapely.from_wkt("POLYGON ((0 0, 1 0, 1 1, 0 0))"), None,
                      shapely.from_wkt("MULTIPOLYGON (((2 2, 3 2, 3 3, 2 2)))")])
    out = promote(geoms, "MULTIPOLYGON")
    assert [g.geom_type if g else None for g in out] == ["MultiPolygon", None, "MultiPolygon"]
    assert out[2].equals(geoms[2]) and out[0].geoms[0].equals(geoms[0])
    assert promote(geoms, "GEOMETRY") is geoms


def test_wkb_to_ewkb_hex_matches_shapely() -> None:
    geoms = np.array([shapely.Point(1, 2), None, shapely.from_wkt("MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)))"),
                      shapely.Point(1, 2, 3), shapely.from_wkt("LINESTRING EMPTY")])
    wkb = pa.array(shapely.to_wkb(geoms, byte_order=1, flavor="iso"), type=pa.binary())
    for array in (wkb, wkb.slice(1, 3), wkb.slice(2, 3)):
        part = geoms[array.offset:array.offset + len(array)]
        hexed = wkb_to_ewkb_hex(array, 2056)
        back = shapely.from_wkb(hexed.to_numpy(zero_copy_only=False))
        assert [g is None for g in back] == [g is None for g in part]
        assert all(a is None or (a.equals(b) or a.is_empty and b.is_empty) for a, b in zip(part, back, strict=True))
        assert all(shapely.get_srid(g) == 2056 for g, p in zip(back, part, strict=True) if p is not None)
        assert hexed[0].as_py() is None or hexed[0].as_py().startswith("01")
    assert wkb_to_ewkb_hex(wkb, 4326)[0].as_py() == "0101000020E6100000000000000000F03F0000000000000040"
    extended = pa.array(shapely.to_wkb(geoms[3:4], byte_order=1, flavor="extended"), type=pa.binary())
    assert wkb_to_ewkb_hex(extended, 4326) is None
    big_endian = pa.array(shapely.to_wkb(geoms[:1], byte_order=0), type=pa.binary())
    assert wkb_to_ewkb_hex(big_endian, 4326) is None


def test_registration_and_plans() -> None:
    registry = build_registry()
    job = registry.job_type("process_vector")
    assert [s.name for s in job.stages] == ["prepare", "upload", "finalize"]
    assert {registry.task_type(n).queue for n in ("vector.prepare", "vector.upload", "vector.finalize")} == {
        "vector-tasks"}
    params = ProcessVectorParams(source="bronze://a.gpkg", schema="geo")
    assert params.model_dump()["schema"] == "geo"
    target = {"key": "k", "backend": "postgis", "schema": "geo", "table": "a", "staging": "_geomill_stage_k",
              "if_exists": "fail", "geometry_type": "POINT", "srid": 4326, "has_z": False, "columns": []}
    chunks = [{"index": i, "uri": f"silver://vector/k/all/chunk-{i:05d}.parquet", "rows": 10, "first_fid": 1 + 10 * i,
               "size_bytes": 100} for i in range(3)]
    load = {"target": target, "source": "bronze://a.gpkg", "layer": None, "chunks": chunks, "feature_count": 30,
            "bbox": [0, 0, 1, 1], "repaired": 0, "null_geometries": 0, "source_datetime": "2024-01-01T00:00:00Z"}
    prepared = StageResults("prepare", {"prepare": {"loads": [load], "column_mapping": {}}}, {})
    uploads = plan_upload(params, [prepared])
    assert [t.key for t in uploads] == ["0-00000", "0-00001", "0-00002"]
    done = StageResults("upload", {"0-00000": {"rows": 10}, "0-00001": {"rows": 10}},
                        {"0-00002": {"type": "OperationalError", "message": "connection lost"}})
    (final,) = plan_finalize(params, [prepared, done])
    assert final.params["uploaded_rows"] == 20
    assert final.params["upload_errors"] == ["chunk 0-00002: OperationalError: connection lost"]
