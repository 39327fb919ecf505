"""Property tests of process_vector (issue 19): any mix of geometry types (empty, invalid, Z, M, collections),
huge attribute text, unicode and reserved-word column names, written to a GeoPackage with GDAL, either loads with
every row and every geometry (after the documented repair) into GeoPackage and PostGIS, or is refused as invalid
input at once. Profiles: tests/hypothesis_profiles.py (``HYPOTHESIS_PROFILE=long`` for a longer run)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyogrio
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geomill.domain import JobStatus
from vector_helpers import open_runtime, run_vector_job

COUNTER = itertools.count()
coord = st.integers(-1000, 1000).map(lambda v: v / 10)


@st.composite
def polygons(draw: st.DrawFn) -> shapely.Geometry:
    x, y = draw(coord), draw(coord)
    w, h = draw(st.integers(1, 50)), draw(st.integers(1, 50))
    if draw(st.booleans()):
        return shapely.box(x, y, x + w, y + h)
    return shapely.Polygon([(x, y), (x + w, y + h), (x + w, y), (x, y + h), (x, y)])  # a bow-tie: invalid


points = st.builds(shapely.Point, coord, coord)
lines = st.lists(st.tuples(coord, coord), min_size=2, max_size=6).map(shapely.LineString)
singles = st.one_of(points, lines, polygons())
multis = st.one_of(st.lists(points, min_size=1, max_size=3).map(shapely.MultiPoint),
                   st.lists(lines, min_size=1, max_size=3).map(shapely.MultiLineString),
                   st.lists(polygons(), min_size=1, max_size=3).map(
                       lambda ps: shapely.MultiPolygon([p for p in ps if p.is_valid] or [shapely.box(0, 0, 1, 1)])))
collections = st.lists(singles, min_size=1, max_size=3).map(shapely.GeometryCollection)
empties = st.sampled_from(["POINT EMPTY", "LINESTRING EMPTY", "POLYGON EMPTY", "MULTIPOLYGON EMPTY",
                           "GEOMETRYCOLLECTION EMPTY"]).map(shapely.from_wkt)


@st.composite
def geometries(draw: st.DrawFn) -> shapely.Geometry | None:
    geom = draw(st.one_of(singles, multis, collections, empties, st.none()))
    if geom is not None and not geom.is_empty:
        dims = draw(st.sampled_from(["xy", "xyz", "xym"]))
        if dims == "xyz":
            geom = shapely.force_3d(geom, draw(coord))
        elif dims == "xym" and geom.geom_type in ("Point", "LineString"):
            m = draw(coord)
            coords = ", ".join(f"{x} {y} {m}" for x, y in shapely.get_coordinates(geom))
            geom = shapely.from_wkt(f"{geom.geom_type.upper()} M ({coords})")
    return geom


NAMES = ["select", "from", "order", "user", "Größe", "名前", "ogc_fid", "shape", "Column With Spaces", "x" * 70,
         "name", "1st"]
no_nul = st.characters(exclude_characters="\x00")  # GDAL strings are C strings: a NUL cannot be in the source
texts = st.one_of(st.none(), st.text(no_nul, max_size=30), st.just("é" * 100_000), st.text(alphabet="\x01\t\n'\"\\,;", max_size=10))


@st.composite
def layers(draw: st.DrawFn) -> tuple[list[str], list[list], list]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique_by=str.lower))
    n = draw(st.integers(1, 8))
    geoms = [draw(geometries()) for _ in range(n)]
    values = [[draw(texts) for _ in range(n)] for _ in names]
    return names, values, geoms


def write_source(path: Path, names: list[str], values: list[list], geoms: list) -> None:
    wkb = [None if g is None else shapely.to_wkb(g, flavor="iso", include_srid=False,
                                                  output_dimension=4 if shapely.has_m(g) else 3) for g in geoms]
    table = pa.table({**{n: pa.array(v, type=pa.string()) for n, v in zip(names, values, strict=True)},
                      "geometry": pa.array(wkb, type=pa.binary())})
    pyogrio.write_arrow(table, path, layer="data", driver="GPKG", geometry_name="geometry", geometry_type="Unknown",
                        crs="EPSG:2056")


def expected(geoms: list) -> list:
    """What geomill promises: invalid geometries made valid (structure method), M dropped; None stays None."""
    out = []
    for g in geoms:
        if g is not None and shapely.has_m(g):
            g = shapely.from_wkb(shapely.to_wkb(g, output_dimension=3))
        if g is not None and not g.is_valid:
            g = shapely.make_valid(g, method="structure", keep_collapsed=False)
        out.append(g)
    return out


def same_geometries(got: list, want: list) -> None:
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if b is None or a is None:
            assert a is None and b is None, f"row {i}: {a} != {b}"
        elif b.is_empty or a.is_empty:
            assert a is not None and a.is_empty and b.is_empty, f"row {i}: {a} != {b}"
        else:
            assert shapely.equals(shapely.normalize(a), shapely.normalize(b)), f"row {i}: {a} != {b}"


def check_outcome(job, geoms) -> list:
    """Every generated input is one geomill documents as accepted (docs/vector.md): it must load, every row."""
    assert job.status is JobStatus.COMPLETED, job.error
    out = job.result["tables"]
    assert sum(t["feature_count"] for t in out) == len(geoms)
    return out


PROPERTY = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@PROPERTY
@given(data=layers())
def test_any_geometries_and_columns_round_trip_into_geopackage(tmp_path: Path, data) -> None:
    names, values, geoms = data
    n = next(COUNTER)
    rt = open_runtime(tmp_path / f"data{n}")
    try:
        write_source(rt.storage.zone_path("bronze") / f"src{n}.gpkg", names, values, geoms)
        job = run_vector_job(rt, source=f"bronze://src{n}.gpkg", table=f"t{n}")
        out = check_outcome(job, geoms)
        path = rt.storage.local_path(out[0]["location"])
        _, table = pyogrio.read_arrow(path, return_fids=True)
        order = np.argsort(table.column("__fid").to_numpy()) if "__fid" in table.column_names else None
        wkb = table.column("geom").to_pylist() if "geom" in table.column_names else \
            table.column("wkb_geometry").to_pylist()
        got = [None if w is None else shapely.from_wkb(w) for w in wkb]
        if order is not None:
            got = [got[i] for i in order]
        same_geometries(got, expected(geoms))
        mapping = job.result["column_mapping"].get("data", {}) or next(iter(job.result["column_mapping"].values()), {})
        for name, column in zip(names, values, strict=True):
            stored = table.column(mapping.get(name, name)).to_pylist()
            if order is not None:
                stored = [stored[i] for i in order]
            assert stored == column
    finally:
        rt.close()


@pytest.mark.usefixtures("postgres_server")
@PROPERTY
@given(data=layers())
def test_any_geometries_and_columns_round_trip_into_postgis(tmp_path: Path, pg_url: str, data) -> None:
    names, values, geoms = data
    n = next(COUNTER)
    rt = open_runtime(tmp_path / f"data{n}", pg_url)
    try:
        write_source(rt.storage.zone_path("bronze") / f"src{n}.gpkg", names, values, geoms)
        job = run_vector_job(rt, source=f"bronze://src{n}.gpkg", table=f"t{n}")
        check_outcome(job, geoms)
        mapping = next(iter(job.result["column_mapping"].values()), {})
        columns = [mapping.get(name, name) for name in names]
        select = ", ".join(f'"{c}"' for c in columns)
        with psycopg.connect(pg_url) as con:
            rows = con.execute(f'SELECT ST_AsBinary(geom), {select} FROM geo."t{n}" ORDER BY fid').fetchall()
        same_geometries([None if r[0] is None else shapely.from_wkb(bytes(r[0])) for r in rows], expected(geoms))
        for i, column in enumerate(values):
            assert [r[i + 1] for r in rows] == column
    finally:
        rt.close()
