"""COG validation for every raster shape (issue 19, bug 1): class "images and overviews exactly one block wide".

GDAL's COG driver writes every IFD tiled; rio-cogeo's validator called a tiled IFD 512 wide and more than 512 tall
"not tiled", so a 2048 x 8192 raster failed `process_raster` three times. The shapes below are generated around the
block size (one block wide, one block tall, one pixel more, thin strips, primes); each must come out a COG that
`validate_cog` accepts, through the real handler. A striped file larger than a block must still be refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin

from geomill.engine.context import TaskContext
from geomill.storage.local import LocalStorage
from geomill.tasks.raster.cog import CreateCogParams, create_cog
from geomill.tasks.raster.cogcheck import untiled_large_ifds, validate_cog

# (width, height): one block wide / tall at every overview level, a pixel past a block, thin strips, primes
SHAPES = [(2048, 8192), (8192, 2048), (512, 4096), (513, 4099), (1024, 1536), (1, 3000), (3000, 1), (1031, 7919)]


def make_tiff(path: Path, width: int, height: int, *, tiled: bool = True) -> Path:
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(500000, 5000000, 10, 10)}
    if tiled and width >= 16 and height >= 16:
        profile.update(tiled=True, blockxsize=512, blockysize=512)
    data = (np.arange(width * height, dtype=np.uint32) % 251).astype("uint8").reshape(1, height, width)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.mark.parametrize(("width", "height"), SHAPES, ids=[f"{w}x{h}" for w, h in SHAPES])
def test_a_cog_of_any_shape_validates_through_the_handler(tmp_path: Path, width: int, height: int) -> None:
    storage = LocalStorage(tmp_path / "data")
    storage.ensure_zones()
    ctx = TaskContext(task_id="t", job_id="j", stage=1, attempt=1, storage=storage)
    source = make_tiff(tmp_path / f"in_{width}x{height}.tif", width, height)
    result = create_cog(CreateCogParams(source=str(source)), ctx)
    assert result.valid
    assert validate_cog(result.path) == (True, [], [])
    with rasterio.open(result.path) as cog, rasterio.open(source) as src:
        assert (cog.width, cog.height) == (width, height)
        assert np.array_equal(cog.read(1), src.read(1))


def test_rio_cogeos_false_not_tiled_error_is_dropped_for_a_one_block_wide_overview(tmp_path: Path) -> None:
    source = make_tiff(tmp_path / "in.tif", 2048, 8192)
    cog = tmp_path / "out.tif"
    with rasterio.open(source) as src:
        rasterio.shutil.copy(src, cog, driver="COG", BLOCKSIZE="512", OVERVIEWS="AUTO")
    from rio_cogeo.cogeo import cog_validate

    assert "Overview of index 1 is not tiled" in cog_validate(str(cog), quiet=True)[1]  # the misreading
    assert untiled_large_ifds(cog) == []
    assert validate_cog(cog)[0]


def test_a_striped_raster_larger_than_a_block_is_still_not_a_cog(tmp_path: Path) -> None:
    striped = make_tiff(tmp_path / "striped.tif", 600, 2000, tiled=False)
    valid, errors, _ = validate_cog(striped)
    assert not valid
    assert any("not tiled" in e for e in errors)
    assert untiled_large_ifds(striped) == ["IFD 0 (600x2000) is stored in strips"]
