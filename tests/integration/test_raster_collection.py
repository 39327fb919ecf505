"""process_raster_collection end to end (real GDAL, `geomill run` processes, SQLite and PostgreSQL/pgSTAC), its
compatibility check, raster.list_sources and stac.create_collection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import rasterio
from affine import Affine
from pydantic import ValidationError
from rasterio.windows import from_bounds
from rio_cogeo.cogeo import cog_validate

import samples
from geomill.catalog.base import open_catalog
from geomill.catalog.validation import validate_item_dict
from geomill.domain import InvalidInput
from geomill.engine.context import TaskContext
from geomill.jobs import raster_collection as rc
from geomill.storage.local import LocalStorage
from geomill.tasks.raster.cog import CreateCogParams, create_cog
from geomill.tasks.raster.mosaic import MosaicParams, create_mosaic
from geomill.tasks.raster.sources import ListSourcesParams, list_sources
from geomill.tasks.stac.collection import CreateCollectionParams, create_collection
from procs import cli, geomill_env

SAME_CRS = ["rgb1_fake_nir_epsg3857.tif", "shade.tif"]  # EPSG:3857, 1 band of uint8 each
ORIGIN = Affine(30, 0, 500000, 0, -30, 4000000)


sample = samples.raster


def write_raster(path: Path, data: np.ndarray, transform: Affine = ORIGIN, crs: str = "EPSG:32618",
                 **profile: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype.name, crs=crs, transform=transform, **profile) as dst:
        dst.write(data)
    return path


def write_tiles(folder: Path, data: np.ndarray, size: int) -> list[Path]:
    """`data` cut into GeoTIFF tiles of size x size pixels (ragged at the end), named in row-major order."""
    paths = []
    for row in range(0, data.shape[1], size):
        for col in range(0, data.shape[2], size):
            part = data[:, row:row + size, col:col + size]
            paths.append(write_raster(folder / f"tile_{row:04d}_{col:04d}.tif", part,
                                      ORIGIN @ Affine.translation(col, row), nodata=0))
    return paths


def run(env: dict[str, str], *params: str, force: bool = False) -> dict[str, Any]:
    args = [a for p in params for a in ("-p", p)]
    proc = cli(env, "run", "process_raster_collection", *args, *(["--force"] if force else []), "--json",
               timeout=300)
    doc = json.loads(proc.stdout)
    refused = doc["status"] == "failed" and doc["error"]["cause"] == "invalid_input"
    assert proc.returncode == (0 if doc["status"] == "completed" else 2 if refused else 1), proc.stderr
    return doc


def assert_mosaic_reads_back(vrt_path: str, sources: list[Path], *, same_mask: bool = True) -> None:
    """Where each source has valid pixels, the VRT holds them, read at the source's own resolution; with
    `same_mask`, the VRT is also invalid where the source is (no other source lies below it)."""
    with rasterio.open(vrt_path) as vrt:
        for path in sources:
            with rasterio.open(path) as src:
                window = from_bounds(*src.bounds, transform=vrt.transform)  # fractional when not grid-aligned
                got = vrt.read(window=window, out_shape=(src.count, src.height, src.width), masked=True)
                want = src.read(masked=True)
            valid = ~want.mask
            assert valid.any() and not got.mask[valid].any(), path
            np.testing.assert_array_equal(got.data[valid], want.data[valid], err_msg=str(path))
            if same_mask:
                np.testing.assert_array_equal(got.mask, want.mask, err_msg=str(path))


# ---------------------------------------------------------------- parameters and the compatibility check


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one of sources"),
        ({"sources": ["a.tif"], "source_prefix": "bronze://x/"}, "exactly one of sources"),
        ({"sources": []}, "at least 1 item"),
        ({"sources": ["a.tif", "b.tif", "a.tif"]}, "more than once: a.tif"),
        ({"sources": ["a.tif"], "collection_id": "../up"}, "not a valid id"),
        ({"sources": ["a.tif"], "target_crs": "EPSG:999999"}, "target_crs"),
        ({"sources": ["a.tif"], "compression": "zip"}, "unknown compression"),
    ],
)
def test_params_are_refused_before_anything_runs(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rc.ProcessRasterCollectionParams.model_validate(params)


def test_default_collection_and_item_ids_are_deterministic_and_safe() -> None:
    by_prefix = rc.ProcessRasterCollectionParams(source_prefix="bronze://scenes/")
    assert rc.collection_id_for(by_prefix).startswith("scenes-")
    assert rc.collection_id_for(by_prefix) == rc.collection_id_for(by_prefix.model_copy())
    other = rc.ProcessRasterCollectionParams(source_prefix="bronze://other/scenes/")
    assert rc.collection_id_for(other) != rc.collection_id_for(by_prefix)
    listed = rc.ProcessRasterCollectionParams(sources=["/in/a b.tif", "bronze://x/a b.tif", "c.TIF"])
    assert rc.collection_id_for(listed).startswith("rasters-")
    assert rc.item_ids_for(listed.sources) == ["a_b-00000", "a_b-00001", "c"]


def _summary(source: str, crs: str = "EPSG:3857", count: int = 1, dtype: str = "uint8",
             nodata: float | None = 0) -> dict[str, Any]:
    epsg = int(crs.split(":")[1])
    return {"source": source, "crs": crs, "epsg": epsg, "count": count, "dtypes": [dtype] * count,
            "nodata": nodata}


def test_compatibility_check_names_the_odd_ones_and_how_they_differ() -> None:
    sources = ["a.tif", "b.tif", "c.tif", "d.tif"]
    summaries = [_summary("a.tif"), _summary("b.tif", dtype="float32"), _summary("c.tif"),
                 _summary("d.tif", crs="EPSG:4326", count=3)]
    with pytest.raises(InvalidInput) as err:
        rc.check_compatible(sources, summaries, None)
    message = str(err.value)
    assert message.startswith("incompatible rasters: 2 of 4 differ from the other 2 (CRS EPSG:3857, 1 band of uint8)")
    assert "'b.tif' has data type float32 (the others: uint8)" in message
    assert "'d.tif' has CRS EPSG:4326 (the others: EPSG:3857); 3 bands (the others: 1)" in message
    assert "'a.tif'" not in message and "'c.tif'" not in message and "target_crs" in message
    assert err.value.field == "sources"


def test_a_target_crs_makes_crs_differences_fine_but_not_an_added_alpha_band() -> None:
    summaries = [_summary("a.tif"), _summary("b.tif", crs="EPSG:4326")]
    rc.check_compatible(["a.tif", "b.tif"], summaries, "EPSG:4326")  # no error
    summaries.append(_summary("c.tif", crs="EPSG:32618", nodata=None))
    with pytest.raises(InvalidInput, match=r"'c\.tif' has no nodata value, so reprojecting adds an alpha band"):
        rc.check_compatible(["a.tif", "b.tif", "c.tif"], summaries, "EPSG:4326")


# ---------------------------------------------------------------- raster.list_sources


def test_list_sources_finds_raster_files_sorted(ctx: TaskContext, storage: LocalStorage) -> None:
    scenes = storage.zone_path("bronze") / "scenes"
    data = np.ones((1, 4, 4), dtype=np.uint8)
    for name in ("b.tif", "a.TIFF", "sub/c.tif", "2020-x.tif", ".hidden.tif", ".tmp/d.tif"):
        write_raster(scenes / name, data)
    (scenes / "notes.txt").write_text("not a raster")
    listed = list_sources(ListSourcesParams(prefix="bronze://scenes/"), ctx)
    assert listed.sources == ["bronze://scenes/2020-x.tif", "bronze://scenes/a.TIFF", "bronze://scenes/b.tif",
                              "bronze://scenes/sub/c.tif"]
    assert listed.total_bytes == sum(listed.sizes) > 0
    assert list_sources(ListSourcesParams(prefix="bronze://scenes/2020-"), ctx).sources == [
        "bronze://scenes/2020-x.tif"]
    assert list_sources(ListSourcesParams(prefix=str(scenes / "sub")), ctx).sources == [str(scenes / "sub" / "c.tif")]
    with pytest.raises(InvalidInput, match=r"source_prefix 'bronze://empty/'.*no folder"):
        list_sources(ListSourcesParams(prefix="bronze://empty/"), ctx)
    (scenes / "empty").mkdir()
    with pytest.raises(InvalidInput, match="holds no raster files"):
        list_sources(ListSourcesParams(prefix="bronze://scenes/empty"), ctx)
    with pytest.raises(InvalidInput, match="escapes"):
        list_sources(ListSourcesParams(prefix="bronze://../x"), ctx)


# ---------------------------------------------------------------- stac.create_collection


def test_create_collection_validates_and_upserts(ctx: TaskContext, storage: LocalStorage) -> None:
    cogs = [create_cog(CreateCogParams(source=str(sample(name))), ctx) for name in SAME_CRS]
    mosaic = create_mosaic(MosaicParams(cogs=[c.cog_uri for c in cogs], name="pair"), ctx)
    params = CreateCollectionParams(
        collection_id="pair", title="Two scenes", items=[
            {"cog_uri": c.cog_uri, "source": str(sample(n)), "item_id": n.split(".")[0]} for c, n in zip(cogs, SAME_CRS, strict=True)
        ], mosaic=mosaic.model_dump(),
    )
    first = create_collection(params, ctx)
    assert first.item_ids == ["rgb1_fake_nir_epsg3857", "shade"] and first.backend == "static"
    again = create_collection(params, ctx)
    assert again.model_dump() == first.model_dump()
    catalog = open_catalog(storage, None)
    collection = catalog.get_collection("pair")
    validate_item_dict(collection)
    assert collection["title"] == "Two scenes"
    assert [x["href"] for x in collection["links"] if x["rel"] == "item"] == [
        "./rgb1_fake_nir_epsg3857/rgb1_fake_nir_epsg3857.json", "./shade/shade.json"]  # not duplicated
    root = Path(first.collection_path).parent
    assert (root / collection["assets"]["vrt"]["href"]).resolve() == Path(mosaic.vrt_path)
    assert (root / collection["assets"]["mosaicjson"]["href"]).resolve() == Path(mosaic.mosaicjson_path)
    west, south, east, north = collection["extent"]["spatial"]["bbox"][0]
    for item in catalog.list_items("pair"):
        validate_item_dict(item)
        b = item["bbox"]
        assert west <= b[0] and south <= b[1] and east >= b[2] and north >= b[3]
    with pytest.raises(InvalidInput, match="repeated: x"):
        create_collection(params.model_copy(update={"items": [params.items[0].model_copy(update={"item_id": "x"}),
                                                              params.items[1].model_copy(update={"item_id": "x"})]}),
                          ctx)


# ---------------------------------------------------------------- the job, end to end in real processes


@pytest.mark.slow
def test_incompatible_collection_fails_with_a_message_naming_the_odd_rasters(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for name in SAME_CRS:
        shutil.copy(sample(name), scenes / name)
    odd = write_raster(scenes / "zz_float.tif", np.ones((1, 20, 30), dtype=np.float32),
                       Affine(100, 0, -8700000, 0, -100, 2900000), crs="EPSG:3857")
    bands = write_raster(tmp_path / "two_bands.tif", np.ones((2, 20, 30), dtype=np.uint8),
                         Affine(100, 0, -8700000, 0, -100, 2900000), crs="EPSG:3857")
    env = geomill_env(tmp_path / "data", workers=2)
    doc = run(env, f"source_prefix={scenes}")
    assert doc["status"] == "failed" and doc["error"]["type"] == "InvalidInput"
    assert doc["error"]["cause"] == "invalid_input"  # refused while planning: exit 2 as for a refused task
    message = doc["error"]["message"]
    assert f"'{odd}' has data type float32 (the others: uint8)" in message
    assert all(f"'{scenes / name}'" not in message for name in SAME_CRS)
    assert not list((tmp_path / "data" / "silver").rglob("*.tif"))  # refused before any COG was written
    sources = json.dumps([str(scenes / SAME_CRS[0]), str(bands), str(scenes / SAME_CRS[1])])
    doc = run(env, f"sources={sources}")
    assert doc["status"] == "failed" and f"'{bands}' has 2 bands (the others: 1)" in doc["error"]["message"]
    missing = json.dumps([str(scenes / SAME_CRS[0]), str(tmp_path / "missing.tif")])
    refused = cli(env, "run", "process_raster_collection", "-p", f"sources={missing}", "--json")
    assert refused.returncode == 2 and "missing.tif': no such file" in json.loads(refused.stdout)["error"]


@pytest.mark.slow
def test_a_target_crs_joins_rasters_in_different_crs(tmp_path: Path) -> None:
    sources = [sample("RGB.byte.tif"), sample("world.rgb.tif")]  # EPSG:32618 and EPSG:4326, 3 bands of uint8
    env = geomill_env(tmp_path / "data", workers=2)
    refused = run(env, f"sources={json.dumps([str(s) for s in sources])}")
    assert refused["status"] == "failed" and "has CRS EPSG:4326 (the others: EPSG:32618)" in refused["error"]["message"]
    doc = run(env, f"sources={json.dumps([str(s) for s in sources])}", "target_crs=EPSG:4326")
    assert doc["status"] == "completed", doc.get("error")
    result = doc["result"]
    assert [out["crs"] for out in result["outputs"]] == ["EPSG:4326", "EPSG:4326"]
    with rasterio.open(result["mosaic"]["vrt_path"]) as vrt:
        assert vrt.crs.to_epsg() == 4326 and vrt.count == 3
    cogs = [Path(out["cog_path"]) for out in result["outputs"]]
    assert_mosaic_reads_back(result["mosaic"]["vrt_path"], cogs[:1], same_mask=False)  # world.rgb shows below


@pytest.mark.slow
def test_tiles_of_one_raster_make_a_collection_whose_mosaic_is_the_raster(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(1, 65535, size=(1, 600, 700), dtype=np.uint16)
    tiles = write_tiles(tmp_path / "tiles", data, 256)
    env = geomill_env(tmp_path / "data", workers=2)
    doc = run(env, f"sources={json.dumps([str(t) for t in tiles])}", "collection_id=tiles")
    assert doc["status"] == "completed", doc.get("error")
    result = doc["result"]
    assert result["collection_id"] == "tiles" and result["item_count"] == len(tiles) == 9
    assert result["catalog_backend"] == "static"
    assert result["items"] == [t.stem for t in tiles]
    for out in result["outputs"]:
        valid, errors, _ = cog_validate(out["cog_path"], quiet=True)
        assert valid and not errors
    with rasterio.open(result["mosaic"]["vrt_path"]) as vrt:
        assert vrt.transform == ORIGIN and (vrt.width, vrt.height) == (700, 600)
        np.testing.assert_array_equal(vrt.read(), data)  # bit-exact: DEFLATE is lossless
    catalog = open_catalog(LocalStorage(tmp_path / "data"), None)
    collection = catalog.get_collection("tiles")
    validate_item_dict(collection)
    assert set(collection["assets"]) == {"mosaicjson", "vrt"}
    items = catalog.list_items("tiles", limit=1000)
    assert sorted(i["id"] for i in items) == sorted(result["items"])
    for item in items:
        validate_item_dict(item)


def _pgstac_counts(url: str, collection_id: str) -> tuple[int, int]:
    with psycopg.connect(url) as con:
        items = con.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s", (collection_id,)).fetchone()
        collections = con.execute("SELECT count(*) FROM pgstac.collections WHERE id = %s",
                                  (collection_id,)).fetchone()
    return items[0], collections[0]


@pytest.mark.slow
def test_sample_rasters_land_in_pgstac_and_a_rerun_does_not_duplicate(tmp_path: Path, pg_url: str) -> None:
    scenes = tmp_path / "data" / "bronze" / "scenes"
    scenes.mkdir(parents=True)
    for name in SAME_CRS:
        shutil.copy(sample(name), scenes / name)
    env = geomill_env(tmp_path / "data", pg_url, workers=2)
    doc = run(env, "source_prefix=bronze://scenes/")
    assert doc["status"] == "completed", doc.get("error")
    result = doc["result"]
    cid = result["collection_id"]
    assert cid.startswith("scenes-") and result["catalog_backend"] == "pgstac+static"
    assert result["items"] == ["rgb1_fake_nir_epsg3857", "shade"]
    assert _pgstac_counts(pg_url, cid) == (2, 1)
    with psycopg.connect(pg_url) as con:
        content = con.execute("SELECT content FROM pgstac.collections WHERE id = %s", (cid,)).fetchone()[0]
        hrefs = [r[0] for r in con.execute(
            "SELECT content->'assets'->'data'->>'href' FROM pgstac.items WHERE collection = %s ORDER BY id", (cid,))]
    assert Path(content["assets"]["vrt"]["href"]) == Path(result["mosaic"]["vrt_path"])  # absolute in the database
    assert hrefs == [out["cog_path"] for out in result["outputs"]]
    assert_mosaic_reads_back(result["mosaic"]["vrt_path"], [scenes / name for name in SAME_CRS])
    static = open_catalog(LocalStorage(tmp_path / "data"), None)  # the static copy holds the same
    assert sorted(i["id"] for i in static.list_items(cid)) == result["items"]
    validate_item_dict(static.get_collection(cid))

    again = run(env, "source_prefix=bronze://scenes/", force=True)  # a fresh run of the same job
    assert again["status"] == "completed" and again["job_id"] != doc["job_id"]
    assert all(out["reused"] for out in again["result"]["outputs"])
    assert _pgstac_counts(pg_url, cid) == (2, 1)
    links = [x for x in static.get_collection(cid)["links"] if x["rel"] == "item"]
    assert len(links) == 2
