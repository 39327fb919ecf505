"""vector.prepare on real files with real GDAL: every supported format, CSV detection, encodings, and each bad
input refused with a message naming the file and the problem (before anything is loaded)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely

from geomill.domain import InvalidInput
from geomill.engine.context import TaskContext
from geomill.sinks.geopackage import GeoPackageSink
from geomill.storage.local import LocalStorage
from geomill.tasks.vector.prepare import PrepareVectorParams, prepare_vector
from vector_helpers import copy_samples, feature, write_geojson


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "store")
    store.ensure_zones()
    copy_samples(store.zone_path("bronze"))
    return store


@pytest.fixture
def ctx(storage: LocalStorage) -> TaskContext:
    """Embedded mode (no PostgreSQL): prepare writes chunks and a staging GeoPackage."""
    return TaskContext(task_id="t", job_id="j", stage=1, attempt=1, storage=storage,
                       vector_sink=GeoPackageSink(storage))


def bronze(storage: LocalStorage) -> Path:
    return storage.zone_path("bronze")


def prepare(ctx: TaskContext, source: str, **params):
    return prepare_vector(PrepareVectorParams(source=source, **params), ctx)


def chunk_table(ctx: TaskContext, load) -> pa.Table:
    return pa.concat_tables([pq.read_table(ctx.storage.local_path(c.uri)) for c in load.chunks])


# ---------------------------------------------------------------- formats


def test_shapefile_becomes_geoparquet_chunks(ctx: TaskContext) -> None:
    result = prepare(ctx, "bronze://coutwildrnp.shp", chunk_rows=1000)
    load = result.loads[0]
    assert load.feature_count == 67 and load.target.srid == 4326 and load.target.geometry_type == "POLYGON"
    table = chunk_table(ctx, load)
    assert table.num_rows == 67 and table.column("fid").to_pylist() == list(range(1, 68))
    assert table.column_names[:3] == ["fid", "perimeter", "feature2"] and table.column_names[-1] == "geom"
    geo = json.loads(pq.read_schema(ctx.storage.local_path(load.chunks[0].uri)).metadata[b"geo"])
    assert geo["primary_column"] == "geom" and geo["columns"]["geom"]["encoding"] == "WKB"
    assert geo["columns"]["geom"]["crs"]["id"]["code"] == 4326
    assert result.column_mapping["coutwildrnp"]["PERIMETER"] == "perimeter"


def test_chunks_hold_chunk_rows_each(ctx: TaskContext, storage: LocalStorage) -> None:
    write_geojson(bronze(storage) / "many.geojson", [feature(f"POINT ({i} {i})", n=i) for i in range(2500)])
    load = prepare(ctx, "bronze://many.geojson", chunk_rows=1000).loads[0]
    assert [c.rows for c in load.chunks] == [1000, 1000, 500]
    assert [c.first_fid for c in load.chunks] == [1, 1001, 2001]
    assert all(c.uri.startswith(f"silver://vector/{load.target.key}/all/chunk-0000") for c in load.chunks)


def _write(storage: LocalStorage, name: str, driver: str) -> str:
    geoms = shapely.points([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    table = pa.table({"label": ["a", "b", "c"], "geom": pa.array(shapely.to_wkb(geoms), type=pa.binary())})
    path = bronze(storage) / name
    pyogrio.write_arrow(table, str(path), driver=driver, geometry_name="geom", geometry_type="Point",
                        crs="EPSG:4326", layer="pts")
    return f"bronze://{name}"


@pytest.mark.parametrize(("name", "driver"), [("p.fgb", "FlatGeobuf"), ("p.kml", "KML"), ("p.gpkg", "GPKG"),
                                              ("p.geojson", "GeoJSON")])
def test_formats(name: str, driver: str, ctx: TaskContext, storage: LocalStorage) -> None:
    if driver not in pyogrio.list_drivers(write=True):
        pytest.skip(f"GDAL here cannot write {driver}")
    load = prepare(ctx, _write(storage, name, driver)).loads[0]
    assert load.feature_count == 3 and load.target.srid == 4326
    assert load.bbox == pytest.approx([1, 4, 3, 6])


def test_geoparquet_read_with_pyarrow(ctx: TaskContext, storage: LocalStorage) -> None:
    """GeoParquet written by geomill itself (a prepared chunk) reads back as a source, CRS included."""
    first = prepare(ctx, "bronze://coutwildrnp.shp").loads[0]
    shutil.copy(ctx.storage.local_path(first.chunks[0].uri), bronze(storage) / "wild.parquet")
    load = prepare(ctx, "bronze://wild.parquet").loads[0]
    assert load.feature_count == 67 and load.target.srid == 4326 and load.bbox == pytest.approx(first.bbox)
    pq.write_table(pa.table({"a": [1]}), bronze(storage) / "plain.parquet")
    with pytest.raises(InvalidInput, match="plain.parquet' has no geometry column: it is Parquet without"):
        prepare(ctx, "bronze://plain.parquet")


def test_zipped_shapefile(ctx: TaskContext, storage: LocalStorage) -> None:
    with zipfile.ZipFile(bronze(storage) / "wild.zip", "w") as zf:
        for ext in ("shp", "shx", "dbf", "prj", "cpg"):
            zf.write(bronze(storage) / f"coutwildrnp.{ext}", f"data/coutwildrnp.{ext}")
    load = prepare(ctx, "bronze://wild.zip").loads[0]
    assert load.feature_count == 67 and load.target.table == "wild"


def test_geopackage_one_or_all_layers(ctx: TaskContext, storage: LocalStorage) -> None:
    path = bronze(storage) / "two.gpkg"
    for layer, n in (("roads", 2), ("wells", 3)):
        geoms = shapely.points(range(n), range(n))
        pyogrio.write_arrow(pa.table({"geom": pa.array(shapely.to_wkb(geoms), type=pa.binary())}), str(path),
                            layer=layer, driver="GPKG", geometry_name="geom", geometry_type="Point",
                            crs="EPSG:3857", append=path.exists())
    with pytest.raises(InvalidInput, match="has 2 layers .*roads, wells.* layer="):
        prepare(ctx, "bronze://two.gpkg")
    assert [ld.feature_count for ld in prepare(ctx, "bronze://two.gpkg", layer="wells").loads] == [3]
    loads = prepare(ctx, "bronze://two.gpkg", layer="*", table="net").loads
    assert [(ld.target.table, ld.feature_count, ld.target.srid) for ld in loads] == [
        ("net_roads", 2, 3857), ("net_wells", 3, 3857)]
    with pytest.raises(InvalidInput, match="layer 'lakes' not found"):
        prepare(ctx, "bronze://two.gpkg", layer="lakes")


def test_csv_with_lon_lat_columns_defaults_to_wgs84(ctx: TaskContext, storage: LocalStorage) -> None:
    (bronze(storage) / "stations.csv").write_text("id,name,Longitude,Latitude\n1,Bern,7.44,46.95\n2,Genf,6.14,46.2\n")
    load = prepare(ctx, "bronze://stations.csv").loads[0]
    assert load.feature_count == 2 and load.target.srid == 4326 and load.target.geometry_type == "POINT"
    assert load.bbox == pytest.approx([6.14, 46.2, 7.44, 46.95])
    assert [c.name for c in load.target.columns] == ["id", "name"]


def test_csv_with_named_xy_columns_needs_a_crs(ctx: TaskContext, storage: LocalStorage) -> None:
    (bronze(storage) / "survey.csv").write_text("e,n,v\n2600000,1200000,1\n2600100,1200100,2\n")
    with pytest.raises(InvalidInput, match="CRS of 'bronze://survey.csv' is unknown.*crs=EPSG"):
        prepare(ctx, "bronze://survey.csv", x_column="e", y_column="n")
    load = prepare(ctx, "bronze://survey.csv", x_column="e", y_column="n", crs="EPSG:2056").loads[0]
    assert load.target.srid == 2056 and load.feature_count == 2


def test_csv_with_a_wkt_column(ctx: TaskContext, storage: LocalStorage) -> None:
    (bronze(storage) / "shapes.csv").write_text('id,the_geom\n1,"POLYGON ((0 0, 1 0, 1 1, 0 0))"\n'
                                                 '2,"MULTIPOLYGON (((5 5, 6 5, 6 6, 5 5)))"\n')
    load = prepare(ctx, "bronze://shapes.csv", crs="EPSG:4326").loads[0]
    assert load.target.geometry_type == "MULTIPOLYGON" and load.feature_count == 2 and load.target.convert


def test_encoding_from_cpg_is_honoured(ctx: TaskContext, storage: LocalStorage) -> None:
    geoms = shapely.points([1.0], [2.0])
    table = pa.table({"stadt": ["Zürich"], "geom": pa.array(shapely.to_wkb(geoms), type=pa.binary())})
    path = bronze(storage) / "cities.shp"
    pyogrio.write_arrow(table, str(path), driver="ESRI Shapefile", geometry_name="geom", geometry_type="Point",
                        crs="EPSG:4326", encoding="cp1252")
    assert (bronze(storage) / "cities.cpg").read_text().strip() in ("1252", "CP1252")
    assert "Zürich".encode("cp1252") in (bronze(storage) / "cities.dbf").read_bytes()
    load = prepare(ctx, "bronze://cities.shp").loads[0]
    assert chunk_table(ctx, load).column("stadt").to_pylist() == ["Zürich"]


def test_invalid_geometries_are_repaired_and_counted(ctx: TaskContext, storage: LocalStorage) -> None:
    write_geojson(bronze(storage) / "bad.geojson", [feature("POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))"),
                                                    feature("POLYGON ((0 0, 2 0, 2 2, 0 2, 0 0))")])
    load = prepare(ctx, "bronze://bad.geojson").loads[0]
    assert load.repaired == 1 and load.target.geometry_type == "MULTIPOLYGON"
    geoms = shapely.from_wkb(chunk_table(ctx, load).column("geom").to_numpy(zero_copy_only=False))
    assert shapely.is_valid(geoms).all()


# ---------------------------------------------------------------- bad input


def test_shapefile_missing_shx_or_dbf(ctx: TaskContext, storage: LocalStorage) -> None:
    for missing in ("shx", "dbf"):
        folder = bronze(storage) / f"no_{missing}"
        folder.mkdir()
        for ext in ("shp", "shx", "dbf", "prj"):
            if ext != missing:
                shutil.copy(bronze(storage) / f"coutwildrnp.{ext}", folder / f"coutwildrnp.{ext}")
        with pytest.raises(InvalidInput, match=rf"shapefile 'coutwildrnp.shp' in .*no_{missing}.* is incomplete: "
                                               rf"missing \.{missing}"):
            prepare(ctx, f"bronze://no_{missing}/coutwildrnp.shp")


def test_zipped_shapefile_missing_its_dbf(ctx: TaskContext, storage: LocalStorage) -> None:
    with zipfile.ZipFile(bronze(storage) / "half.zip", "w") as zf:
        for ext in ("shp", "shx"):
            zf.write(bronze(storage) / f"coutwildrnp.{ext}", f"coutwildrnp.{ext}")
    with pytest.raises(InvalidInput, match=r"half.zip.* is incomplete: missing \.dbf"):
        prepare(ctx, "bronze://half.zip")


def test_empty_files(ctx: TaskContext, storage: LocalStorage) -> None:
    (bronze(storage) / "empty.geojson").write_bytes(b"")
    with pytest.raises(InvalidInput, match=r"'bronze://empty.geojson' is an empty file \(0 bytes\)"):
        prepare(ctx, "bronze://empty.geojson")
    write_geojson(bronze(storage) / "nothing.geojson", [])
    with pytest.raises(InvalidInput, match="'bronze://nothing.geojson' has no features"):
        prepare(ctx, "bronze://nothing.geojson")


def test_file_without_geometry_column(ctx: TaskContext, storage: LocalStorage) -> None:
    (bronze(storage) / "people.csv").write_text("name,age\nann,3\nbob,4\n")
    with pytest.raises(InvalidInput, match="'bronze://people.csv' has no geometry column.*columns: name, age"):
        prepare(ctx, "bronze://people.csv")
    path = bronze(storage) / "attrs.gpkg"
    pyogrio.write_arrow(pa.table({"name": ["a"]}), str(path), layer="attrs", driver="GPKG")
    with pytest.raises(InvalidInput, match="'bronze://attrs.gpkg' has no geometry column"):
        prepare(ctx, "bronze://attrs.gpkg")


def test_unknown_crs_without_override(ctx: TaskContext, storage: LocalStorage) -> None:
    folder = bronze(storage) / "noprj"
    folder.mkdir()
    for ext in ("shp", "shx", "dbf"):
        shutil.copy(bronze(storage) / f"coutwildrnp.{ext}", folder / f"coutwildrnp.{ext}")
    with pytest.raises(InvalidInput, match=r"CRS of 'bronze://noprj/coutwildrnp.shp' is unknown .*crs=EPSG:<code>"):
        prepare(ctx, "bronze://noprj/coutwildrnp.shp")
    assert prepare(ctx, "bronze://noprj/coutwildrnp.shp", crs="EPSG:4269").loads[0].target.srid == 4269
    with pytest.raises(InvalidInput, match="CRS 'EPSG:999999' of"):
        prepare(ctx, "bronze://noprj/coutwildrnp.shp", crs="EPSG:999999")


def test_csv_coordinates_that_are_not_numbers(ctx: TaskContext, storage: LocalStorage) -> None:
    (bronze(storage) / "typo.csv").write_text("id,lon,lat\n1,7.4,46.9\n2,seven,46.2\n")
    with pytest.raises(InvalidInput, match=r"coordinate column 'lon' of 'bronze://typo.csv' is not numeric "
                                           r"\(e.g. value 'seven'\)"):
        prepare(ctx, "bronze://typo.csv")


def test_zip_without_a_vector_inside(ctx: TaskContext, storage: LocalStorage) -> None:
    with zipfile.ZipFile(bronze(storage) / "docs.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
        zf.writestr("image.png", b"\x89PNG")
    with pytest.raises(InvalidInput, match=r"zip 'bronze://docs.zip' holds no vector file \(found: readme.txt, "
                                           r"image.png\)"):
        prepare(ctx, "bronze://docs.zip")


def test_missing_and_garbage_files(ctx: TaskContext, storage: LocalStorage) -> None:
    with pytest.raises(InvalidInput, match="'bronze://nope.gpkg' not found"):
        prepare(ctx, "bronze://nope.gpkg")
    (bronze(storage) / "junk.geojson").write_text('{"type": "FeatureCollection", "features": [ {"type": ')
    with pytest.raises(InvalidInput, match="junk.geojson"):
        prepare(ctx, "bronze://junk.geojson")


def test_existing_geopackage_is_refused_unless_replace(ctx: TaskContext, storage: LocalStorage) -> None:
    final = storage.local_path("silver://vector/geo/rmnp.gpkg")
    final.parent.mkdir(parents=True)
    final.write_bytes(b"x")
    with pytest.raises(InvalidInput, match="table geo.rmnp.* already exists; give if_exists=replace"):
        prepare(ctx, "bronze://rmnp.geojson")
    assert prepare(ctx, "bronze://rmnp.geojson", if_exists="replace").loads[0].feature_count == 1
