"""raster.mosaic with COGs generated here: the VRT reads back the sources, the MosaicJSON indexes them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.windows import Window, from_bounds

from geomill.domain import InvalidInput
from geomill.engine.context import TaskContext
from geomill.storage.local import LocalStorage
from geomill.tasks.raster.mosaic import MosaicParams, create_mosaic

ORIGIN = Affine(10, 0, 500000, 0, -10, 4000000)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "store")
    store.ensure_zones()
    return store


@pytest.fixture
def ctx(storage: LocalStorage) -> TaskContext:
    return TaskContext(task_id="t", job_id="j", stage=1, attempt=1, storage=storage)


def write_cog(storage: LocalStorage, name: str, data: np.ndarray, transform: Affine, crs: str = "EPSG:32618",
              colorinterp: list[ColorInterp] | None = None, **profile: object) -> str:
    """A COG in silver://cogs written by GDAL's COG driver; returns its URI."""
    uri = f"silver://cogs/{name}.tif"
    path = storage.local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="COG", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype.name, crs=crs, transform=transform, BLOCKSIZE=256, **profile) as dst:
        dst.write(data)
        if colorinterp:
            dst.colorinterp = colorinterp
    return uri


def tiles_of(storage: LocalStorage, data: np.ndarray, size: tuple[int, int], **profile: object) -> list[str]:
    """Cut `data` (bands, rows, cols) at ORIGIN into COG tiles of `size` (rows, cols), row by row."""
    uris = []
    for row in range(0, data.shape[1], size[0]):
        for col in range(0, data.shape[2], size[1]):
            part = data[:, row:row + size[0], col:col + size[1]]
            uris.append(write_cog(storage, f"tile_{row}_{col}", part, ORIGIN @ Affine.translation(col, row),
                                  **profile))
    return uris


@pytest.fixture
def source() -> np.ndarray:
    rng = np.random.default_rng(6)
    return rng.integers(1, 65535, size=(2, 700, 900), dtype=np.uint16)


def test_vrt_of_tiles_reads_back_the_source_bit_exact(ctx: TaskContext, storage: LocalStorage,
                                                      source: np.ndarray) -> None:
    cogs = tiles_of(storage, source, (300, 400), nodata=0)  # ragged last row and column
    result = create_mosaic(MosaicParams(cogs=cogs, name="tiles"), ctx)
    assert (result.count, result.width, result.height) == (9, 900, 700)
    assert result.vrt_uri == "silver://mosaics/tiles.vrt" and result.mosaicjson_uri == "silver://mosaics/tiles.json"
    with rasterio.open(result.vrt_path) as vrt:
        assert vrt.transform == ORIGIN and vrt.crs.to_epsg() == 32618 and vrt.nodata == 0
        assert vrt.dtypes == ("uint16", "uint16")
        np.testing.assert_array_equal(vrt.read(), source)
    assert "../cogs/tile_0_0.tif" in Path(result.vrt_path).read_text()  # relative to the VRT


def test_vrt_still_reads_after_the_silver_folder_moves(ctx: TaskContext, storage: LocalStorage,
                                                       source: np.ndarray, tmp_path: Path) -> None:
    create_mosaic(MosaicParams(cogs=tiles_of(storage, source, (350, 450)), name="moved"), ctx)
    moved = tmp_path / "elsewhere"
    storage.zone_path("silver").rename(moved)
    with rasterio.open(moved / "mosaics" / "moved.vrt") as vrt:
        np.testing.assert_array_equal(vrt.read(), source)


