"""Raster pipeline with real GDAL: raster.validate, raster.create_cog, stac.create_item and the process_raster job."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from pydantic import ValidationError
from rasterio.warp import transform_bounds
from rio_cogeo.cogeo import cog_validate

import jobrun
import samples
from geomill.catalog.base import open_catalog
from geomill.catalog.validation import (
    StacValidationFailed,
    install_offline_validator,
    validate_item_dict,
    validate_item_file,
)
from geomill.domain import InvalidInput, OutOfSpace, Task, TaskStatus
from geomill.engine.context import TaskContext
from geomill.engine.execution import run_task
from geomill.engine.registry import Registry
from geomill.jobs import raster as raster_jobs
from geomill.storage.local import LocalStorage
from geomill.tasks import raster as raster_tasks
from geomill.tasks import stac as stac_tasks
from geomill.tasks.raster.cog import CreateCogParams, create_cog
from geomill.tasks.raster.validate import ValidateRasterParams, validate_raster
from geomill.tasks.stac.item import CreateItemParams, create_item
from small_disk import fill, small_disk

PROJ_V11 = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
RASTER_V11 = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
SAMPLES = ["RGB.byte.tif", "shade.tif", "world.rgb.tif", "rgb1_fake_nir_epsg3857.tif"]


sample = samples.raster


def make_cog(ctx: TaskContext, name: str = "RGB.byte.tif", **options):
    return create_cog(CreateCogParams(source=str(sample(name)), **options), ctx)


def write_raster(path: Path, data: np.ndarray, crs: str | None = "EPSG:32618", colormap=None) -> Path:
    """A small GeoTIFF made here, for cases the sample files do not cover."""
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": data.dtype.name, "transform": Affine(30, 0, 500000, 0, -30, 4000000)}
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if colormap:
            dst.write_colormap(1, colormap)
    return path


def assert_valid_cog(path: str | Path) -> None:
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid and not errors, errors


# ---------------------------------------------------------------- raster.validate


@pytest.mark.parametrize("name", SAMPLES)
def test_validate_describes_real_rasters(name: str, ctx: TaskContext) -> None:
    path = sample(name)
    summary = validate_raster(ValidateRasterParams(source=str(path)), ctx)
    with rasterio.open(path) as ds:
        assert (summary.width, summary.height, summary.count) == (ds.width, ds.height, ds.count)
        assert summary.epsg == ds.crs.to_epsg() and summary.crs == f"EPSG:{ds.crs.to_epsg()}"
        expected = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    assert summary.bounds_wgs84 == pytest.approx(expected)
    assert summary.size_bytes == path.stat().st_size and summary.driver == "GTiff"
    assert summary.is_cog is False


def test_validate_rgb_byte_details(ctx: TaskContext) -> None:
    summary = validate_raster(ValidateRasterParams(source=str(sample("RGB.byte.tif"))), ctx)
    assert summary.epsg == 32618 and summary.dtypes == ["uint8"] * 3 and summary.nodata == 0
    assert summary.resolution == pytest.approx((300.038, 300.042), abs=1e-3)
    json.dumps(summary.model_dump(mode="json"))  # results travel as plain JSON


def test_validate_reads_storage_uris_and_recognizes_cogs(ctx: TaskContext) -> None:
    cog = make_cog(ctx)
    summary = validate_raster(ValidateRasterParams(source=cog.cog_uri), ctx)
    assert summary.is_cog is True and summary.tiled is True and summary.path == cog.path


def test_validate_refuses_a_missing_file(ctx: TaskContext, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"not found.*nope\.tif"):
        validate_raster(ValidateRasterParams(source=str(tmp_path / "nope.tif")), ctx)
    with pytest.raises(InvalidInput, match="bronze://missing.tif.*not found"):
        validate_raster(ValidateRasterParams(source="bronze://missing.tif"), ctx)


def test_validate_refuses_a_text_file(ctx: TaskContext, tmp_path: Path) -> None:
    text = tmp_path / "notes.tif"
    text.write_text("this is not a raster\n")
    with pytest.raises(InvalidInput, match=r"notes\.tif.*not a raster GDAL can read"):
        validate_raster(ValidateRasterParams(source=str(text)), ctx)


def test_validate_refuses_a_shapefile(ctx: TaskContext) -> None:
    shp = samples.data("vector", "coutwildrnp.shp")
    with pytest.raises(InvalidInput, match=r"coutwildrnp\.shp.*not a raster"):
        validate_raster(ValidateRasterParams(source=str(shp)), ctx)


def _truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_validate_refuses_a_truncated_geotiff(ctx: TaskContext, tmp_path: Path) -> None:
    broken = _truncate(sample("RGB.byte.tif"), tmp_path / "half.tif", 0.5)
    with pytest.raises(InvalidInput, match=r"half\.tif.*(damaged|truncated)") as err:
        validate_raster(ValidateRasterParams(source=str(broken)), ctx)
    assert isinstance(err.value.__cause__, rasterio.errors.RasterioError)


def test_validate_refuses_a_truncated_cog_that_still_opens(ctx: TaskContext, tmp_path: Path) -> None:
    """A COG keeps its headers first: cut short, it opens fine and only reading its last block fails."""
    cog = make_cog(ctx, compression="NONE")
    broken = _truncate(Path(cog.path), tmp_path / "cut.tif", 0.6)
    with rasterio.open(broken) as ds:
        assert ds.width == 791  # opens: only a real read finds the damage
    with pytest.raises(InvalidInput, match=r"cut\.tif.*corrupt or truncated"):
        validate_raster(ValidateRasterParams(source=str(broken)), ctx)
    with pytest.raises(InvalidInput, match="corrupt or truncated"):
        create_cog(CreateCogParams(source=str(broken)), ctx)


def test_validate_refuses_a_raster_without_crs(ctx: TaskContext) -> None:
    with pytest.raises(InvalidInput, match=r"float\.tif.*no coordinate reference system"):
        validate_raster(ValidateRasterParams(source=str(sample("float.tif"))), ctx)


def test_storage_uri_escaping_its_zone_is_refused(ctx: TaskContext) -> None:
    with pytest.raises(InvalidInput, match="escapes"):
        validate_raster(ValidateRasterParams(source="bronze://../../etc/passwd"), ctx)


# ---------------------------------------------------------------- raster.create_cog


@pytest.mark.parametrize("name", SAMPLES)
def test_create_cog_writes_a_valid_cog(name: str, ctx: TaskContext, storage: LocalStorage) -> None:
    result = make_cog(ctx, name)
    assert result.cog_uri.startswith("silver://cogs/") and result.cog_uri.endswith(".tif")
    assert Path(result.path) == storage.local_path(result.cog_uri)
    assert_valid_cog(result.path)
    with rasterio.open(sample(name)) as src, rasterio.open(result.path) as cog:
        assert cog.crs == src.crs and (cog.width, cog.height, cog.count) == (src.width, src.height, src.count)
        assert cog.compression.name == "deflate"
        assert bool(cog.overviews(1)) == (max(cog.width, cog.height) > 512)  # one 512 block needs no overview
        assert cog.nodata == src.nodata
        assert np.array_equal(cog.read(1, window=((0, 64), (0, 64))), src.read(1, window=((0, 64), (0, 64))))
    assert result.valid and not result.reused and result.compression == "DEFLATE"
    assert result.resampling == "average" and result.size_bytes == Path(result.path).stat().st_size
    assert not list(Path(result.path).parent.glob(".*tmp*")), "temporary files left behind"


def test_create_cog_reprojects_to_4326(ctx: TaskContext) -> None:
    result = make_cog(ctx, "RGB.byte.tif", target_crs="EPSG:4326")
    assert_valid_cog(result.path)
    assert result.epsg == 4326 and result.crs == "EPSG:4326"
    with rasterio.open(result.path) as cog, rasterio.open(sample("RGB.byte.tif")) as src:
        assert cog.crs.to_epsg() == 4326
        expected = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        assert cog.bounds == pytest.approx(expected, abs=0.01)


def test_reprojection_of_a_raster_without_nodata_adds_alpha(ctx: TaskContext) -> None:
    result = make_cog(ctx, "world.rgb.tif", target_crs="EPSG:3857")
    assert_valid_cog(result.path)
    with rasterio.open(result.path) as cog:
        assert cog.crs.to_epsg() == 3857 and cog.count == 4
        assert cog.colorinterp[3] == rasterio.enums.ColorInterp.alpha


@pytest.mark.parametrize("compression", ["zstd", "LZW", "JPEG", "NONE"])
def test_create_cog_compression_choices(compression: str, ctx: TaskContext) -> None:
    result = make_cog(ctx, "RGB.byte.tif", compression=compression)
    assert_valid_cog(result.path)
    with rasterio.open(result.path) as cog:
        assert result.compression == compression.upper()
        assert (cog.compression.name if cog.compression else "none") == compression.lower()


def test_palette_rasters_default_to_nearest_and_keep_their_colors(ctx: TaskContext, tmp_path: Path) -> None:
    classes = (np.arange(600 * 600, dtype="uint8") % 4).reshape(1, 600, 600)
    palette = {0: (0, 0, 0, 255), 1: (255, 0, 0, 255), 2: (0, 255, 0, 255), 3: (0, 0, 255, 255)}
    src = write_raster(tmp_path / "classes.tif", classes, colormap=palette)
    result = create_cog(CreateCogParams(source=str(src)), ctx)
    assert result.resampling == "nearest"
    assert_valid_cog(result.path)
    with rasterio.open(result.path) as cog:
        assert cog.colormap(1)[2] == (0, 255, 0, 255)
        assert set(np.unique(cog.read(1, out_shape=(150, 150)))) <= {0, 1, 2, 3}  # overviews never blend classes


def test_create_cog_is_idempotent(ctx: TaskContext) -> None:
    first = make_cog(ctx)
    before = Path(first.path).stat().st_mtime_ns
    second = make_cog(ctx)
    assert second.reused is True and second.cog_uri == first.cog_uri
    assert Path(second.path).stat().st_mtime_ns == before
    other = make_cog(ctx, compression="ZSTD")
    assert other.cog_uri != first.cog_uri and other.reused is False


def test_create_cog_replaces_a_broken_output(ctx: TaskContext) -> None:
    first = make_cog(ctx)
    Path(first.path).write_bytes(b"half a file")
    again = make_cog(ctx)
    assert again.reused is False and again.cog_uri == first.cog_uri
    assert_valid_cog(again.path)


def test_create_cog_output_key(ctx: TaskContext, storage: LocalStorage) -> None:
    result = make_cog(ctx, output_key="custom/rgb.tif")
    assert result.cog_uri == "silver://custom/rgb.tif"
    assert_valid_cog(storage.local_path("silver://custom/rgb.tif"))


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"compression": "SUPERZIP"}, r"unknown compression 'SUPERZIP'; allowed: DEFLATE, ZSTD"),
        ({"resampling": "smooth"}, r"unknown resampling 'smooth'; allowed: nearest, average"),
        ({"target_crs": "EPSG:999999"}, r"target_crs 'EPSG:999999' is not a CRS"),
    ],
)
def test_create_cog_refuses_bad_options(options: dict, pattern: str, ctx: TaskContext, storage: LocalStorage) -> None:
    with pytest.raises(InvalidInput, match=pattern):
        make_cog(ctx, **options)
    assert not list(storage.zone_path("silver").rglob("*.tif"))


def test_create_cog_refuses_jpeg_for_non_byte_data(ctx: TaskContext, tmp_path: Path) -> None:
    src = write_raster(tmp_path / "dem.tif", np.ones((1, 64, 64), dtype="float32"))
    with pytest.raises(InvalidInput, match=r"JPEG needs 8-bit.*'.*dem\.tif' has float32"):
        create_cog(CreateCogParams(source=str(src), compression="jpeg"), ctx)


def test_create_cog_refuses_raster_without_crs(ctx: TaskContext) -> None:
    with pytest.raises(InvalidInput, match=r"float\.tif.*no coordinate reference system"):
        make_cog(ctx, "float.tif")


# ---------------------------------------------------------------- stac.create_item and the catalog


def make_item(ctx: TaskContext, name: str = "RGB.byte.tif", **item_options):
    cog = make_cog(ctx, name)
    return cog, create_item(CreateItemParams(cog_uri=cog.cog_uri, source=str(sample(name)), **item_options), ctx)


def test_stac_item_validates_offline_with_extensions(ctx: TaskContext) -> None:
    cog, item = make_item(ctx)
    doc = json.loads(Path(item.item_path).read_text())
    assert PROJ_V11 in doc["stac_extensions"] and RASTER_V11 in doc["stac_extensions"]
    checked = validate_item_file(item.item_path)
    assert PROJ_V11 in checked and RASTER_V11 in checked
    asset = doc["assets"]["data"]
    assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized" and asset["roles"] == ["data"]
    assert (Path(item.item_path).parent / asset["href"]).resolve() == Path(cog.path)
    assert doc["properties"]["proj:epsg"] == 32618 and len(asset["raster:bands"]) == 3
    assert item.item_uri == f"silver://catalog/geomill-rasters/{item.item_id}/{item.item_id}.json"


@pytest.mark.parametrize(
    ("field", "breaks"),
    [
        ("proj", lambda d: d["properties"].update({"proj:epsg": "thirty-two"})),
        ("proj", lambda d: d["properties"].update({"proj:shape": [718]})),
        ("raster", lambda d: d["assets"]["data"]["raster:bands"][0].update({"data_type": "uint7"})),
    ],
)
def test_extension_schemas_are_really_checked(field: str, breaks, ctx: TaskContext) -> None:
    _, item = make_item(ctx)
    doc = json.loads(Path(item.item_path).read_text())
    breaks(doc)
    with pytest.raises(StacValidationFailed, match=PROJ_V11 if field == "proj" else RASTER_V11):
        validate_item_dict(doc)
    broken = Path(item.item_path).with_name("broken.json")
    broken.write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match="broken.json"):
        validate_item_file(broken)


@pytest.mark.parametrize("name", ["RGB.byte.tif", "shade.tif", "rgb1_fake_nir_epsg3857.tif"])
def test_item_bbox_is_the_rasters_wgs84_bounds(name: str, ctx: TaskContext) -> None:
    _, item = make_item(ctx, name)
    with rasterio.open(sample(name)) as src:
        expected = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    assert item.bbox == pytest.approx(list(expected), abs=1e-6)
    geometry = json.loads(Path(item.item_path).read_text())["geometry"]
    xs = [p[0] for p in geometry["coordinates"][0]]
    assert min(xs) == pytest.approx(expected[0], abs=1e-6) and max(xs) == pytest.approx(expected[2], abs=1e-6)


def test_item_datetime_is_deterministic(ctx: TaskContext) -> None:
    _, first = make_item(ctx)
    _, second = make_item(ctx)
    assert first.datetime == second.datetime and first.item_id == second.item_id


def test_catalog_links_resolve_with_pystac(ctx: TaskContext) -> None:
    items = [make_item(ctx, name)[1] for name in ("RGB.byte.tif", "shade.tif", "world.rgb.tif")]
    make_item(ctx, "RGB.byte.tif")  # re-adding an item must not duplicate it
    catalog = pystac.Catalog.from_file(items[0].catalog_path)
    collections = list(catalog.get_children())
    assert [c.id for c in collections] == ["geomill-rasters"]
    found = {i.id: i for i in catalog.get_items(recursive=True)}
    assert set(found) == {i.item_id for i in items}
    for item in found.values():
        assert Path(item.assets["data"].get_absolute_href()).is_file()
        assert item.get_collection().id == "geomill-rasters"
    install_offline_validator()
    catalog.validate_all()
    extent = collections[0].extent.spatial.bboxes[0]
    assert extent == pytest.approx([-180, -90, 180, 90])


def test_items_in_two_collections(ctx: TaskContext) -> None:
    _, a = make_item(ctx, "RGB.byte.tif", collection_id="landsat")
    _, b = make_item(ctx, "shade.tif", collection_id="dem", item_id="shade")
    catalog = pystac.Catalog.from_file(a.catalog_path)
    assert sorted(c.id for c in catalog.get_children()) == ["dem", "landsat"]
    assert b.item_id == "shade" and Path(b.item_path).name == "shade.json"
    collection = json.loads(Path(a.collection_path).read_text())
    assert collection["extent"]["spatial"]["bbox"][0] == pytest.approx(a.bbox)


def test_stac_item_refuses_unsafe_ids(ctx: TaskContext) -> None:
    cog = make_cog(ctx)
    with pytest.raises(InvalidInput, match="item id '../x' is not a valid id"):
        create_item(CreateItemParams(cog_uri=cog.cog_uri, source=cog.source, item_id="../x"), ctx)


def _add_item_in_another_process(args: tuple[str, str, str, str]) -> str:
    root, cog_uri, source, item_id = args
    store = LocalStorage(Path(root))
    ctx = TaskContext(task_id=item_id, job_id="j", stage=3, attempt=1, storage=store, catalog=open_catalog(store))
    return create_item(CreateItemParams(cog_uri=cog_uri, source=source, item_id=item_id), ctx).item_id


def test_concurrent_writers_keep_every_item(ctx: TaskContext, storage: LocalStorage) -> None:
    cogs = [make_cog(ctx, name) for name in ("RGB.byte.tif", "shade.tif", "rgb1_fake_nir_epsg3857.tif")]
    jobs = [(str(storage.root), cogs[i % 3].cog_uri, cogs[i % 3].source, f"item-{i}") for i in range(6)]
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        written = pool.map(_add_item_in_another_process, jobs)
    assert sorted(written) == [f"item-{i}" for i in range(6)]
    catalog_dir = storage.local_path("silver://catalog")
    collection = json.loads((catalog_dir / "geomill-rasters" / "collection.json").read_text())
    hrefs = sorted(link["href"] for link in collection["links"] if link["rel"] == "item")
    assert hrefs == [f"./item-{i}/item-{i}.json" for i in range(6)]
    catalog = pystac.Catalog.from_file(str(catalog_dir / "catalog.json"))
    assert len(list(catalog.get_items(recursive=True))) == 6
    bbox = collection["extent"]["spatial"]["bbox"][0]
    for item in catalog.get_items(recursive=True):
        assert bbox[0] <= item.bbox[0] and bbox[1] <= item.bbox[1] and bbox[2] >= item.bbox[2] and bbox[3] >= item.bbox[3]
    assert not list(catalog_dir.rglob("*.tmp"))


# ---------------------------------------------------------------- registration and the process_raster job


def build_registry() -> Registry:
    registry = Registry()
    raster_tasks.register(registry)
    stac_tasks.register(registry)
    raster_jobs.register(registry)
    return registry


def test_registration() -> None:
    registry = build_registry()
    names = [t.name for t in registry.task_types()]
    assert {"raster.create_cog", "raster.validate", "stac.create_item", "raster.tile_scheme", "raster.extract_tile",
            "raster.mosaic", "raster.remove_intermediates", "stac.create_collection"} <= set(names)
    assert {t.queue for t in registry.task_types() if t.name != "raster.extract_tile"} == {"raster-tasks"}
    assert registry.task_type("raster.extract_tile").queue == "long-tasks"
    assert registry.task_type("raster.create_cog").timeout_seconds >= 3600
    job = registry.job_type("process_raster")
    # the union of the single and the tiled path (stages of the path not taken plan no task)
    assert [s.name for s in job.stages] == ["validate", "tile_scheme", "extract_tiles", "create_cog", "mosaic",
                                            "stac_item"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source": "a.tif", "compression": "zip"}, "compression"),
        ({"source": "a.tif", "resampling": "smooth"}, "resampling"),
        ({"source": "a.tif", "target_crs": "EPSG:999999"}, "target_crs"),
        ({"source": ""}, "source"),
    ],
)
def test_job_params_refuse_bad_values_before_anything_runs(params: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        raster_jobs.ProcessRasterParams.model_validate(params)
    assert err.value.errors()[0]["loc"] == (field,)


def test_job_params_are_normalized() -> None:
    params = raster_jobs.ProcessRasterParams(source="a.tif", compression="zstd", resampling="Bilinear",
                                             target_crs=" EPSG:4326 ")
    assert (params.compression, params.resampling, params.target_crs) == ("ZSTD", "bilinear", "EPSG:4326")


def run_job(registry: Registry, params: raster_jobs.ProcessRasterParams, ctx: TaskContext) -> dict:
    """process_raster through the registered handlers (tests/jobrun.py): the engine, minus the store."""
    return jobrun.run_job(registry, "process_raster", params, ctx)[0]


def test_process_raster_job_end_to_end(ctx: TaskContext, storage: LocalStorage) -> None:
    bronze = storage.zone_path("bronze") / "shade.tif"
    shutil.copy(sample("shade.tif"), bronze)
    params = raster_jobs.ProcessRasterParams(source="bronze://shade.tif", target_crs="EPSG:4326")
    outcome = run_job(build_registry(), params, ctx)
    assert outcome["source"] == "bronze://shade.tif" and len(outcome["outputs"]) == 1
    out = outcome["outputs"][0]
    assert out["cog_uri"].startswith("silver://cogs/shade-") and out["reused"] is False and out["valid"]
    assert_valid_cog(out["cog_path"])
    assert out["crs"] == "EPSG:4326" and out["validate"]["epsg"] == 3857
    validate_item_file(out["stac_item_path"])
    assert out["stac_item_uri"].startswith("silver://catalog/geomill-rasters/")
    assert len(out["bbox"]) == 4
    again = run_job(build_registry(), params, ctx)
    assert again["outputs"][0]["reused"] is True and again["outputs"][0]["cog_uri"] == out["cog_uri"]
    json.dumps(outcome)


# disk full (issue 25): a small tmpfs holds the silver zone


@pytest.fixture
def small_silver(tmp_path: Path) -> Iterator[LocalStorage]:
    with small_disk(tmp_path / "small", "4m") as root:
        store = LocalStorage(root / "store")
        store.ensure_zones()
        yield store


def noise_raster(path: Path, size: int = 1024) -> Path:
    """Incompressible bytes: 3 x size x size, so DEFLATE cannot shrink the COG below the raw size."""
    rng = np.random.default_rng(25)
    return write_raster(path, rng.integers(0, 255, (3, size, size), dtype="uint8"))


def test_a_cog_bigger_than_the_disk_fails_as_out_of_space_not_retried_at_once(
    small_silver: LocalStorage, tmp_path: Path
) -> None:
    source = noise_raster(tmp_path / "noise.tif")  # ~3 MiB raw, ~4 MiB with overviews: more than the 4 MiB disk
    registry = Registry()
    raster_tasks.register(registry)
    task = Task(task_id="t-full", job_id="j", stage=1, task_key="k", task_type="raster.create_cog",
                params={"source": str(source)}, status=TaskStatus.PROCESSING, attempt=1, max_attempts=3,
                target_queue="raster-tasks", timeout_seconds=60, created_at=datetime.now(UTC))
    ctx = TaskContext(task_id="t-full", job_id="j", stage=1, attempt=1, storage=small_silver)
    out = run_task(registry, task, ctx)
    cogs = small_silver.zone_path("silver") / "cogs"
    assert out.error is not None and out.error["type"] == "OutOfSpace", out.error
    assert str(cogs) in out.error["message"] and "bytes free" in out.error["message"]
    assert "GDAL said:" in out.error["message"] and "TIFF" in out.error["message"]  # libtiff's own words
    assert out.retry_in is None and out.error["retryable"] is False  # failed at once: a retry would fill it again
    assert list(cogs.iterdir()) == []  # no temporary file left


def test_a_cog_is_refused_before_writing_when_the_disk_has_less_room_than_its_estimate(
    small_silver: LocalStorage, tmp_path: Path
) -> None:
    source = noise_raster(tmp_path / "noise.tif")
    fill(small_silver.root, leave_bytes=512 * 1024)
    with pytest.raises(OutOfSpace) as caught:
        create_cog(CreateCogParams(source=str(source)), TaskContext(
            task_id="t", job_id="j", stage=1, attempt=1, storage=small_silver))
    cogs = small_silver.zone_path("silver") / "cogs"
    assert caught.value.path == str(cogs) and caught.value.free_bytes < caught.value.needed_bytes
    assert "GDAL said" not in str(caught.value)  # refused up front: GDAL never ran
    assert list(cogs.iterdir()) == []
