"""Tiled processing of large rasters (process_raster above the threshold, process_large_raster) with real GDAL.

The threshold is lowered (settings / GEOMILL_LARGE_RASTER_THRESHOLD_MB) so a generated 2000x1500 uint16 raster
(5.7 MB) counts as large; tiles are 512 px, so the grid is 4 x 3 tiles with clipped last row and column.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

import samples
from geomill.catalog.base import open_catalog
from geomill.catalog.validation import validate_item_dict
from geomill.engine.context import Limits, TaskContext
from geomill.jobs import build_registry
from geomill.jobs.large_raster import ProcessLargeRasterParams
from geomill.jobs.raster import ProcessRasterParams
from geomill.storage.local import LocalStorage
from geomill.tasks.raster.tiles import tile_windows
from jobrun import run_job
from procs import geomill_env, sqlite_rows, start, stop, submit, wait_for, wait_terminal

WIDTH, HEIGHT, TILE = 2000, 1500, 512
NODATA = 0


def ramp(row: int, rows: int, width: int) -> np.ndarray:
    """Rows [row, row + rows) of a raster whose values differ along a row and between rows (never the nodata 0),
    so a shifted pixel shows."""
    values = (np.arange(row, row + rows, dtype=np.uint64)[:, None] * width + np.arange(width, dtype=np.uint64))
    return (values % 65521 + 1).astype(np.uint16)


def write_source(path: Path, height: int = HEIGHT, width: int = WIDTH) -> Path:
    """A tiled uint16 GeoTIFF in UTM 18N with nodata 0, written strip by strip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16",
                       crs="EPSG:32618", transform=from_origin(500_000, 4_000_000, 30, 30), nodata=NODATA,
                       tiled=True, blockxsize=512, blockysize=512) as dst:
        for row in range(0, height, 512):
            rows = min(512, height - row)
            dst.write(ramp(row, rows, width), 1, window=Window(0, row, width, rows))
    return path


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "store")
    store.ensure_zones()
    return store


def context(storage: LocalStorage, threshold_mb: float) -> TaskContext:
    return TaskContext(task_id="t", job_id="j", stage=1, attempt=1, storage=storage, catalog=open_catalog(storage),
                       limits=Limits(gdal_cache_mb=16, large_raster_threshold_mb=threshold_mb))


def assert_valid_cog(path: str | Path) -> None:
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid and not errors, errors


def tile_origins(tiles: list[dict], grid_transform: Affine) -> list[tuple[int, int, int, int]]:
    """(col_off, row_off, width, height) of each tile COG in the output grid, read back from the files."""
    boxes = []
    for tile in tiles:
        with rasterio.open(tile["cog_path"]) as ds:
            col, row = ~grid_transform * (ds.transform.c, ds.transform.f)
            assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6  # on the grid, not resampled
            assert (ds.transform.a, ds.transform.e) == pytest.approx((grid_transform.a, grid_transform.e))
            boxes.append((round(col), round(row), ds.width, ds.height))
    return boxes


def assert_exact_cover(boxes: list[tuple[int, int, int, int]], width: int, height: int) -> None:
    """Every output pixel in exactly one tile: no gap, no overlap (the declared buffer is 0)."""
    hits = np.zeros((height, width), np.uint8)
    for col, row, w, h in boxes:
        assert col >= 0 and row >= 0 and col + w <= width and row + h <= height
        hits[row:row + h, col:col + w] += 1
    assert (hits == 1).all(), f"{(hits == 0).sum()} pixels uncovered, {(hits > 1).sum()} covered twice"


# ---------------------------------------------------------------- the tiling scheme


@pytest.mark.parametrize(("width", "height", "size"), [(2000, 1500, 512), (512, 512, 512), (1, 1, 256),
                                                        (70000, 300, 4096)])