def test_mosaicjson_indexes_every_cog_in_webmercator_quadkeys(ctx: TaskContext, storage: LocalStorage,
                                                             source: np.ndarray) -> None:
    cogs = tiles_of(storage, source, (300, 400))
    result = create_mosaic(MosaicParams(cogs=cogs, name="index", quadkey_zoom=15), ctx)
    doc = json.loads(Path(result.mosaicjson_path).read_text())
    assert doc["mosaicjson"] == "0.0.3" and doc["name"] == "index" and doc["quadkey_zoom"] == 15
    assert doc["minzoom"] <= doc["maxzoom"] and doc["bounds"] == pytest.approx(result.bounds)
    assert all(len(quadkey) == 15 for quadkey in doc["tiles"])
    paths = {str(storage.local_path(uri)) for uri in cogs}
    listed = {path for assets in doc["tiles"].values() for path in assets}
    assert listed == paths  # every COG, by its local path
    tms = morecantile.tms.get("WebMercatorQuad")
    for quadkey, assets in doc["tiles"].items():  # a quadkey lists exactly the COGs its tile intersects
        tile = tms.quadkey_to_tile(quadkey)
        west, south, east, north = tms.bounds(tile)
        for uri in cogs:
            with rasterio.open(storage.local_path(uri)) as ds:
                b = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
            hit = b[0] <= east and b[2] >= west and b[1] <= north and b[3] >= south
            assert (str(storage.local_path(uri)) in assets) == hit


def test_mosaicjson_reads_through_cogeo_mosaic_like_the_vrt(ctx: TaskContext, storage: LocalStorage,
                                                            source: np.ndarray) -> None:
    from cogeo_mosaic.backends import MosaicBackend
    from rio_tiler.io import Reader

    result = create_mosaic(MosaicParams(cogs=tiles_of(storage, source, (300, 400), nodata=0), name="read"), ctx)
    tms = morecantile.tms.get("WebMercatorQuad")
    west, south, east, north = result.bounds
    tile = tms.tile((west + east) / 2, (south + north) / 2, result.maxzoom)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with MosaicBackend(result.mosaicjson_path) as mosaic:
            image, assets = mosaic.tile(tile.x, tile.y, tile.z)
        with Reader(result.vrt_path) as vrt:
            expected = vrt.tile(tile.x, tile.y, tile.z)
    assert assets and image.data.shape == expected.data.shape
    valid = ~image.array.mask & ~expected.array.mask
    assert valid.mean() > 0.5
    np.testing.assert_array_equal(image.array.data[valid], expected.array.data[valid])


def test_outputs_are_deterministic_and_replaced_atomically(ctx: TaskContext, storage: LocalStorage,
                                                           source: np.ndarray) -> None:
    cogs = tiles_of(storage, source, (300, 400))
    first = create_mosaic(MosaicParams(cogs=cogs, name="same"), ctx)
    texts = (Path(first.vrt_path).read_bytes(), Path(first.mosaicjson_path).read_bytes())
    again = create_mosaic(MosaicParams(cogs=cogs, name="same"), ctx)
    assert (Path(again.vrt_path).read_bytes(), Path(again.mosaicjson_path).read_bytes()) == texts
    assert sorted(p.name for p in storage.local_path("silver://mosaics").iterdir()) == ["same.json", "same.vrt"]


def test_first_cog_wins_where_cogs_overlap_and_nodata_never_covers_data(ctx: TaskContext,
                                                                        storage: LocalStorage) -> None:
    ones = np.ones((1, 100, 100), dtype=np.uint8)
    holes = ones * 2
    holes[0, :, :50] = 0  # the left half of the second COG is nodata
    first = write_cog(storage, "first", ones, ORIGIN, nodata=0)
    second = write_cog(storage, "second", holes, ORIGIN @ Affine.translation(50, 0), nodata=0)
    result = create_mosaic(MosaicParams(cogs=[first, second], name="overlap"), ctx)
    with rasterio.open(result.vrt_path) as vrt:
        data = vrt.read(1)
    assert data.shape == (100, 150)
    assert (data[:, :100] == 1).all()  # the first COG on top, including where the second has nodata
    assert (data[:, 100:] == 2).all()
    reverse = create_mosaic(MosaicParams(cogs=[second, first], name="reverse"), ctx)
    with rasterio.open(reverse.vrt_path) as vrt:
        data = vrt.read(1)
    assert (data[:, :50] == 1).all() and (data[:, 50:100] == 1).all()  # the second's nodata shows the first
    assert (data[:, 100:] == 2).all()


def test_alpha_bands_stay_transparent_where_cogs_overlap(ctx: TaskContext, storage: LocalStorage) -> None:
    rgba = np.full((4, 100, 100), 7, dtype=np.uint8)
    rgba[3] = 255
    empty = rgba.copy()
    empty[:, :, :] = 0  # a fully transparent COG on top must not hide the one below
    rgba_interp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    below = write_cog(storage, "below", rgba, ORIGIN, colorinterp=rgba_interp)
    above = write_cog(storage, "above", empty, ORIGIN, colorinterp=rgba_interp)
    result = create_mosaic(MosaicParams(cogs=[above, below], name="alpha"), ctx)
    with rasterio.open(result.vrt_path) as vrt:
        assert vrt.colorinterp[3] is ColorInterp.alpha
        data = vrt.read()
    assert (data[:3] == 7).all() and (data[3] == 255).all()


def test_internal_masks_become_the_vrts_mask(ctx: TaskContext, storage: LocalStorage) -> None:
    data = np.full((1, 64, 64), 9, dtype=np.uint8)
    path = storage.local_path("silver://cogs/masked.tif")
    path.parent.mkdir(parents=True)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                           crs="EPSG:32618", transform=ORIGIN) as dst:
            dst.write(data)
            mask = np.full((64, 64), 255, dtype=np.uint8)
            mask[:, :32] = 0
            dst.write_mask(mask)
    result = create_mosaic(MosaicParams(cogs=["silver://cogs/masked.tif"], name="masked"), ctx)
    with rasterio.open(result.vrt_path) as vrt:
        read = vrt.read(1, masked=True)
    assert read.mask[:, :32].all() and not read.mask[:, 32:].any()


def test_different_resolutions_use_the_finest_and_read_back_each_source(ctx: TaskContext,
                                                                        storage: LocalStorage) -> None:
    fine = np.arange(100 * 100, dtype=np.uint16).reshape(1, 100, 100) % 5000 + 1
    coarse = np.arange(50 * 50, dtype=np.uint16).reshape(1, 50, 50) % 7000 + 1
    a = write_cog(storage, "fine", fine, ORIGIN, nodata=0)
    b = write_cog(storage, "coarse", coarse, Affine(20, 0, 501000, 0, -20, 4000000), nodata=0)
    result = create_mosaic(MosaicParams(cogs=[a, b], name="res"), ctx)
    assert result.resolution == [10.0, 10.0] and (result.width, result.height) == (200, 100)
    with rasterio.open(result.vrt_path) as vrt:
        np.testing.assert_array_equal(vrt.read(1, window=Window(0, 0, 100, 100)), fine[0])
        window = from_bounds(501000, 3999000, 502000, 4000000, vrt.transform)
        np.testing.assert_array_equal(vrt.read(1, window=window, out_shape=(50, 50)), coarse[0])


def test_refuses_cogs_that_cannot_be_one_raster(ctx: TaskContext, storage: LocalStorage) -> None:
    a = write_cog(storage, "a", np.ones((1, 10, 10), dtype=np.uint8), ORIGIN)
    b = write_cog(storage, "b16", np.ones((1, 10, 10), dtype=np.uint16), ORIGIN)
    c = write_cog(storage, "c3", np.ones((3, 10, 10), dtype=np.uint8), ORIGIN)
    d = write_cog(storage, "d4326", np.ones((1, 10, 10), dtype=np.uint8), Affine(0.1, 0, 10, 0, -0.1, 50),
                  crs="EPSG:4326")
    with pytest.raises(InvalidInput, match=r"b16\.tif' has data type uint16 \(the others: uint8\)"):
        create_mosaic(MosaicParams(cogs=[a, b], name="m"), ctx)
    with pytest.raises(InvalidInput, match=r"c3\.tif' has 3 bands \(the others: 1\)$|c3\.tif' has 3 bands \(the others: 1\)\."):
        create_mosaic(MosaicParams(cogs=[a, c], name="m"), ctx)
    with pytest.raises(InvalidInput, match=r"d4326\.tif' has CRS EPSG:4326 \(the others: EPSG:32618\)"):
        create_mosaic(MosaicParams(cogs=[a, d], name="m"), ctx)
    with pytest.raises(InvalidInput, match=r"missing\.tif.*not found"):
        create_mosaic(MosaicParams(cogs=[a, "silver://cogs/missing.tif"], name="m"), ctx)
    with pytest.raises(InvalidInput, match="not a valid id"):
        create_mosaic(MosaicParams(cogs=[a], name="../escape"), ctx)
    assert not storage.local_path("silver://mosaics").exists()  # nothing written for a refused mosaic