def test_tile_windows_cover_the_grid_exactly(width: int, height: int, size: int) -> None:
    tiles = tile_windows(width, height, size)
    assert len(tiles) == -(-width // size) * -(-height // size)
    assert [t.key for t in tiles] == sorted(t.key for t in tiles)  # keys sort in grid order
    if width * height <= 10_000_000:
        assert_exact_cover([(t.col_off, t.row_off, t.width, t.height) for t in tiles], width, height)
    assert sum(t.width * t.height for t in tiles) == width * height


# ---------------------------------------------------------------- in-process: the tiled path and its outputs


def test_large_input_takes_the_tiled_path_and_the_mosaic_is_bit_exact(storage: LocalStorage) -> None:
    write_source(storage.zone_path("bronze") / "big.tif")
    params = ProcessRasterParams(source="bronze://big.tif", tile_size=TILE)
    result, stages = run_job(build_registry(), "process_raster", params, context(storage, threshold_mb=1))
    json.dumps(result)
    assert result["path"] == "tiled"
    assert "GEOMILL_LARGE_RASTER_THRESHOLD_MB=1" in result["reason"] and "larger than" in result["reason"]
    counts = {s.name: len(s.results) for s in stages}
    assert counts == {"validate": 1, "tile_scheme": 1, "extract_tiles": 12, "create_cog": 12, "mosaic": 2,
                      "stac_item": 1}
    tiled = result["tiled"]
    grid = tiled["tiling"]["grid"]
    assert (grid["width"], grid["height"], tiled["tiling"]["buffer"]) == (WIDTH, HEIGHT, 0)
    assert len(tiled["tiles"]) == 12
    for tile in tiled["tiles"]:
        assert tile["valid"] and tile["cog_uri"].startswith("silver://tiles/big-")
        assert_valid_cog(tile["cog_path"])
    assert_exact_cover(tile_origins(tiled["tiles"], Affine(*grid["transform"])), WIDTH, HEIGHT)
    mosaic = tiled["mosaic"]
    assert mosaic["count"] == 12 and Path(mosaic["mosaicjson_path"]).is_file()
    with rasterio.open(storage.zone_path("bronze") / "big.tif") as src, rasterio.open(mosaic["vrt_path"]) as vrt:
        assert (vrt.width, vrt.height, vrt.crs, vrt.transform) == (src.width, src.height, src.crs, src.transform)
        assert vrt.nodata == NODATA
        assert np.array_equal(vrt.read(1), src.read(1))  # lossless DEFLATE: bit-exact
    collection = tiled["collection"]
    assert collection["item_count"] == 12 and len(collection["item_ids"]) == 12
    doc = json.loads(Path(collection["collection_path"]).read_text())
    validate_item_dict(doc)
    assert tiled["intermediates_removed"]["files"] == 12
    assert not storage.local_path("silver://tiles").joinpath(tiled["tiling"]["name"], "extract").exists()


def test_reprojected_tiles_match_a_whole_image_warp_within_one_pixel(storage: LocalStorage) -> None:
    """Tiles reprojected to EPSG:4326 (nearest) vs rasterio.warp.reproject of the whole source on the same grid.

    GDAL's warper approximates the coordinate transformation linearly within 0.125 px per chunk; a tile is a
    different chunk than in a whole-image warp, so a few pixels pick the neighbouring source pixel. Asserted:
    the grid is the default grid of the reprojection; at least 95% of the pixels are equal; every pixel equals the
    reference at its own position or at one of its 8 neighbours; nodata (outside the footprint) differs only
    within one pixel of the footprint's edge.
    """
    source = write_source(storage.zone_path("bronze") / "big.tif")
    params = ProcessLargeRasterParams(source="bronze://big.tif", tile_size=TILE, target_crs="EPSG:4326",
                                      resampling="nearest")
    result, _ = run_job(build_registry(), "process_large_raster", params, context(storage, threshold_mb=2048))
    assert result["path"] == "tiled" and "always" in result["reason"]
    tiled = result["tiled"]
    grid = tiled["tiling"]["grid"]
    transform = Affine(*grid["transform"])
    with rasterio.open(source) as src:
        expected_transform, w, h = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        assert (grid["width"], grid["height"]) == (w, h) and transform.almost_equals(expected_transform)
        reference = np.full((h, w), NODATA, np.uint16)
        reproject(rasterio.band(src, 1), reference, dst_transform=transform, dst_crs="EPSG:4326",
                  resampling=Resampling.nearest, src_nodata=NODATA, dst_nodata=NODATA)
    for tile in tiled["tiles"]:
        assert_valid_cog(tile["cog_path"])
    assert_exact_cover(tile_origins(tiled["tiles"], transform), w, h)
    with rasterio.open(tiled["mosaic"]["vrt_path"]) as vrt:
        assert vrt.crs.to_epsg() == 4326 and (vrt.width, vrt.height) == (w, h)
        assert vrt.transform.almost_equals(transform)
        mosaic = vrt.read(1)
    equal = mosaic == reference
    assert equal.mean() >= 0.95, equal.mean()
    assert within_one_source_pixel(mosaic, transform, source).all()
    assert within_one_source_pixel(reference, transform, source).all()  # the yardstick holds for GDAL's own warp
    assert (mosaic != NODATA).sum() > 0.5 * w * h


def within_one_source_pixel(warped: np.ndarray, transform: Affine, source: Path) -> np.ndarray:
    """Per output pixel: its value is the value of the source pixel under its centre (exact transformation) or of
    one of that pixel's 8 neighbours; outside the source, only nodata. The source holds no 0 (nodata) value."""
    h, w = warped.shape
    rows, cols = np.mgrid[0:h, 0:w]
    xs, ys = transform * (cols.ravel() + 0.5, rows.ravel() + 0.5)
    with rasterio.open(source) as src:
        sx, sy = rasterio.warp.transform("EPSG:4326", src.crs, xs, ys)
        scol, srow = ~src.transform * (np.asarray(sx), np.asarray(sy))
        padded = np.pad(src.read(1), 2, constant_values=NODATA)
    last_row, last_col = padded.shape[0] - 1, padded.shape[1] - 1  # far outside: only padding around it
    scol = np.clip(np.floor(scol).astype(np.int64) + 2, 0, last_col).reshape(h, w)
    srow = np.clip(np.floor(srow).astype(np.int64) + 2, 0, last_row).reshape(h, w)
    near = np.zeros((h, w), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= warped == padded[np.clip(srow + dy, 0, last_row), np.clip(scol + dx, 0, last_col)]
    return near


def test_multiband_sample_and_float_nan_nodata_round_trip(storage: LocalStorage, tmp_path: Path) -> None:
    """A real 3-band RGB sample (uint8, nodata 0) and a float32 raster with NaN nodata: mosaic == source."""
    rgb = samples.raster("RGB.byte.tif")
    floats = tmp_path / "floats.tif"
    data = np.linspace(-50, 50, 600 * 700, dtype=np.float32).reshape(1, 600, 700)
    data[0, :40, :] = np.nan
    with rasterio.open(floats, "w", driver="GTiff", width=700, height=600, count=1, dtype="float32", nodata=np.nan,
                       crs="EPSG:32618", transform=from_origin(500_000, 4_000_000, 30, 30)) as dst:
        dst.write(data)
    for source in (rgb, floats):
        params = ProcessLargeRasterParams(source=str(source), tile_size=256)
        result, _ = run_job(build_registry(), "process_large_raster", params, context(storage, 2048))
        json.dumps(result, allow_nan=False)  # NaN nodata travels as "nan"
        for tile in result["tiled"]["tiles"]:
            assert_valid_cog(tile["cog_path"])
        with rasterio.open(source) as src, rasterio.open(result["tiled"]["mosaic"]["vrt_path"]) as vrt:
            assert (vrt.count, vrt.dtypes, vrt.shape) == (src.count, src.dtypes, src.shape)
            assert np.array_equal(vrt.read(), src.read(), equal_nan=True)


def test_small_input_stays_on_the_single_path(storage: LocalStorage) -> None:
    write_source(storage.zone_path("bronze") / "small.tif", height=300, width=400)
    params = ProcessRasterParams(source="bronze://small.tif", tile_size=TILE)
    result, stages = run_job(build_registry(), "process_raster", params, context(storage, threshold_mb=2048))
    assert result["path"] == "single" and "not larger than GEOMILL_LARGE_RASTER_THRESHOLD_MB=2048" in result["reason"]
    assert [len(s.results) for s in stages] == [1, 0, 0, 1, 0, 1]
    assert len(result["outputs"]) == 1 and "tiled" not in result
    assert_valid_cog(result["outputs"][0]["cog_path"])


def test_tiled_job_is_idempotent(storage: LocalStorage) -> None:
    """Running the same tiled job again reuses every tile COG and gives the same outputs."""
    write_source(storage.zone_path("bronze") / "big.tif", height=700, width=900)
    params = ProcessLargeRasterParams(source="bronze://big.tif", tile_size=TILE)
    first, _ = run_job(build_registry(), "process_large_raster", params, context(storage, 2048))
    again, _ = run_job(build_registry(), "process_large_raster", params, context(storage, 2048))
    assert [t["reused"] for t in first["tiled"]["tiles"]] == [False] * 4
    assert [t["reused"] for t in again["tiled"]["tiles"]] == [True] * 4
    assert [t["cog_uri"] for t in again["tiled"]["tiles"]] == [t["cog_uri"] for t in first["tiled"]["tiles"]]
    assert again["tiled"]["mosaic"]["vrt_uri"] == first["tiled"]["mosaic"]["vrt_uri"]


# ---------------------------------------------------------------- real processes: a long worker killed mid-extraction


def _tasks(data: Path, job_id: str, task_type: str | None = None) -> list:
    sql = "SELECT * FROM tasks WHERE job_id = ?" + (" AND task_type = ?" if task_type else "")
    return sqlite_rows(data, sql, job_id, *([task_type] if task_type else []))


@pytest.mark.slow
def test_long_worker_killed_during_tile_extraction_then_a_new_one_finishes(tmp_path: Path) -> None:
    """Extraction runs on long-tasks only. The long worker is SIGKILLed (whole process group) while it extracts a
    tile; nothing else runs the tiles; once a new long worker starts, the expired leases are reclaimed and the
    job completes with every tile COG valid."""
    data = tmp_path / "data"
    # 72 MB; reprojected to EPSG:4326: 3 x 2 tiles of 3072
    source = write_source(tmp_path / "in" / "big.tif", height=6144, width=6144)
    env = geomill_env(data, lease_seconds=2, janitor_interval_seconds=0.3, large_raster_threshold_mb=8,
                      workers=1)
    platform = start(dict(env, GEOMILL_APP_NAME="platform"), "serve", "--no-http", "--queues",
                     "jobs,raster-tasks,default-tasks")
    procs = [platform]
    try:
        job_id = submit(env, "process_raster", source=str(source), tile_size=3072, target_crs="EPSG:4326",
                        resampling="lanczos")
        queued = wait_for(lambda: _tasks(data, job_id, "raster.extract_tile"), 60, "the extraction tasks")
        assert len(queued) >= 4 and {t["target_queue"] for t in queued} == {"long-tasks"}
        long_env = dict(env, GEOMILL_APP_NAME="long")
        first = start(long_env, "serve", "--no-http", "--mode", "worker_long")
        procs.append(first)
        victim = wait_for(lambda: [t for t in _tasks(data, job_id, "raster.extract_tile")
                                   if t["status"] == "processing"], 60, "a tile extraction to start", 0.05)[0]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        killed = {t["task_id"]: t for t in _tasks(data, job_id, "raster.extract_tile")}
        assert killed[victim["task_id"]]["status"] == "processing"  # cut off mid-extraction
        time.sleep(3)  # leases expire; no long worker: the tiles wait
        assert not [t for t in _tasks(data, job_id, "raster.extract_tile") if t["status"] == "failed"]
        procs.append(start(long_env, "serve", "--no-http", "--mode", "worker_long"))
        doc = wait_terminal(env, job_id, timeout=240)
    finally:
        stop(*procs)
    assert doc["status"] == "completed", doc
    extracted = {t["task_id"]: t for t in _tasks(data, job_id, "raster.extract_tile")}
    assert extracted[victim["task_id"]]["attempt"] == 2 and extracted[victim["task_id"]]["status"] == "completed"
    assert all(t["executed_by_app"].startswith("long#") for t in extracted.values())
    result = json.loads(sqlite_rows(data, "SELECT result FROM jobs WHERE job_id = ?", job_id)[0]["result"])
    assert result["path"] == "tiled"
    tiles = result["tiled"]["tiles"]
    assert len(tiles) == len(extracted)
    for tile in tiles:
        assert_valid_cog(tile["cog_path"])
    grid = result["tiled"]["tiling"]["grid"]
    assert_exact_cover(tile_origins(tiles, Affine(*grid["transform"])), grid["width"], grid["height"])
